//! Why an operation did not go through: a [`Refusal`] the caller can act on, or a [`Fault`] an
//! operator must fix. A host answers the first to the customer (a 4xx) and pages someone for the
//! second (a 5xx), with one arm each and no catch-all over the variants.
//!
//! Each error says what went wrong once: an error that wraps another names its own step in its
//! message and hands the wrapped one out through [`source`](core::error::Error::source), so a
//! reporter that prints the chain (`anyhow`'s `{:#}`, `tracing`'s error fields) shows each cause
//! once.

use crate::{
    BackupError, CodeError, CustomerId, DecodeError, OrgId, SealError, SettingsError, TimeError,
    UnixTime, UriError,
};

/// Why the rules refused an operation. The customer (or the administrator, for settings and
/// resets) can act on it: give another code, wait, sign in again. Nothing changed beyond what the
/// refusal itself records (its audit event, a failure counted toward lockout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Enrollment was attempted while the organisation has MFA switched off.
    #[error("MFA is switched off for this organisation")]
    MfaDisabled,
    /// The customer already has MFA configured (an administrator must reset it first).
    #[error("MFA is already configured")]
    AlreadyConfigured,
    /// There is no enrollment to confirm.
    #[error("no enrollment is pending")]
    NotPending,
    /// The customer has no MFA configured.
    #[error("MFA is not configured")]
    NotConfigured,
    /// The pending enrollment expired: start again.
    #[error("the enrollment has expired")]
    EnrollmentExpired,
    /// The text is not a code.
    #[error("the code is malformed")]
    InvalidCode(#[source] CodeError),
    /// The text is not a backup code.
    #[error("the backup code is malformed")]
    InvalidBackupCode,
    /// The code matched nothing.
    #[error("the code is not valid")]
    WrongCode,
    /// The TOTP code was already used, or an older one than the last accepted.
    #[error("the code was already used")]
    ReplayedCode,
    /// The backup code was already used.
    #[error("the backup code was already used")]
    UsedBackupCode,
    /// Too many failures: try again at `retry_at`.
    #[error("too many failed attempts; retry after {}", retry_at.as_secs())]
    Locked {
        /// When attempts are accepted again.
        retry_at: UnixTime,
    },
    /// Settings out of range (an administrator's input).
    #[error("the settings are out of range")]
    InvalidSettings(#[source] SettingsError),
    /// The session's password check came before a reset or a change of factor: it is over, and
    /// the customer signs in again.
    #[error("this session ended when the customer's MFA changed; sign in again")]
    SessionEnded,
    /// Changing factors needs a second factor that passed in this session within `max_age_secs`,
    /// and none has (a password-only session, or one that needed no MFA).
    #[error("give a second factor in this session first (within the last {max_age_secs} seconds)")]
    SecondFactorRequired {
        /// How recent it must be.
        max_age_secs: u64,
    },
    /// The session passed a second factor, but not within `max_age_secs` for `purpose`: give a
    /// fresh code for it ([`Service::step_up_totp`](crate::Service::step_up_totp)) and try again,
    /// without signing out.
    #[error("give a fresh code for {purpose} (the last one is older than {max_age_secs} seconds)")]
    StepUpRequired {
        /// What the fresh code is for.
        purpose: crate::Purpose,
        /// How recent it must be.
        max_age_secs: u64,
    },
    /// Nothing is stored for this customer: there is nothing to reset.
    #[error("no MFA is stored for this customer")]
    NotFound,
}

/// What went wrong on the service's side: its keys, its settings or its clock. No customer can
/// fix it and retrying will not help; an operator must. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// The sealed secret did not open: the keyring lacks its key, or holds other material under
    /// its id.
    #[error("the customer's secret could not be unsealed")]
    Seal(#[source] SealError),
    /// Backup codes could not be hashed (argon2 refused the cost parameters, or its memory).
    #[error("backup codes could not be hashed")]
    Backup(#[source] BackupError),
    /// The key URI could not be built from the organisation's settings.
    #[error("the key URI could not be built from the settings")]
    Uri(#[source] UriError),
    /// The clock reads a time before the TOTP start time.
    #[error("the clock is out of range for TOTP")]
    Time(#[source] TimeError),
}

/// Why a step of the policy machine did not go through: refused by the rules, or a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[allow(
    clippy::exhaustive_enums,
    reason = "the split is the point: a host matches both arms, and each inner enum may grow"
)]
pub enum MfaError {
    /// The rules refused it: tell the caller.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A fault on the service's side: an operator must act.
    #[error(transparent)]
    Fault(#[from] Fault),
}

impl MfaError {
    /// The refusal, if the rules refused.
    #[must_use]
    pub const fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(refusal) => Some(refusal),
            Self::Fault(_) => None,
        }
    }
}

/// A stored record this version cannot read (written by a newer version, or damaged), and whose
/// it is. Not an outage: retrying will not help, and it changed nothing and passed no one: every
/// call on the record, a reset too, refuses it until an operator restores the row (from a backup,
/// or by deleting it, which leaves the customer unconfigured: the next record draws a new factor
/// generation, so no session that passed the old factor comes back).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorruptRecord {
    /// The organisation it belongs to.
    pub org: OrgId,
    /// The customer, for a customer's record; `None` for the organisation's policy.
    pub customer: Option<CustomerId>,
    /// What is wrong with the bytes (never the bytes themselves).
    pub error: DecodeError,
}

impl core::fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.customer {
            Some(customer) => write!(
                f,
                "the stored MFA record of customer {customer} in organisation {} cannot be read",
                self.org
            ),
            None => write!(
                f,
                "the stored MFA policy of organisation {} cannot be read",
                self.org
            ),
        }
    }
}

impl core::error::Error for CorruptRecord {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}
