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
use mfa_core::{Purpose, SessionCheck, Store};
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

/// `POST /api/billing/payment-method`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CardBody {
    card_number: String,
    expiry: String,
}

impl fmt::Debug for CardBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardBody").finish_non_exhaustive()
    }
}

impl Drop for CardBody {
    fn drop(&mut self) {
        self.card_number.zeroize();
    }
}

#[derive(Serialize)]
struct CardSaved {
    card: String,
}

/// `POST /api/billing/payment-method` `{"card_number", "expiry"}` (a demo: nothing is charged;
/// only the last four digits are kept): 200 `{"card": "ending in 4242"}` once a second factor is
/// fresh for `payment_method`; 403 `step_up_required` when the session must give a fresh code
/// first (`POST /api/mfa/step-up`); 422 `invalid_body` for a number that fails its check digit or
/// an expiry that is not `MM/YY`.
pub(crate) async fn save_payment_method<S: Store + 'static, C: PortalClock>(
    State(portal): State<Arc<Portal<S, C>>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CardBody>,
) -> Result<Response, Error> {
    let (id, session) = portal
        .sessions
        .lookup(&headers, portal.now())
        .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "sign in first"))?;
    let user = session
        .user
        .filter(|user| user.role == Role::Customer)
        .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "sign in as a customer first"))?;
    let Some(mfa) = user.mfa else {
        return Err(Error::new(ErrorKind::Unauthenticated, "sign in first"));
    };
    if let Err(error) = portal
        .mfa
        .require_step_up(&user.org, &user.email, &mfa, Purpose::PAYMENT_METHOD)
        .await
    {
        if error.kind() == ErrorKind::SessionEnded {
            portal.sessions.remove(&id);
        }
        return Err(error);
    }
    let last4 = card_last4(&body.card_number).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidBody,
            "the card number is not valid: 12 to 19 digits with a good check digit",
        )
    })?;
    if !expiry_ok(&body.expiry) {
        return Err(Error::new(
            ErrorKind::InvalidBody,
            "the expiry is not valid: MM/YY",
        ));
    }
    let card = format!("ending in {last4}");
    if let Ok(mut cards) = portal.cards.lock() {
        cards.insert(user.email.clone(), card.clone());
    }
    Ok(Json(CardSaved { card }).into_response())
}

/// The last four digits of a card number that passes the Luhn check (spaces and dashes allowed
/// between digits), or `None`.
fn card_last4(number: &str) -> Option<String> {
    let digits: Vec<u32> = number
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()?;
    if !(12..=19).contains(&digits.len()) {
        return None;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2, d * 2) {
            (0, _) => d,
            (_, doubled) if doubled > 9 => doubled - 9,
            (_, doubled) => doubled,
        })
        .sum();
    sum.is_multiple_of(10).then(|| {
        digits
            .iter()
            .skip(digits.len() - 4)
            .filter_map(|d| char::from_digit(*d, 10))
            .collect()
    })
}

/// `MM/YY` with a month from 01 to 12.
fn expiry_ok(expiry: &str) -> bool {
    let bytes = expiry.trim().as_bytes();
    matches!(bytes, [m1, m2, b'/', y1, y2] if [m1, m2, y1, y2].iter().all(|b| b.is_ascii_digit())
        && (1..=12).contains(&((m1 - b'0') * 10 + (m2 - b'0'))))
}

/// A method the portal's JSON routes do not take: the JSON error shape, as `mfa-http`'s own.
pub(crate) async fn method_not_allowed() -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        "this route does not take this method",
    )
}
