//! The organisation's policy: MFA on or off for its customer portal, and the settings that go with it.

use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::{BackupHashParams, Failures, LockoutRule, Totp, UnixTime, Window};

/// The longest allowed enrollment lifetime: a pending secret must not linger (one day).
pub const MAX_ENROLLMENT_LIFETIME_SECS: u64 = 86_400;

/// The shortest step-up age an organisation may set: one TOTP step (a code is not fresher).
pub const MIN_STEP_UP_SECS: u64 = 30;
/// The longest step-up age an organisation may set: one day (past that a step-up is no check).
pub const MAX_STEP_UP_SECS: u64 = 86_400;

/// The byte format of policies: 2 added [`Settings::step_up_max_age_secs`]; 1 is still read.
const POLICY_FORMAT: u8 = 2;

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
    /// How long, in seconds, a second factor counts as fresh for a sensitive action (changing the
    /// card on file, making new backup codes, replacing the authenticator): past it the customer
    /// gives a fresh code ([`Service::step_up_totp`](crate::Service::step_up_totp)) without signing out.
    /// Ten minutes by default ([`RECENT_FACTOR_SECS`](crate::RECENT_FACTOR_SECS)), from
    /// [`MIN_STEP_UP_SECS`] to [`MAX_STEP_UP_SECS`].
    pub step_up_max_age_secs: u64,
}

/// [`Settings`] as format 1 wrote them, before step-up had a setting of its own.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct SettingsV1 {
    totp: Totp,
    window: Window,
    drift_learning: bool,
    enrollment_lifetime_secs: u64,
    backup_code_count: u8,
    backup_hash: BackupHashParams,
    lockout: LockoutRule,
    issuer: String,
}

/// [`OrgPolicy`] as format 1 wrote it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct OrgPolicyV1 {
    enabled: bool,
    settings: SettingsV1,
}

impl From<OrgPolicyV1> for OrgPolicy {
    fn from(old: OrgPolicyV1) -> Self {
        let SettingsV1 {
            totp,
            window,
            drift_learning,
            enrollment_lifetime_secs,
            backup_code_count,
            backup_hash,
            lockout,
            issuer,
        } = old.settings;
        Self {
            enabled: old.enabled,
            settings: Settings {
                totp,
                window,
                drift_learning,
                enrollment_lifetime_secs,
                backup_code_count,
                backup_hash,
                lockout,
                issuer,
                // What format 1 enforced for changing factors, before it was a setting.
                step_up_max_age_secs: crate::RECENT_FACTOR_SECS,
            },
        }
    }
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
            step_up_max_age_secs: crate::RECENT_FACTOR_SECS,
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
        if !(MIN_STEP_UP_SECS..=MAX_STEP_UP_SECS).contains(&self.step_up_max_age_secs) {
            return Err(SettingsError::StepUpMaxAge);
        }
        let lockout = &self.lockout;
        if lockout.base_delay_secs == 0
            || lockout.max_delay_secs < lockout.base_delay_secs
            || lockout.free_failures > MAX_FREE_FAILURES
            || worst_hour(lockout) > MAX_FAILURES_PER_HOUR
        {
            return Err(SettingsError::Lockout);
        }
        Ok(())
    }
}

/// The most consecutive failures a lockout rule may allow before its first lockout.
pub const MAX_FREE_FAILURES: u32 = 20;

/// The most failed attempts any account may see in an hour (NIST SP 800-63B 5.2.2, OWASP ASVS 2.2.1).
pub const MAX_FAILURES_PER_HOUR: u32 = 100;

/// The failures an attacker gets through in the first hour (the worst one: delays only grow),
/// retrying the moment each lockout ends. Stops counting past the limit.
fn worst_hour(rule: &LockoutRule) -> u32 {
    let (mut failures, mut now, mut count) = (Failures::default(), UnixTime::EPOCH, 0u32);
    while now.as_secs() < 3600 && count <= MAX_FAILURES_PER_HOUR {
        count = count.saturating_add(1);
        failures = failures.after_failure(rule, now);
        now = failures.locked_at(now).unwrap_or(now);
    }
    count
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
    /// The lockout rule would let more than 100 failures an hour through, or its delays are zero or
    /// capped below the first one.
    #[error("the lockout rule must allow at most 100 failures an hour, with positive delays")]
    Lockout,
    /// The step-up age is not between [`MIN_STEP_UP_SECS`] and [`MAX_STEP_UP_SECS`].
    #[error("the step-up age must be between 30 seconds and 1 day")]
    StepUpMaxAge,
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
    ///
    /// # Errors
    /// [`SettingsError`] when the settings are out of range.
    pub fn new(settings: Settings) -> Result<Self, SettingsError> {
        settings.validate()?;
        Ok(Self {
            enabled: false,
            settings,
        })
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

    /// The same policy with MFA switched on or off.
    #[must_use]
    pub fn with_mfa(self, mfa: OrgMfa) -> Self {
        Self {
            enabled: matches!(mfa, OrgMfa::On),
            ..self
        }
    }

    /// Whether the organisation has MFA on or off.
    #[must_use]
    pub const fn mfa(&self) -> OrgMfa {
        if self.enabled {
            OrgMfa::On
        } else {
            OrgMfa::Off
        }
    }

    /// The byte form stores keep.
    #[must_use]
    pub fn to_bytes(&self) -> alloc::vec::Vec<u8> {
        crate::encoding::encode(POLICY_FORMAT, self)
    }

    /// Reads the byte form back: format 2, or format 1 as earlier versions wrote it (with the
    /// step-up age they enforced, ten minutes).
    ///
    /// # Errors
    /// [`DecodeError`](crate::DecodeError) for bytes this version did not write.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::DecodeError> {
        let policy: Self = match crate::encoding::format_of(bytes)? {
            (POLICY_FORMAT, body) => crate::encoding::decode(body)?,
            (1, body) => crate::encoding::decode::<OrgPolicyV1>(body)?.into(),
            (other, _) => return Err(crate::DecodeError::UnknownFormat(other)),
        };
        // Stored settings obey the same bounds as new ones: a tampered row cannot switch lockout off.
        policy
            .settings
            .validate()
            .map_err(|_| crate::DecodeError::Corrupt)?;
        Ok(policy)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_1_policy_reads_with_the_step_up_age_it_enforced() {
        let old = OrgPolicyV1 {
            enabled: true,
            settings: SettingsV1 {
                totp: Totp::default(),
                window: Window::default(),
                drift_learning: true,
                enrollment_lifetime_secs: 300,
                backup_code_count: 8,
                backup_hash: BackupHashParams::DEFAULT,
                lockout: LockoutRule::default(),
                issuer: String::from("Acme"),
            },
        };
        let bytes = crate::encoding::encode(1, &old);
        let policy = OrgPolicy::from_bytes(&bytes).unwrap();
        assert!(policy.enabled());
        let settings = policy.settings();
        assert_eq!(settings.step_up_max_age_secs, crate::RECENT_FACTOR_SECS);
        assert_eq!(
            (
                settings.backup_code_count,
                settings.enrollment_lifetime_secs
            ),
            (8, 300)
        );
        assert!(settings.drift_learning);
        assert_eq!(settings.issuer, "Acme");
        // Written back, it is format 2, and reads the same.
        let again = policy.to_bytes();
        assert_eq!(again.first(), Some(&POLICY_FORMAT));
        assert_eq!(OrgPolicy::from_bytes(&again), Ok(policy));
        // A format from a newer version is refused, not misread.
        let mut newer = again.clone();
        newer[0] = POLICY_FORMAT + 1;
        assert_eq!(
            OrgPolicy::from_bytes(&newer),
            Err(crate::DecodeError::UnknownFormat(POLICY_FORMAT + 1))
        );
    }

    #[test]
    fn step_up_ages_outside_30_seconds_to_a_day_are_refused() {
        for (secs, ok) in [
            (0, false),
            (29, false),
            (30, true),
            (600, true),
            (86_400, true),
            (86_401, false),
            (u64::MAX, false),
        ] {
            let settings = Settings {
                step_up_max_age_secs: secs,
                ..Settings::default()
            };
            let expected = if ok {
                Ok(())
            } else {
                Err(SettingsError::StepUpMaxAge)
            };
            assert_eq!(settings.validate(), expected, "{secs}");
        }
    }

    #[test]
    fn lockout_rules_that_allow_more_than_100_failures_an_hour_are_refused() {
        assert_eq!(Settings::default().validate(), Ok(()));
        assert!(worst_hour(&LockoutRule::default()) < 20);
        let lax = [
            LockoutRule {
                free_failures: u32::MAX,
                ..LockoutRule::default()
            },
            LockoutRule {
                free_failures: 20,
                base_delay_secs: 1,
                max_delay_secs: 1,
            },
            LockoutRule {
                free_failures: 5,
                base_delay_secs: 10,
                max_delay_secs: 30,
            },
            LockoutRule {
                base_delay_secs: 0,
                ..LockoutRule::default()
            },
        ];
        for lockout in lax {
            let settings = Settings {
                lockout,
                ..Settings::default()
            };
            assert_eq!(
                settings.validate(),
                Err(SettingsError::Lockout),
                "{lockout:?}"
            );
            assert!(OrgPolicy::new(settings).is_err());
        }
        // A stored policy with a lax rule does not load.
        let mut lax = OrgPolicy::default();
        lax.settings.lockout.free_failures = 1_000;
        assert_eq!(
            OrgPolicy::from_bytes(&lax.to_bytes()),
            Err(crate::DecodeError::Corrupt)
        );
    }

    #[test]
    fn backup_hash_costs_are_bounded() {
        assert!(BackupHashParams::new(8_000_000, 2, 1).is_err());
        assert!(BackupHashParams::new(19_456, 1_000_000, 1).is_err());
        assert!(BackupHashParams::new(19_456, 2, 1).is_ok());
    }
}

/// An organisation's MFA switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OrgMfa {
    /// Every customer must set up MFA and give a code at sign-in.
    On,
    /// Customers who never set it up sign in with the password alone; those who did still give a
    /// code (until an administrator resets them).
    Off,
}
