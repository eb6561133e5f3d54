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

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{PassedBy, UnixTime};

/// How long a second factor counts as fresh for a sensitive action unless the organisation sets
/// otherwise ([`Settings::step_up_max_age_secs`](crate::Settings::step_up_max_age_secs)): ten
/// minutes (OWASP ASVS 5 7.5.1: re-authenticate before changing MFA configuration).
pub const RECENT_FACTOR_SECS: u64 = 600;

/// The longest [`Purpose`] name, in bytes.
pub const MAX_PURPOSE_LEN: usize = 32;

/// What a step-up is for, named by the host: `payment_method`, `backup_codes`. A fresh code given
/// for one purpose does not count for another; the code given at sign-in counts for every purpose
/// while it is fresh.
///
/// 1 to [`MAX_PURPOSE_LEN`] bytes of lowercase ASCII letters, digits, `_`, `-` and `.`: a name for
/// the audit log and for the host's routes, never the customer's words.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Purpose {
    len: u8,
    bytes: [u8; MAX_PURPOSE_LEN],
}

/// A [`Purpose`] name that is empty, too long, or has a character outside `[a-z0-9_.-]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a purpose is 1 to 32 characters of a-z, 0-9, '_', '-' and '.'")]
pub struct PurposeError;

impl Purpose {
    /// Making new backup codes: what [`Service::generate_backup_codes`] asks a fresh factor for.
    ///
    /// [`Service::generate_backup_codes`]: crate::Service::generate_backup_codes
    pub const BACKUP_CODES: Self = Self::known(b"backup_codes");

    /// Changing the card (or any payment method) on file: the step-up a billing portal asks for
    /// most.
    pub const PAYMENT_METHOD: Self = Self::known(b"payment_method");

    /// Replacing the authenticator (a new phone): what
    /// [`Service::start_replacement`](crate::Service::start_replacement) asks a fresh factor for.
    pub const REPLACE_AUTHENTICATOR: Self = Self::known(b"replace_authenticator");

    /// Reads a purpose name.
    ///
    /// # Errors
    /// [`PurposeError`] for an empty or longer name, or one with another character.
    pub fn new(name: &str) -> Result<Self, PurposeError> {
        let plain = |byte: &u8| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.');
        if name.is_empty() || name.len() > MAX_PURPOSE_LEN || !name.bytes().all(|b| plain(&b)) {
            return Err(PurposeError);
        }
        Ok(Self::known(name.as_bytes()))
    }

    /// A name already known to be valid ([`Purpose::new`] checks; the tests check the constants).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        reason = "i stays below both lengths, and MAX_PURPOSE_LEN fits a u8; a const fn has no iterators"
    )]
    const fn known(name: &[u8]) -> Self {
        let mut bytes = [0u8; MAX_PURPOSE_LEN];
        let mut i = 0;
        while i < name.len() && i < MAX_PURPOSE_LEN {
            bytes[i] = name[i];
            i += 1;
        }
        Self {
            len: i as u8,
            bytes,
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        let name = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // Only ASCII is ever stored (`new`, `known`).
        core::str::from_utf8(name).unwrap_or_default()
    }
}

impl fmt::Debug for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Purpose").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Purpose {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Purpose {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = alloc::string::String::deserialize(deserializer)?;
        Self::new(&name).map_err(serde::de::Error::custom)
    }
}

/// A step-up a session passed: for what, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepUp {
    /// For what.
    pub purpose: Purpose,
    /// When.
    pub at: UnixTime,
}

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
    /// The latest step-up. Absent from sessions kept before step-ups existed (in JSON, say), which
    /// read as none. Always written, so that formats without field names read it back too.
    #[serde(default)]
    step_up: Option<StepUp>,
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
            step_up: None,
        }
    }

    /// The same session, passed by `by` at `at`, for the customer's factors of `generation`.
    pub(crate) const fn passed_at(self, generation: u64, by: PassedBy, at: UnixTime) -> Self {
        Self {
            generation,
            signed_in_at: self.signed_in_at,
            passed: Some(FactorPassed { by, at }),
            step_up: self.step_up,
        }
    }

    /// The same session after a step-up for `purpose` by `by` at `at`. A session that had not
    /// passed a second factor yet has now (the code proves the same as at sign-in); one that had
    /// keeps its sign-in time, so the step-up counts for `purpose` alone.
    pub(crate) fn stepped_up(
        self,
        generation: u64,
        by: PassedBy,
        purpose: Purpose,
        at: UnixTime,
    ) -> Self {
        let passed = match self.passed {
            Some(passed) if passed.is_second_factor() => passed,
            _ => FactorPassed { by, at },
        };
        Self {
            generation,
            signed_in_at: self.signed_in_at,
            passed: Some(passed),
            step_up: Some(StepUp { purpose, at }),
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

    /// The latest step-up of this session, if any.
    #[must_use]
    pub const fn step_up(&self) -> Option<StepUp> {
        self.step_up
    }

    /// Whether a second factor counts as fresh for `purpose`: the one given at sign-in, or a
    /// step-up for `purpose`, passed within `max_age_secs` of `now`.
    #[must_use]
    pub fn fresh_for(&self, purpose: Purpose, max_age_secs: u64, now: UnixTime) -> bool {
        self.second_factor_within(max_age_secs, now)
            || self.step_up.is_some_and(|step_up| {
                step_up.purpose == purpose && within(step_up.at, max_age_secs, now)
            })
    }

    /// Whether a second factor (not "none required") passed in this session within `max_age_secs`
    /// of `now`.
    #[must_use]
    pub fn second_factor_within(&self, max_age_secs: u64, now: UnixTime) -> bool {
        self.passed
            .is_some_and(|passed| passed.is_second_factor() && within(passed.at, max_age_secs, now))
    }
}

/// Whether `at` is no later than `now` and at most `max_age_secs` before it.
fn within(at: UnixTime, max_age_secs: u64, now: UnixTime) -> bool {
    at <= now && now.as_secs().saturating_sub(at.as_secs()) <= max_age_secs
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

/// Whether a sensitive action may go ahead in a session now ([`Service::check_step_up`]).
///
/// [`Service::check_step_up`]: crate::Service::check_step_up
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[must_use]
pub enum StepUpCheck {
    /// Go ahead: a second factor is fresh for the purpose.
    Fresh,
    /// Ask for a fresh code ([`Service::step_up_totp`] or [`Service::step_up_backup_code`]), then
    /// try again: the last one is older than `max_age_secs`, or was given for another purpose.
    ///
    /// [`Service::step_up_totp`]: crate::Service::step_up_totp
    /// [`Service::step_up_backup_code`]: crate::Service::step_up_backup_code
    Required {
        /// The organisation's [`Settings::step_up_max_age_secs`](crate::Settings::step_up_max_age_secs).
        max_age_secs: u64,
    },
    /// The customer has no second factor to step up with (MFA is off for the organisation and
    /// they never set it up): the host decides (asking for the password again, say).
    NoFactor,
    /// The session is not signed in to MFA (it may only enroll, or give its sign-in code) or is
    /// over: as [`Service::check_session`](crate::Service::check_session) says.
    Session(SessionCheck),
}

impl SessionCheck {
    /// Whether the session may see the account.
    #[must_use]
    pub const fn is_complete(&self) -> bool {
        matches!(self, Self::Complete(_))
    }
}
