//! Audit events: what happened, to whom, when. Every attempt and every state change emits one, in the
//! same write as the state it describes. No event ever holds a secret, a code or a hash.

use serde::{Deserialize, Serialize};

use crate::{Actor, CustomerId, KeyId, OrgId, UnixTime};

/// One audit event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub at: UnixTime,
    /// The organisation.
    pub org: OrgId,
    /// The customer, for customer events.
    pub customer: Option<CustomerId>,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// A short name of the event's kind (`enrollment_started`, `attempt_rejected`...), for stores to
    /// index and for people to read.
    #[must_use]
    pub const fn kind_name(&self) -> &'static str {
        match self.kind {
            EventKind::OrgEnabled { .. } => "org_enabled",
            EventKind::OrgDisabled { .. } => "org_disabled",
            EventKind::OrgSettingsChanged { .. } => "org_settings_changed",
            EventKind::EnrollmentStarted { .. } => "enrollment_started",
            EventKind::EnrollmentConfirmed { .. } => "enrollment_confirmed",
            EventKind::TotpAccepted { .. } => "totp_accepted",
            EventKind::BackupCodeAccepted { .. } => "backup_code_accepted",
            EventKind::BackupCodesGenerated { .. } => "backup_codes_generated",
            EventKind::AttemptRejected { .. } => "attempt_rejected",
            EventKind::LockedOut { .. } => "locked_out",
            EventKind::Reset { .. } => "reset",
            EventKind::SecretResealed { .. } => "secret_resealed",
            EventKind::RejectionsCoalesced { .. } => "rejections_coalesced",
            EventKind::StepUpPassed { .. } => "step_up_passed",
            EventKind::ReplacementStarted { .. } => "replacement_started",
            EventKind::AuthenticatorReplaced { .. } => "authenticator_replaced",
        }
    }

    /// The byte form stores keep.
    #[must_use]
    pub fn to_bytes(&self) -> alloc::vec::Vec<u8> {
        crate::encoding::encode(crate::encoding::FORMAT, self)
    }

    /// Reads the byte form back.
    ///
    /// # Errors
    /// [`DecodeError`](crate::DecodeError) for bytes this version did not write.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::DecodeError> {
        crate::encoding::decode_current(bytes)
    }
}

/// An event with the position a store gave it in the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Increases with every event a store appends, across all organisations.
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged (the serde default): postcard, the stored form, cannot read internally tagged enums.
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The organisation switched MFA on.
    OrgEnabled {
        /// Who did it.
        by: Actor,
    },
    /// The organisation switched MFA off (customers who configured it keep it).
    OrgDisabled {
        /// Who did it.
        by: Actor,
    },
    /// The organisation's settings changed.
    OrgSettingsChanged {
        /// Who did it.
        by: Actor,
    },
    /// A customer was issued a fresh secret to enroll (replacing any pending one).
    EnrollmentStarted {
        /// When the pending enrollment expires.
        expires_at: UnixTime,
    },
    /// A customer proved the new authenticator with a code: MFA is configured.
    EnrollmentConfirmed {
        /// The time step of the confirming code, which now counts as used.
        step: u64,
    },
    /// A sign-in code was accepted.
    TotpAccepted {
        /// Its time step.
        step: u64,
        /// Its distance from the current step.
        offset: i64,
    },
    /// A backup code was accepted and is now used.
    BackupCodeAccepted {
        /// Unused codes left.
        remaining: u32,
    },
    /// A new set of backup codes replaced every earlier one.
    BackupCodesGenerated {
        /// How many.
        count: u32,
    },
    /// An attempt failed.
    AttemptRejected {
        /// What was attempted.
        factor: Factor,
        /// Why it was rejected.
        reason: Rejection,
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Failures locked the customer out.
    LockedOut {
        /// Until when.
        until: UnixTime,
    },
    /// An administrator reset the customer's MFA: secret and codes erased, lockout cleared.
    Reset {
        /// Who did it.
        by: Actor,
    },
    /// The customer's secret was sealed again under another key (key rotation); nothing else
    /// changed.
    SecretResealed {
        /// The key that sealed it.
        from: KeyId,
        /// The key that seals it now.
        to: KeyId,
    },
    /// Refusals that change no record (malformed text, attempts while locked out, an expired
    /// enrollment, the code just accepted sent again) are logged one of a kind per customer and
    /// window: the first as its own `attempt_rejected` event, the repeats that follow within the
    /// window counted here, so a flood cannot grow the log without bound.
    RejectionsCoalesced {
        /// What was attempted.
        factor: Factor,
        /// Why it was rejected.
        reason: Rejection,
        /// How many repeats were counted (not logged one by one) after the first.
        count: u32,
        /// When the first of the window, which was logged, came.
        from: UnixTime,
        /// When the last counted one came.
        to: UnixTime,
    },
    /// A configured customer started replacing their authenticator; the current one keeps working.
    ReplacementStarted {
        /// Until when the new one can be confirmed.
        expires_at: UnixTime,
    },
    /// The new authenticator was confirmed and took the old one's place.
    AuthenticatorReplaced {
        /// The time step of the confirming code (of the new secret), which now counts as used.
        step: u64,
    },
    /// A step-up passed: the acceptance event just before it says which code; this one, what for.
    StepUpPassed {
        /// What the host asked the fresh factor for.
        purpose: crate::Purpose,
        /// The factor given.
        factor: Factor,
    },
}

/// Which factor an attempt used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Factor {
    /// A code confirming a new enrollment.
    Enrollment,
    /// A TOTP code at sign-in.
    Totp,
    /// A backup code.
    BackupCode,
}

/// Why an attempt was rejected: the audit log records the real reason even where the caller is told
/// less.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rejection {
    /// The code matched nothing.
    WrongCode,
    /// The TOTP code was for a step at or before one already accepted (RFC 6238 section 5.2).
    ReplayedCode,
    /// The backup code was already used.
    UsedBackupCode,
    /// The pending enrollment had expired.
    Expired,
    /// The customer was locked out; the code was not even checked.
    Locked,
    /// The text was not a code at all; it does not count as a failure.
    Malformed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn every_kind_survives_its_byte_form() {
        let kinds = vec![
            EventKind::OrgEnabled {
                by: Actor::new("a").unwrap(),
            },
            EventKind::OrgDisabled {
                by: Actor::new("a").unwrap(),
            },
            EventKind::OrgSettingsChanged {
                by: Actor::new("a").unwrap(),
            },
            EventKind::EnrollmentStarted {
                expires_at: UnixTime::from_secs(9),
            },
            EventKind::EnrollmentConfirmed { step: 7 },
            EventKind::TotpAccepted {
                step: u64::MAX,
                offset: -1,
            },
            EventKind::BackupCodeAccepted { remaining: 4 },
            EventKind::BackupCodesGenerated { count: 5 },
            EventKind::AttemptRejected {
                factor: Factor::BackupCode,
                reason: Rejection::Malformed,
                failures: 3,
            },
            EventKind::LockedOut {
                until: UnixTime::from_secs(60),
            },
            EventKind::Reset {
                by: Actor::new("admin").unwrap(),
            },
            EventKind::SecretResealed {
                from: KeyId::new(1),
                to: KeyId::new(2),
            },
            EventKind::RejectionsCoalesced {
                factor: Factor::Totp,
                reason: Rejection::Locked,
                count: 299,
                from: UnixTime::from_secs(10),
                to: UnixTime::from_secs(69),
            },
            EventKind::StepUpPassed {
                purpose: crate::Purpose::new("payment_method").unwrap(),
                factor: Factor::BackupCode,
            },
            EventKind::ReplacementStarted {
                expires_at: UnixTime::from_secs(600),
            },
            EventKind::AuthenticatorReplaced { step: 9 },
        ];
        let mut names = alloc::collections::BTreeSet::new();
        for kind in kinds {
            let event = Event {
                at: UnixTime::from_secs(1),
                org: OrgId::new("acme").unwrap(),
                customer: Some(CustomerId::new("alice").unwrap()),
                kind,
            };
            assert_eq!(Event::from_bytes(&event.to_bytes()), Ok(event.clone()));
            names.insert(event.kind_name());
        }
        assert_eq!(names.len(), 16, "every kind has its own name");
        let mut bytes = Event {
            at: UnixTime::EPOCH,
            org: OrgId::new("a").unwrap(),
            customer: None,
            kind: EventKind::Reset {
                by: Actor::new("x").unwrap(),
            },
        }
        .to_bytes();
        bytes.push(0);
        assert_eq!(
            Event::from_bytes(&bytes),
            Err(crate::DecodeError::Corrupt),
            "trailing bytes"
        );
    }
}
