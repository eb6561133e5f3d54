//! The organisation's policy: MFA on or off for its customer portal, and the settings that go with it.

use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::{BackupHashParams, LockoutRule, Totp, Window};

/// The longest allowed enrollment lifetime: a pending secret must not linger (one day).
pub const MAX_ENROLLMENT_LIFETIME_SECS: u64 = 86_400;

/// How an organisation runs MFA. Every field has a safe default ([`Settings::default`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Settings {
    /// The TOTP parameters for new enrollments (SHA-1, 6 digits, 30 s: what every app supports).
    /// Customers keep the parameters they enrolled with.
    pub totp: Totp,
    /// Steps accepted either side of the current one (one each way, RFC 6238 section 5.2).
    pub window: Window,
    /// Remember each customer's clock drift and centre the window on it (RFC 6238 section 6). Off by
    /// default.
    pub drift_learning: bool,
    /// How long a started enrollment may be confirmed, in seconds (10 minutes).
    pub enrollment_lifetime_secs: u64,
    /// How many backup codes a customer gets (5).
    pub backup_code_count: u8,
    /// The argon2id cost of backup-code hashes (OWASP's minimum for argon2id).
    pub backup_hash: BackupHashParams,
    /// Brute-force lockout (5 failures, then 30 s doubling to 1 h).
    pub lockout: LockoutRule,
    /// The name authenticator apps show above the code.
    pub issuer: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            totp: Totp::default(),
            window: Window::default(),
            drift_learning: false,
            enrollment_lifetime_secs: 600,
            backup_code_count: 5,
            backup_hash: BackupHashParams::DEFAULT,
            lockout: LockoutRule::default(),
            issuer: String::from("Customer Portal"),
        }
    }
}

impl Settings {
    /// Checks the settings a host wants to store.
    ///
    /// # Errors
    /// [`SettingsError`] naming the first setting that is out of range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.totp.t0() != crate::UnixTime::EPOCH {
            return Err(SettingsError::NonZeroT0);
        }
        if !(1..=MAX_ENROLLMENT_LIFETIME_SECS).contains(&self.enrollment_lifetime_secs) {
            return Err(SettingsError::EnrollmentLifetime);
        }
        if !(1..=crate::MAX_BACKUP_CODES).contains(&self.backup_code_count) {
            return Err(SettingsError::BackupCodeCount);
        }
        let issuer = self.issuer.trim();
        if issuer.is_empty() || issuer.contains(':') || issuer.len() > crate::MAX_ID_LEN {
            return Err(SettingsError::Issuer);
        }
        if self.lockout.base_delay_secs == 0
            || self.lockout.max_delay_secs < self.lockout.base_delay_secs
        {
            return Err(SettingsError::Lockout);
        }
        Ok(())
    }
}

/// A setting out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The TOTP T0 is not the epoch; key URIs cannot carry another.
    #[error("the TOTP start time must be the Unix epoch")]
    NonZeroT0,
    /// The enrollment lifetime is not between 1 s and a day.
    #[error("the enrollment lifetime must be between 1 second and 1 day")]
    EnrollmentLifetime,
    /// The backup-code count is not between 1 and the maximum.
    #[error("the backup code count must be between 1 and {max}", max = crate::MAX_BACKUP_CODES)]
    BackupCodeCount,
    /// The issuer is empty, too long or contains `:`.
    #[error("the issuer must be 1 to 255 bytes without ':'")]
    Issuer,
    /// The lockout delays are zero or the cap is below the first delay.
    #[error("lockout delays must be positive and the cap at least the first delay")]
    Lockout,
}

/// An organisation's MFA policy: switched on or off, with its settings.
///
/// Switching MFA on or off never changes a customer's own state: a customer who configured MFA keeps
/// being challenged after the organisation switches it off (DESIGN.md: the setting is sticky for them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPolicy {
    enabled: bool,
    settings: Settings,
}

impl OrgPolicy {
    /// A policy with MFA switched off and these settings.
    #[must_use]
    pub const fn new(settings: Settings) -> Self {
        Self {
            enabled: false,
            settings,
        }
    }

    /// Whether MFA is switched on for the organisation's customers.
    #[must_use]
    pub const fn enabled(&self) -> bool {
        self.enabled
    }

    /// The settings.
    #[must_use]
    pub const fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The same policy switched on or off.
    #[must_use]
    pub fn with_enabled(self, enabled: bool) -> Self {
        Self { enabled, ..self }
    }

    /// The byte form stores keep.
    #[must_use]
    pub fn to_bytes(&self) -> alloc::vec::Vec<u8> {
        crate::encoding::encode(self)
    }

    /// Reads the byte form back.
    ///
    /// # Errors
    /// [`DecodeError`](crate::DecodeError) for bytes this version did not write.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::encoding::decode(bytes)
    }

    /// The same policy with other settings.
    ///
    /// # Errors
    /// [`SettingsError`] when the settings are out of range.
    pub fn with_settings(self, settings: Settings) -> Result<Self, SettingsError> {
        settings.validate()?;
        Ok(Self { settings, ..self })
    }
}
