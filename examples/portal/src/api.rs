//! The portal's own JSON routes, beside `mfa-http`'s under `/api`: password sign-in, sign-out, and
//! `/api/me`, the resource MFA protects.
//!
//! Bodies are read with `mfa-http`'s [`JsonBody`], so they are refused as the MFA routes refuse
//! theirs (JSON only, 4 KiB, no unknown fields) and in the same `{"error", "message"}` shape. That
//! also makes them unreachable from a cross-site form: no CSRF token is needed on top.

use std::fmt;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mfa_core::{SessionCheck, Store};
use mfa_http::model::Next;
use mfa_http::{Error, ErrorKind, JsonBody, NoInput};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::accounts::Role;
use crate::portal::{Portal, PortalClock, SignInError};

/// `POST /api/session`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInBody {
    email: String,
    password: String,
}

impl fmt::Debug for SignInBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInBody")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Drop for SignInBody {
    fn drop(&mut self) {
        self.password.zeroize();
    }
}

#[derive(Serialize)]
struct NextStep {
    next: Next,
}

#[derive(Serialize)]
struct Me<'a> {
    email: &'a str,
}

/// `POST /api/session` `{"email", "password"}`: 200 `{"next": "enroll" | "verify" | "done"}` and a
/// new session cookie; 401 `unauthenticated` for a wrong email or password; 429 `locked` after
/// too many, or when the portal keeps count of too many emails with wrong passwords to add this one.
pub(crate) async fn create_session<S: Store + 'static, C: PortalClock>(
    State(portal): State<Arc<Portal<S, C>>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SignInBody>,
) -> Result<Response, Error> {
    let (user, next) = portal
        .sign_in(&body.email, &body.password)
        .await
        .map_err(|error| match error {
            SignInError::Wrong => Error::new(ErrorKind::Unauthenticated, "wrong email or password"),
            SignInError::Throttled(secs) => Error::new(
                ErrorKind::Locked,
                format!("too many wrong passwords; try again in {secs} seconds"),
            )
            .with_retry_after(secs),
            SignInError::Busy(secs) => Error::new(
                ErrorKind::Locked,
                format!("too many sign-in attempts right now; try again in {secs} seconds"),
            )
            .with_retry_after(secs),
            SignInError::Failed(error) => error,
        })?;
    let old = portal
        .sessions
        .lookup(&headers, portal.now())
        .map(|(id, _)| id);
    let id = portal.open_session(old.as_ref(), user);
    Ok((
        [(header::SET_COOKIE, portal.sessions.set_cookie(&id))],
        Json(NextStep { next }),
    )
        .into_response())
}

/// `DELETE /api/session` (no body, `{}` or `null`, sent as JSON like every state-changing route):
/// signs out (204), whether or not there was a session.
pub(crate) async fn delete_session<S: Store + 'static, C: PortalClock>(
    State(portal): State<Arc<Portal<S, C>>>,
    headers: HeaderMap,
    _: NoInput,
) -> Response {
    if let Some((id, _)) = portal.sessions.lookup(&headers, portal.now()) {
        portal.sessions.remove(&id);
    }
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, portal.sessions.clear_cookie())],
    )
        .into_response()
}

/// `GET /api/me`: `{"email"}` for a session that passed every required step; 401 otherwise.
pub(crate) async fn me<S: Store + 'static, C: PortalClock>(
    State(portal): State<Arc<Portal<S, C>>>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let (id, session) = portal
        .sessions
        .lookup(&headers, portal.now())
        .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "sign in first"))?;
    let user = session
        .user
        .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "sign in first"))?;
    // Checked against the customer's record now, not as it stood at sign-in.
    if user.role == Role::Customer {
        match portal
            .check(&user)
            .await
            .map_err(|error| Error::from_service(&error, portal.service().clock().now()))?
        {
            SessionCheck::Complete(_) => {}
            SessionCheck::Ended => {
                portal.sessions.remove(&id);
                return Err(Error::new(
                    ErrorKind::SessionEnded,
                    "this session ended when your MFA changed; sign in again",
                ));
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    "finish signing in: the second factor is still required",
                ));
            }
        }
    }
    Ok(Json(Me {
        email: user.email.as_str(),
    })
    .into_response())
}

/// A method the portal's JSON routes do not take: the JSON error shape, as `mfa-http`'s own.
pub(crate) async fn method_not_allowed() -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        "this route does not take this method",
    )
}
