//! What a host keeps in a customer's session about MFA, and what a protected request checks.
//!
//! A session is stamped, when the password is checked, with the customer's factor *generation*: a
//! number the customer's record moves on at every reset and every change of factor (a new
//! authenticator, a new set of backup codes). A session stamped with an earlier generation is over,
//! on every node and whichever tool made the change (the HTTP API, `mfa admin`, another service),
//! without the host having to find and delete it. The stamp also says how and when a second factor
//! passed in this session, so a sensitive change can ask for one that passed recently, and a
//! session that needed no MFA when it signed in can be asked for it once the organisation switches
//! MFA on.

use serde::{Deserialize, Serialize};

use crate::{PassedBy, UnixTime};

/// The longest a second factor counts as recent for changing factors (generating backup codes): ten
/// minutes (OWASP ASVS 5 7.5.1: re-authenticate before changing MFA configuration).
pub const RECENT_FACTOR_SECS: u64 = 600;

/// A customer session's MFA, from the password check on: keep it in the session (server-side)
/// and hand it back with every request, through [`Service`](crate::Service) calls or
/// [`Service::check_session`](crate::Service::check_session).
///
/// Only this crate makes one ([`LoginStep::session`](crate::LoginStep::session) at sign-in,
/// [`MfaPassed::session`](crate::MfaPassed::session) when a factor passes). It is `serde` so that a
/// host can keep it in its own session store (tower-sessions, Redis, a database); it is not a
/// credential and must never be taken from the client, since whoever can write it can claim that
/// a factor passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MfaSession {
    generation: u64,
    signed_in_at: UnixTime,
    passed: Option<FactorPassed>,
}

/// How and when a session passed MFA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FactorPassed {
    /// How.
    pub by: PassedBy,
    /// When.
    pub at: UnixTime,
}

impl FactorPassed {
    /// Whether a second factor was checked (anything but [`PassedBy::NotRequired`]).
    #[must_use]
    pub const fn is_second_factor(&self) -> bool {
        !matches!(self.by, PassedBy::NotRequired)
    }
}

impl MfaSession {
    pub(crate) const fn signed_in(generation: u64, now: UnixTime) -> Self {
        Self {
            generation,
            signed_in_at: now,
            passed: None,
        }
    }

    /// The same session, passed by `by` at `at`, for the customer's factors of `generation`.
    pub(crate) const fn passed_at(self, generation: u64, by: PassedBy, at: UnixTime) -> Self {
        Self {
            generation,
            signed_in_at: self.signed_in_at,
            passed: Some(FactorPassed { by, at }),
        }
    }

    /// The customer's factor generation this session belongs to.
    #[must_use]
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// When the password was checked.
    #[must_use]
    pub const fn signed_in_at(&self) -> UnixTime {
        self.signed_in_at
    }

    /// How and when MFA passed in this session, if it did.
    #[must_use]
    pub const fn passed(&self) -> Option<FactorPassed> {
        self.passed
    }

    /// Whether a second factor (not "none required") passed in this session within `max_age_secs`
    /// of `now`.
    #[must_use]
    pub fn second_factor_within(&self, max_age_secs: u64, now: UnixTime) -> bool {
        self.passed.is_some_and(|passed| {
            passed.is_second_factor()
                && passed.at <= now
                && now.as_secs().saturating_sub(passed.at.as_secs()) <= max_age_secs
        })
    }
}

/// What a protected request may do with a session, now ([`Service::check_session`]).
///
/// [`Service::check_session`]: crate::Service::check_session
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[must_use]
pub enum SessionCheck {
    /// Let it in: a second factor passed in it, or none is required (then `by` is
    /// [`PassedBy::NotRequired`]).
    Complete(FactorPassed),
    /// MFA is on and the customer has not set it up: the session may only enroll.
    Enroll,
    /// The customer has MFA: the session may only give a code (also when it signed in while none
    /// was required, and the organisation has switched MFA on since, or the customer set it up
    /// elsewhere).
    Challenge,
    /// A reset or a change of factor happened after this session's password check: end the
    /// session; the customer signs in again.
    Ended,
}

impl SessionCheck {
    /// Whether the session may see the account.
    #[must_use]
    pub const fn is_complete(&self) -> bool {
        matches!(self, Self::Complete(_))
    }
}
