//! What the host tells the router: who is calling, and what to do when a sign-in passes MFA.

use core::fmt;
use core::future::Future;

use axum::http::HeaderMap;
use axum::http::request::Parts;
use mfa_core::{Actor, CustomerId, MfaPassed, MfaSession, OrgId};

/// The host's side of the API: its sessions, which this crate never sees inside.
///
/// The billing service implements this once, over its own session store, and hands it to
/// [`MfaApi::new`](crate::MfaApi::new). It is a trait on a value the host owns rather than an
/// extractor type parameter because the router needs two things from the host that belong together:
/// reading the session ([`caller`](Self::caller)) and upgrading it ([`mfa_passed`](Self::mfa_passed)).
/// Both are required methods with no default, so a host cannot mount the routes and forget to mark
/// its session when a code is accepted. Both take the request head as [`Parts`], the argument axum's
/// own [`FromRequestParts`](axum::extract::FromRequestParts) extractors take, so a host can run its
/// existing extractors (a cookie jar, `tower_sessions::Session`, a bearer-token check) inside them.
///
/// This crate never handles passwords: the host signs customers in with its own password check, asks
/// [`MfaApi::login_step`](crate::MfaApi::login_step) what comes next, and reports the session's stage
/// through [`Caller`].
///
/// # Security
///
/// - Report a customer only for a session whose password check passed, with the [`MfaSession`] the
///   session was given: [`LoginStep::session`](mfa_core::LoginStep::session) at sign-in, then
///   [`MfaPassed::session`] each time [`mfa_passed`](Self::mfa_passed) is called. Keep it
///   server-side: whoever can write it can claim a factor passed. The router checks it against the
///   customer's record on every request, so a session from before an administrator's reset or a
///   change of factor is refused (401 `session_ended`, and [`session_ended`](Self::session_ended)
///   is called to drop it), and generating backup codes needs a second factor fresh for
///   `backup_codes` (403 `step_up_required` past the step-up age; `POST /mfa/step-up`).
/// - Check it on your own protected routes too, with
///   [`Service::check_session`](mfa_core::Service::check_session): it says whether to let the
///   session in, send it to enroll or to the code prompt (a session that needed no MFA, after the
///   organisation switched MFA on), or end it.
/// - Report an administrator only for a fully signed-in administrator session (with its own second
///   factor, if the host has one): the admin routes switch MFA off for everyone and reset customers.
/// - Every state-changing route insists on `Content-Type: application/json`, which a cross-site form
///   or a "simple" cross-origin request cannot send; that is this crate's CSRF defence. A host that
///   wants more (a CSRF token header) checks it in [`caller`](Self::caller) and answers
///   [`HostError::Forbidden`].
pub trait MfaHost: Send + Sync + 'static {
    /// Who is calling, read from the host's own session (cookie, token...).
    ///
    /// # Errors
    /// [`HostError::Unauthenticated`] when there is no signed-in session (the router answers 401);
    /// [`HostError::Forbidden`] when the request must be refused anyway (403);
    /// [`HostError::Unavailable`] when the session store failed (503).
    fn caller(&self, parts: &mut Parts) -> impl Future<Output = Result<Caller, HostError>> + Send;

    /// The calling session's customer just passed MFA (confirmed an enrollment, or gave a TOTP or a
    /// backup code), or changed factors in a session that had (a new set of backup codes): keep
    /// [`MfaPassed::session`] in the session in place of the one it had, so that
    /// [`caller`](Self::caller) reports it from now on and the host lets the customer in. Every
    /// other session of the customer has ended if the factors changed.
    ///
    /// `parts` is the head of the request that passed, after [`caller`](Self::caller) ran on it, and
    /// `proof` is about the customer `caller` reported for it (check [`MfaPassed::customer`] against
    /// the session all the same). The headers returned go on the success response: a rotated
    /// session cookie, say, since a session that gained a privilege should get a fresh id (OWASP
    /// Session Management Cheat Sheet). Return an empty map when there is nothing to add.
    ///
    /// # Errors
    /// Any [`HostError`]: the router answers with it (503 for [`HostError::Unavailable`]). The code
    /// was used up all the same, so the customer tries again with the next one.
    fn mfa_passed(
        &self,
        parts: &mut Parts,
        proof: MfaPassed,
    ) -> impl Future<Output = Result<HeaderMap, HostError>> + Send;

    /// The calling session is over: the customer's MFA was reset or their factors changed since its
    /// password check, and the router answers 401 `session_ended`. Drop it from the host's session
    /// store, so the next request is simply not signed in; the headers returned go on that answer
    /// (a cleared session cookie, say).
    ///
    /// The default does nothing: the session stays, useless (every route refuses it), until it
    /// expires.
    ///
    /// # Errors
    /// Any [`HostError`]: logged, and the answer stays 401 `session_ended`.
    fn session_ended(
        &self,
        parts: &mut Parts,
    ) -> impl Future<Output = Result<HeaderMap, HostError>> + Send {
        let _ = parts;
        async { Ok(HeaderMap::new()) }
    }
}

/// Who is calling, as the host's session says: the organisation (one customer portal), and the
/// customer, the administrator, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    org: OrgId,
    customer: Option<(CustomerId, MfaSession)>,
    admin: Option<Actor>,
}

impl Caller {
    /// A customer of `org`, with the MFA session the host keeps for them (how far sign-in got, and
    /// for which of the customer's factors).
    #[must_use]
    pub const fn customer(org: OrgId, customer: CustomerId, session: MfaSession) -> Self {
        Self {
            org,
            customer: Some((customer, session)),
            admin: None,
        }
    }

    /// An administrator of `org`; `name` goes into the audit log as who did it.
    #[must_use]
    pub const fn admin(org: OrgId, name: Actor) -> Self {
        Self {
            org,
            customer: None,
            admin: Some(name),
        }
    }

    /// The same caller, also an administrator named `name` (a customer who administers the portal).
    #[must_use]
    pub fn with_admin(self, name: Actor) -> Self {
        Self {
            admin: Some(name),
            ..self
        }
    }

    /// The organisation.
    #[must_use]
    pub const fn org(&self) -> &OrgId {
        &self.org
    }

    /// The customer and their MFA session, if the caller is a customer.
    #[must_use]
    pub fn customer_session(&self) -> Option<(&CustomerId, &MfaSession)> {
        self.customer.as_ref().map(|(id, session)| (id, session))
    }

    /// The administrator's name, if the caller is one.
    #[must_use]
    pub const fn admin_name(&self) -> Option<&Actor> {
        self.admin.as_ref()
    }
}

/// The host could not, or would not, tell who is calling.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostError {
    /// No signed-in session: 401 `unauthenticated`.
    Unauthenticated,
    /// The request is refused (a failed CSRF check, a session of the wrong kind): 403 `forbidden`.
    Forbidden,
    /// The host's session store failed: 503 `unavailable`. The source is logged, never sent.
    Unavailable(Box<dyn core::error::Error + Send + Sync>),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated => f.write_str("no signed-in session"),
            Self::Forbidden => f.write_str("the request is refused"),
            Self::Unavailable(_) => f.write_str("the session store is unavailable"),
        }
    }
}

impl core::error::Error for HostError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Unavailable(source) => Some(&**source),
            _ => None,
        }
    }
}
