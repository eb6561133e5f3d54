//! JSON in and out, with this crate's own rejections: axum's `Json` answers malformed input with
//! plain text, and every answer here is the JSON error shape.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, ErrorKind};

/// The largest request body accepted, in bytes. The largest valid body, a backup code, is under 40
/// bytes; 4 KiB leaves room for whitespace and keeps a flood of bodies cheap.
pub const MAX_BODY_BYTES: usize = 4096;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response. A value that fails to serialise (none of this crate's can) is logged and
/// answered with the fixed internal error, never with axum's plain-text 500.
pub(crate) fn response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, JSON)], bytes).into_response(),
        Err(error) => {
            tracing::error!(%error, "mfa-http: a response could not be serialised");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, JSON)],
                &br#"{"error":"internal","message":"an internal error occurred"}"#[..],
            )
                .into_response()
        }
    }
}

/// A request body of JSON that deserialises to `T`: `Content-Type: application/json` (or
/// `application/*+json`, UTF-8 only), at most [`MAX_BODY_BYTES`], and well-formed.
///
/// Rejections: 415 `unsupported_media_type`, 413 `payload_too_large`, 400 `malformed_json` for text
/// that is not JSON (bad syntax, invalid UTF-8, trailing bytes, nesting past serde_json's limit of
/// 128), and 422 `invalid_body` for JSON of the wrong shape (types, unknown, missing or duplicate
/// fields). Messages give the position, never the offending text: it may hold a code.
///
/// Hosts can take their own JSON routes' bodies with it (a sign-in route beside the MFA routes,
/// say), so that every JSON route of the service refuses bad input the same way and in the same
/// shape. Like the MFA routes, such a route then cannot be reached by a cross-site form.
///
/// ```
/// use axum::Router;
/// use axum::routing::post;
/// use mfa_http::JsonBody;
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct SignIn {
///     email: String,
///     password: String,
/// }
///
/// async fn sign_in(JsonBody(body): JsonBody<SignIn>) -> String {
///     format!("{} ({} bytes of password)", body.email, body.password.len())
/// }
///
/// let app: Router = Router::new().route("/session", post(sign_in));
/// ```
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Error> {
        let bytes = read_json_body(request).await?;
        parse_object(&bytes).map(JsonBody)
    }
}

/// The body of a route that takes no input: empty, `{}` or `null`. It still needs the JSON content
/// type: that is what keeps cross-site forms away from state-changing routes.
///
/// Hosts can put it on their own state-changing routes without input (a sign-out, say), with the
/// same rejections as [`JsonBody`].
#[derive(Clone, Copy, Debug)]
pub struct NoInput;

/// The empty object `{}`: the optional body of routes that take no input.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoFields {}

impl<S: Send + Sync> FromRequest<S> for NoInput {
    type Rejection = Error;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Error> {
        let bytes = read_json_body(request).await?;
        match first_token(&bytes) {
            None => Ok(Self),
            Some(b'n') => parse::<()>(&bytes).map(|()| Self),
            Some(_) => parse_object::<NoFields>(&bytes).map(|NoFields {}| Self),
        }
    }
}

/// The first byte after JSON's whitespace (RFC 8259 section 2), if any.
fn first_token(bytes: &[u8]) -> Option<u8> {
    bytes
        .iter()
        .copied()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
}

/// A JSON object deserialised to `T`. serde's derived structs also accept an array of their
/// fields in order (`["123456"]` for `{"code": "123456"}`); the API takes objects only, as its
/// document says.
fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if first_token(bytes) != Some(b'{') {
        // Tell text that is not JSON at all (400) from JSON that is not an object (422).
        parse::<serde::de::IgnoredAny>(bytes)?;
        return Err(Error::new(
            ErrorKind::InvalidBody,
            "the body must be a JSON object",
        ));
    }
    parse(bytes)
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|error| {
        let (line, column) = (error.line(), error.column());
        match error.classify() {
            serde_json::error::Category::Data => Error::new(
                ErrorKind::InvalidBody,
                format!(
                    "the JSON does not have the fields and types this route takes (line {line}, column {column})"
                ),
            ),
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => Error::new(
                ErrorKind::MalformedJson,
                format!("the body is not valid JSON (line {line}, column {column})"),
            ),
        }
    })
}

async fn read_json_body(request: Request) -> Result<Bytes, Error> {
    let (parts, body) = request.into_parts();
    if !is_json(&parts.headers) {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            "send the body as JSON, with Content-Type: application/json",
        ));
    }
    if declared_length(&parts.headers).is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    read_limited(body).await
}

async fn read_limited(body: Body) -> Result<Bytes, Error> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(_) => Err(Error::new(
            ErrorKind::MalformedJson,
            "the body could not be read",
        )),
    }
}

fn too_large() -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!("the body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// The `Content-Length`, if there is exactly one and it is a number.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let value = values.next()?;
    if values.next().is_some() {
        // Several lengths: the body read below still enforces the limit.
        return None;
    }
    value.to_str().ok()?.trim().parse().ok()
}

/// Exactly one `Content-Type`, of `application/json` or `application/<something>+json`, with no
/// charset other than UTF-8 (RFC 8259 section 8.1: JSON between systems is UTF-8).
fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let mut params = text.split(';');
    let essence = params
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some(subtype) = essence.strip_prefix("application/") else {
        return false;
    };
    if subtype != "json" && !(subtype.len() > 5 && subtype.ends_with("+json")) {
        return false;
    }
    params.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn json_content_types() {
        for good in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/merge-patch+json",
        ] {
            assert!(is_json(&with_type(good)), "{good}");
        }
        for bad in [
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/jsonx",
            "application/+json",
            "application/json; charset=utf-16",
            "",
        ] {
            assert!(!is_json(&with_type(bad)), "{bad}");
        }
        assert!(!is_json(&HeaderMap::new()));
        let mut two = with_type("application/json");
        two.append(header::CONTENT_TYPE, JSON);
        assert!(!is_json(&two), "two content types");
    }

    #[test]
    fn bodies_are_objects() {
        assert_eq!(
            parse_object::<NoFields>(b"[]").unwrap_err().kind(),
            ErrorKind::InvalidBody
        );
        assert_eq!(
            parse_object::<NoFields>(b" \"x\"").unwrap_err().kind(),
            ErrorKind::InvalidBody
        );
        assert_eq!(
            parse_object::<NoFields>(b"[").unwrap_err().kind(),
            ErrorKind::MalformedJson
        );
        assert_eq!(
            parse_object::<NoFields>(b"").unwrap_err().kind(),
            ErrorKind::MalformedJson
        );
        assert!(parse_object::<NoFields>(b"\r\n {} ").is_ok());
    }

    #[test]
    fn parse_errors_never_echo_the_input() {
        let error = parse::<NoFields>(br#"{"secret-looking-123456": 1}"#).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidBody);
        assert!(!error.message().contains("123456"), "{}", error.message());
        let error = parse::<NoFields>(b"{\"\xff\": 1}").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MalformedJson);
    }
}
