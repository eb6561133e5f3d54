//! Every refusal as one JSON shape, `{"error": "<kind>", "message": "..."}`, with a fitting status.

use core::fmt;
use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mfa_core::{Refusal, ServiceError, UnixTime};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::HostError;

/// What went wrong, as the `error` field names it. Each kind has one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// 401: no signed-in session.
    Unauthenticated,
    /// 403: the caller may not use this route (not an administrator, not a customer, or refused by
    /// the host).
    Forbidden,
    /// 403: the session must pass MFA first (it has given no second factor yet).
    MfaRequired,
    /// 403: the session passed MFA, but this action needs a fresh code for its purpose (the last
    /// one is older than the organisation's step-up age): `POST /mfa/step-up`, then try again.
    StepUpRequired,
    /// 401: the session ended when the customer's MFA was reset or their factors changed; sign in
    /// again.
    SessionEnded,
    /// 403: the organisation has MFA switched off, so there is nothing to enroll in.
    MfaDisabled,
    /// 404: no such route.
    NotFound,
    /// 405: the route does not take this method.
    MethodNotAllowed,
    /// 400: the body is not JSON (syntax, encoding, nesting too deep).
    MalformedJson,
    /// 422: the JSON does not have the expected shape (wrong types, unknown or missing fields).
    InvalidBody,
    /// 400: the query string is not valid for this route.
    InvalidQuery,
    /// 400: the customer id in the path is not an id.
    InvalidCustomerId,
    /// 413: the body is larger than the limit.
    PayloadTooLarge,
    /// 415: a body-carrying request without `Content-Type: application/json`.
    UnsupportedMediaType,
    /// 409: MFA is already configured (an administrator must reset it first).
    AlreadyConfigured,
    /// 409: there is no enrollment to confirm.
    NotPending,
    /// 409: the customer has no MFA configured.
    NotConfigured,
    /// 410: the pending enrollment expired; start again.
    EnrollmentExpired,
    /// 401: the code was wrong, malformed, already used or replayed; the audit log says which.
    InvalidCode,
    /// 429: too many failures; see `Retry-After`.
    Locked,
    /// 503: a store or the host's sessions failed, or the record was contended; try again.
    Unavailable,
    /// 500: a stored MFA record cannot be read (damaged, or written by a newer version). Not an
    /// outage: retrying will not help; the server's log names the record.
    Corrupt,
    /// 500: something that should not happen; the details are in the server's log.
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind answers with.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::InvalidCode | Self::SessionEnded => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden | Self::MfaRequired | Self::StepUpRequired | Self::MfaDisabled => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::MalformedJson | Self::InvalidQuery | Self::InvalidCustomerId => {
                StatusCode::BAD_REQUEST
            }
            Self::InvalidBody => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::AlreadyConfigured | Self::NotPending | Self::NotConfigured => {
                StatusCode::CONFLICT
            }
            Self::EnrollmentExpired => StatusCode::GONE,
            Self::Locked => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal | Self::Corrupt => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind as the `error` field spells it (`invalid_code`, `locked`...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::MfaRequired => "mfa_required",
            Self::StepUpRequired => "step_up_required",
            Self::SessionEnded => "session_ended",
            Self::MfaDisabled => "mfa_disabled",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::MalformedJson => "malformed_json",
            Self::InvalidBody => "invalid_body",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidCustomerId => "invalid_customer_id",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::AlreadyConfigured => "already_configured",
            Self::NotPending => "not_pending",
            Self::NotConfigured => "not_configured",
            Self::EnrollmentExpired => "enrollment_expired",
            Self::InvalidCode => "invalid_code",
            Self::Locked => "locked",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Corrupt => "corrupt",
        }
    }
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong, for programs.
    pub error: ErrorKind,
    /// What went wrong, for people. Never holds a secret, a code, or a server's internals.
    pub message: String,
}

/// A refusal, ready to answer with: an [`ErrorKind`], a message and, for a lockout or a contended
/// record, when to retry.
///
/// Hosts can answer their own routes with it too (`Error::new(ErrorKind::Unauthenticated, ...)`),
/// so that every JSON error of the portal has the same shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    retry_after: Option<u64>,
}

impl Error {
    /// An error of `kind` with `message` (keep secrets, codes and internals out of it).
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error telling the client to retry after `secs` seconds (`Retry-After`).
    #[must_use]
    pub fn with_retry_after(self, secs: u64) -> Self {
        Self {
            retry_after: Some(secs),
            ..self
        }
    }

    /// The kind.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Seconds after which to retry, if the error says.
    #[must_use]
    pub const fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The answer to a failed service call, at `now`, as this crate's routes give it: for a host's
    /// own routes (its pages, say) that call the [`Service`](mfa_core::Service) directly and
    /// should classify its errors the same way. Rule refusals map to their kinds (a wrong,
    /// malformed, replayed or used code all to `invalid_code`); a store that failed is logged and
    /// answered with a generic 503 `unavailable` (with `Retry-After` where retrying helps); a
    /// record this version cannot read is logged once (organisation and customer, never its bytes)
    /// and answered with 500 `corrupt`, which no client should retry.
    #[must_use]
    pub fn from_service<E: core::error::Error + 'static>(
        error: &ServiceError<E>,
        now: UnixTime,
    ) -> Self {
        match error {
            ServiceError::Refused(refusal) => Self::from_refusal(*refusal, now),
            ServiceError::Store(source) => {
                tracing::error!(
                    error = source as &dyn core::error::Error,
                    "mfa-http: the MFA store failed"
                );
                unavailable()
            }
            ServiceError::Contended => {
                tracing::warn!("mfa-http: a record stayed contended through every retry");
                unavailable().with_retry_after(1)
            }
            // One line naming whose record it is (never its bytes), for the operator to look at.
            ServiceError::Corrupt(corrupt) => {
                tracing::error!(
                    org = %corrupt.org,
                    customer = corrupt.customer.as_ref().map(mfa_core::CustomerId::as_str),
                    error = %corrupt.error,
                    "mfa-http: a stored MFA record cannot be read"
                );
                Self::new(
                    ErrorKind::Corrupt,
                    "a stored MFA record cannot be read; the server's log names it",
                )
            }
            other => {
                tracing::error!(
                    error = other as &dyn core::error::Error,
                    "mfa-http: the MFA service failed"
                );
                internal()
            }
        }
    }

    fn from_refusal(refusal: Refusal, now: UnixTime) -> Self {
        match refusal {
            Refusal::MfaDisabled => Self::new(
                ErrorKind::MfaDisabled,
                "MFA is switched off for this organisation",
            ),
            Refusal::AlreadyConfigured => Self::new(
                ErrorKind::AlreadyConfigured,
                "MFA is already configured; an administrator must reset it first",
            ),
            Refusal::NotPending => {
                Self::new(ErrorKind::NotPending, "no enrollment is pending; start one")
            }
            Refusal::NotConfigured => Self::new(ErrorKind::NotConfigured, "MFA is not configured"),
            Refusal::EnrollmentExpired => Self::new(
                ErrorKind::EnrollmentExpired,
                "the enrollment has expired; start again",
            ),
            // One answer for every way a code can fail, so the caller learns nothing about which;
            // the audit event the service wrote records the real reason.
            Refusal::InvalidCode(_)
            | Refusal::InvalidBackupCode
            | Refusal::WrongCode
            | Refusal::ReplayedCode
            | Refusal::UsedBackupCode => Self::new(ErrorKind::InvalidCode, "the code is not valid"),
            Refusal::Locked { retry_at } => {
                // Round up, and never 0: "Retry-After: 0" would invite an immediate retry.
                let secs = retry_at.as_secs().saturating_sub(now.as_secs()).max(1);
                Self::new(
                    ErrorKind::Locked,
                    format!("too many failed attempts; try again in {secs} seconds"),
                )
                .with_retry_after(secs)
            }
            Refusal::SessionEnded => session_ended(),
            Refusal::SecondFactorRequired { max_age_secs } => Self::new(
                ErrorKind::MfaRequired,
                format!(
                    "give a code in this session first: changing factors needs one from the last {} minutes",
                    max_age_secs.div_ceil(60)
                ),
            ),
            Refusal::StepUpRequired {
                purpose,
                max_age_secs,
            } => step_up_required(purpose, max_age_secs),
            Refusal::NotFound => Self::new(
                ErrorKind::NotFound,
                "no MFA is stored for this customer: nothing to reset",
            ),
            Refusal::InvalidSettings(_) => {
                Self::new(ErrorKind::InvalidBody, "the settings are out of range")
            }
            // A refusal this version does not know yet: the request is answered, not guessed at.
            other => {
                tracing::warn!(
                    error = &other as &dyn core::error::Error,
                    "mfa-http: a refusal this version does not map"
                );
                Self::new(ErrorKind::Forbidden, "the request is refused")
            }
        }
    }

    /// The answer to a host that could not say who is calling.
    pub(crate) fn from_host(error: &HostError) -> Self {
        match error {
            HostError::Unauthenticated => Self::new(ErrorKind::Unauthenticated, "sign in first"),
            HostError::Forbidden => Self::new(ErrorKind::Forbidden, "the request is refused"),
            HostError::Unavailable(source) => {
                tracing::error!(
                    error = source.as_ref() as &dyn core::error::Error,
                    "mfa-http: the host's sessions failed"
                );
                unavailable()
            }
        }
    }

    /// The body, as it is sent.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.kind,
            message: self.message.clone().into_owned(),
        }
    }
}

pub(crate) fn session_ended() -> Error {
    Error::new(
        ErrorKind::SessionEnded,
        "this session ended when the customer's MFA changed; sign in again",
    )
}

pub(crate) fn unavailable() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "the service is unavailable; try again shortly",
    )
}

pub(crate) fn internal() -> Error {
    Error::new(ErrorKind::Internal, "an internal error occurred")
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut response = crate::json::response(self.status(), &self.body());
        // The kind travels with the answer, for the router's own layers (an ended session is
        // handed to the host to drop) and a host's.
        response.extensions_mut().insert(self.kind);
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl core::error::Error for Error {}

/// 403 `step_up_required`: a fresh code for `purpose` first.
pub(crate) fn step_up_required(purpose: mfa_core::Purpose, max_age_secs: u64) -> Error {
    let age = if max_age_secs.is_multiple_of(60) {
        format!("{} minutes", max_age_secs / 60)
    } else {
        format!("{max_age_secs} seconds")
    };
    Error::new(
        ErrorKind::StepUpRequired,
        format!(
            "give a fresh code for {purpose} (POST /mfa/step-up): the last one is older than {age}"
        ),
    )
}
