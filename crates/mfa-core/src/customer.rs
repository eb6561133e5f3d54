//! A customer's MFA state and the transitions between its states.
//!
//! The states are types of their own ([`Unconfigured`], [`Pending`], [`Configured`]); each transition
//! is a method only on the state it may start from, so a forbidden one (confirming an enrollment that
//! was never started, verifying a code for a customer who has no secret) cannot be written. Every
//! operation is a pure function of the record, its input, `now` and (where needed) an RNG; it returns a
//! [`Decision`]: the next record and its audit events to write together, and the outcome to hand back
//! once they are written. A refusal for bad input changes nothing and emits nothing.

use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::encoding::{DecodeError, decode, encode, format_of};

/// The byte format of records this version writes.
const RECORD_FORMAT: u8 = 3;
use crate::backup::LegacyBackupCodeSet;
use crate::proof::Mint;
use crate::{
    Actor, BackupAttempt, BackupCode, BackupCodeSet, BackupError, BackupHashParams, BackupOwner,
    Code, CustomerId, Event, EventKind, Factor, FactorPassed, Failures, Fault, KeyId, KeyRing,
    KeyUri, MfaError, MfaPassed, MfaSession, OrgId, OrgPolicy, Pass, PassedBy, Purpose, Refusal,
    Rejection, SealError, SealedSecret, Secret, SessionCheck, Settings, StepUpCheck, Totp,
    UnixTime, VerifyError, Window,
};

/// The most steps of clock drift that drift learning remembers (RFC 6238 section 6).
pub const MAX_LEARNT_DRIFT: i64 = 2;

/// Who an operation is about, and when it happens.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The organisation.
    pub org: &'a OrgId,
    /// The customer.
    pub customer: &'a CustomerId,
    /// The current time, from the caller's clock.
    pub now: UnixTime,
}

impl Context<'_> {
    fn event(&self, kind: EventKind) -> Event {
        Event {
            at: self.now,
            org: self.org.clone(),
            customer: Some(self.customer.clone()),
            kind,
        }
    }

    /// The pass of `session` by `method` now, for the factors of `generation`.
    fn passed(&self, session: &MfaSession, generation: u64, method: PassedBy) -> Pass {
        self.pass(session, generation, method, None)
    }

    /// The pass of `session` by `method` now, for the factors of `generation`: at sign-in, or at
    /// a step-up for `purpose`.
    fn pass(
        &self,
        session: &MfaSession,
        generation: u64,
        method: PassedBy,
        purpose: Option<Purpose>,
    ) -> Pass {
        let session = match purpose {
            None => session.passed_at(generation, method, self.now),
            Some(purpose) => session.stepped_up(generation, method, purpose, self.now),
        };
        Pass::new(self.org.clone(), self.customer.clone(), session)
    }

    /// The events of an accepted code: the acceptance, then, for a step-up, what it was for.
    fn accepted(
        &self,
        acceptance: EventKind,
        factor: Factor,
        purpose: Option<Purpose>,
    ) -> Vec<Event> {
        let mut events = vec![self.event(acceptance)];
        if let Some(purpose) = purpose {
            events.push(self.event(EventKind::StepUpPassed { purpose, factor }));
        }
        events
    }
}

/// No MFA set up (the start, and where an admin reset leads).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unconfigured {}

/// A secret was issued and shown; not yet proven with a code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    sealed: SealedSecret,
    totp: Totp,
    started_at: UnixTime,
    expires_at: UnixTime,
}

/// MFA set up and proven: every sign-in needs a code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configured {
    sealed: SealedSecret,
    totp: Totp,
    configured_at: UnixTime,
    /// The last accepted time step: no code at or before it is accepted again (RFC 6238 section 5.2).
    last_step: u64,
    /// The learnt clock drift in steps, when drift learning is on (RFC 6238 section 6).
    drift: i64,
    backup: Option<BackupCodeSet>,
    /// A new authenticator being set up to replace this one (a new phone): the current one keeps
    /// working until the new one is confirmed.
    replacement: Option<Pending>,
}

/// A customer's MFA state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CustomerMfa {
    /// No MFA set up.
    Unconfigured(Unconfigured),
    /// Enrollment started, not confirmed.
    Pending(Pending),
    /// MFA set up.
    Configured(Configured),
}

/// The name of a state, for status reports and stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateName {
    /// [`Unconfigured`].
    Unconfigured,
    /// [`Pending`].
    Pending,
    /// [`Configured`].
    Configured,
}

impl StateName {
    /// `unconfigured`, `pending` or `configured`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unconfigured => "unconfigured",
            Self::Pending => "pending",
            Self::Configured => "configured",
        }
    }
}

/// Everything stored for one customer: the MFA state, the failure count that drives lockout, and
/// the factor generation that sessions are stamped with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    mfa: CustomerMfa,
    failures: Failures,
    /// Moves on at every reset and change of factor; a session stamped with another is over.
    generation: u64,
}

impl Default for CustomerRecord {
    fn default() -> Self {
        Self {
            mfa: CustomerMfa::Unconfigured(Unconfigured {}),
            failures: Failures::default(),
            generation: 0,
        }
    }
}

/// The record as format 2 stored it: before an authenticator could be replaced.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct RecordV2 {
    mfa: CustomerMfaV2,
    failures: Failures,
    generation: u64,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
enum CustomerMfaV2 {
    Unconfigured(Unconfigured),
    Pending(Pending),
    Configured(ConfiguredV2),
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ConfiguredV2 {
    sealed: SealedSecret,
    totp: Totp,
    configured_at: UnixTime,
    last_step: u64,
    drift: i64,
    backup: Option<BackupCodeSet>,
}

impl From<CustomerMfaV2> for CustomerMfa {
    fn from(old: CustomerMfaV2) -> Self {
        match old {
            CustomerMfaV2::Unconfigured(state) => Self::Unconfigured(state),
            CustomerMfaV2::Pending(state) => Self::Pending(state),
            CustomerMfaV2::Configured(old) => Self::Configured(Configured {
                sealed: old.sealed,
                totp: old.totp,
                configured_at: old.configured_at,
                last_step: old.last_step,
                drift: old.drift,
                backup: old.backup,
                replacement: None,
            }),
        }
    }
}

/// The record as format 1 stored it: before sessions had a generation to be checked against, and
/// before backup-code hashes were bound to their owner.
#[derive(Deserialize)]
struct RecordV1 {
    mfa: CustomerMfaV1,
    failures: Failures,
}

#[derive(Deserialize)]
enum CustomerMfaV1 {
    Unconfigured(Unconfigured),
    Pending(Pending),
    Configured(ConfiguredV1),
}

#[derive(Deserialize)]
struct ConfiguredV1 {
    sealed: SealedSecret,
    totp: Totp,
    configured_at: UnixTime,
    last_step: u64,
    drift: i64,
    backup: Option<LegacyBackupCodeSet>,
}

impl TryFrom<CustomerMfaV1> for CustomerMfa {
    type Error = DecodeError;

    fn try_from(old: CustomerMfaV1) -> Result<Self, DecodeError> {
        Ok(match old {
            CustomerMfaV1::Unconfigured(state) => Self::Unconfigured(state),
            CustomerMfaV1::Pending(state) => Self::Pending(state),
            CustomerMfaV1::Configured(old) => Self::Configured(Configured {
                sealed: old.sealed,
                totp: old.totp,
                configured_at: old.configured_at,
                last_step: old.last_step,
                drift: old.drift,
                backup: old
                    .backup
                    .map(BackupCodeSet::try_from)
                    .transpose()
                    .map_err(|_| DecodeError::Corrupt)?,
                replacement: None,
            }),
        })
    }
}

/// What a password sign-in must do next (the table in DESIGN.md), with the session to keep.
///
/// The [`Service`](crate::Service) answers a `LoginStep` (whose `Done` holds an [`MfaPassed`]); the
/// pure [`CustomerRecord::login_step`] a `LoginStep<Pass>`, which is no proof.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum LoginStep<P = MfaPassed> {
    /// MFA is required and not set up: enroll before access. Keep the session: enrolling needs it.
    Enroll(MfaSession),
    /// MFA is set up: give a TOTP or backup code (also after the organisation switched MFA off).
    /// Keep the session: the code is given with it.
    Challenge(MfaSession),
    /// No MFA needed: the proof to mark the session with (its [`MfaPassed::session`]).
    Done(P),
}

impl Mint for LoginStep<Pass> {
    type Minted = LoginStep;

    fn mint(self) -> LoginStep {
        match self {
            Self::Enroll(session) => LoginStep::Enroll(session),
            Self::Challenge(session) => LoginStep::Challenge(session),
            Self::Done(pass) => LoginStep::Done(pass.mint()),
        }
    }
}

impl LoginStep {
    /// The session to keep, whatever the step.
    #[must_use]
    pub const fn session(&self) -> MfaSession {
        match self {
            Self::Enroll(session) | Self::Challenge(session) => *session,
            Self::Done(passed) => passed.session(),
        }
    }
}

/// A new set of backup codes, and the session that made it, moved on to the new factors.
#[derive(Debug)]
#[must_use = "show the codes once, and keep the session: the old one has ended"]
pub struct BackupCodesIssued<P = MfaPassed> {
    /// The plaintext codes, to show once.
    pub codes: Vec<BackupCode>,
    /// The calling session, still passed, for the customer's factors with the new set: store its
    /// [`MfaPassed::session`] in place of the old one (every other session has ended).
    pub passed: P,
}

impl Mint for BackupCodesIssued<Pass> {
    type Minted = BackupCodesIssued;

    fn mint(self) -> BackupCodesIssued {
        BackupCodesIssued {
            codes: self.codes,
            passed: self.passed.mint(),
        }
    }
}

/// A new secret to show the customer once, as a QR code of [`Enrollment::uri`] or as typed text.
#[derive(Clone, Debug)]
pub struct Enrollment {
    /// The key URI, holding the secret.
    pub uri: KeyUri,
    /// When the enrollment can no longer be confirmed.
    pub expires_at: UnixTime,
}

/// A TOTP code that was accepted: with its [`MfaPassed`] from the [`Service`](crate::Service),
/// with a [`Pass`] (no proof) from the pure [`CustomerRecord::verify_totp`].
///
/// ```
/// # use mfa_core::machine::{Context, CustomerRecord, Pass};
/// # use mfa_core::{KeyRing, MfaSession, OrgPolicy, TotpAccepted};
/// fn pure_path(record: &CustomerRecord, session: &MfaSession, keys: &KeyRing, ctx: &Context<'_>) {
///     let (_next, _events, outcome) = record
///         .verify_totp(session, "123456", &OrgPolicy::default(), keys, ctx)
///         .into_parts();
///     let _accepted: Option<TotpAccepted<Pass>> = outcome.ok();
/// }
/// ```
///
/// and the proof cannot be had from it:
///
/// ```compile_fail
/// # use mfa_core::machine::{Context, CustomerRecord};
/// # use mfa_core::{KeyRing, MfaPassed, MfaSession, OrgPolicy};
/// fn pure_path(record: &CustomerRecord, session: &MfaSession, keys: &KeyRing, ctx: &Context<'_>) {
///     let (_next, _events, outcome) = record
///         .verify_totp(session, "123456", &OrgPolicy::default(), keys, ctx)
///         .into_parts();
///     let _proof: Option<MfaPassed> = outcome.ok().map(|accepted| accepted.passed);
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a sign-in passed MFA: mark the session authenticated"]
pub struct TotpAccepted<P = MfaPassed> {
    /// The proof of the sign-in.
    pub passed: P,
    /// Unused backup codes left (for the host to show, or to suggest a new set when few are left).
    pub backup_codes_remaining: u32,
}

impl Mint for TotpAccepted<Pass> {
    type Minted = TotpAccepted;

    fn mint(self) -> TotpAccepted {
        TotpAccepted {
            passed: self.passed.mint(),
            backup_codes_remaining: self.backup_codes_remaining,
        }
    }
}

/// A backup code that was accepted: with its [`MfaPassed`] from the [`Service`](crate::Service),
/// with a [`Pass`] (no proof) from the pure [`CustomerRecord::verify_backup_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a sign-in passed MFA: mark the session authenticated"]
pub struct BackupAccepted<P = MfaPassed> {
    /// The proof of the sign-in.
    pub passed: P,
    /// Unused backup codes left.
    pub remaining: u32,
}

impl Mint for BackupAccepted<Pass> {
    type Minted = BackupAccepted;

    fn mint(self) -> BackupAccepted {
        BackupAccepted {
            passed: self.passed.mint(),
            remaining: self.remaining,
        }
    }
}

/// A configured customer with this many unused backup codes or fewer should make a new set: one
/// more lost phone and they need an administrator.
pub const LOW_BACKUP_CODES: u32 = 1;

/// A customer's MFA at a glance (no secrets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerStatus {
    /// The state.
    pub state: StateName,
    /// Since when MFA is configured.
    pub configured_since: Option<UnixTime>,
    /// Unused backup codes.
    pub backup_codes_remaining: u32,
    /// Until when the customer is locked out, if now.
    pub locked_until: Option<UnixTime>,
    /// Consecutive failures.
    pub failures: u32,
}

impl CustomerStatus {
    /// Whether the customer is configured and has [`LOW_BACKUP_CODES`] unused backup codes or
    /// fewer (none made, or nearly all used): time to make a new set.
    #[must_use]
    pub fn backup_codes_low(&self) -> bool {
        self.state == StateName::Configured && self.backup_codes_remaining <= LOW_BACKUP_CODES
    }
}

/// The result of an operation: the record and events to write (atomically, only if the record is
/// unchanged since it was read), and the outcome to return once they are written.
#[derive(Debug)]
#[must_use = "write the next record and its events before acting on the outcome"]
pub struct Decision<T> {
    next: Option<CustomerRecord>,
    events: Vec<Event>,
    outcome: Result<T, MfaError>,
}

impl<T> Decision<T> {
    /// A refusal that changes nothing.
    fn refuse(error: impl Into<MfaError>) -> Self {
        Self {
            next: None,
            events: Vec::new(),
            outcome: Err(error.into()),
        }
    }

    fn write(next: CustomerRecord, events: Vec<Event>, outcome: Result<T, MfaError>) -> Self {
        Self {
            next: Some(next),
            events,
            outcome,
        }
    }

    /// An answer that changes nothing and needs no audit event: never a pass, which needs the
    /// write that consumes its factor (an outcome the Service mints into something else cannot be
    /// one).
    fn unchanged(outcome: T) -> Self
    where
        T: Mint<Minted = T>,
    {
        Self {
            next: None,
            events: Vec::new(),
            outcome: Ok(outcome),
        }
    }

    /// A refusal that changes no record but is recorded in the audit log.
    fn log(event: Event, error: impl Into<MfaError>) -> Self {
        Self {
            next: None,
            events: vec![event],
            outcome: Err(error.into()),
        }
    }

    /// The record to store, or `None` when it does not change (any events are then appended on
    /// their own).
    #[must_use]
    pub const fn next(&self) -> Option<&CustomerRecord> {
        self.next.as_ref()
    }

    /// The audit events to store with it.
    #[must_use]
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The outcome.
    pub const fn outcome(&self) -> &Result<T, MfaError> {
        &self.outcome
    }

    /// The three parts. The outcome says what happened; it holds no proof (a [`Pass`] at most),
    /// which only the [`Service`](crate::Service) turns into an [`MfaPassed`] once the record and
    /// events were written with a compare-and-swap that won.
    #[must_use = "write the record and events, then act on the outcome"]
    pub fn into_parts(self) -> (Option<CustomerRecord>, Vec<Event>, Result<T, MfaError>) {
        (self.next, self.events, self.outcome)
    }
}

impl CustomerRecord {
    /// The state.
    #[must_use]
    pub const fn mfa(&self) -> &CustomerMfa {
        &self.mfa
    }

    /// The state's name.
    #[must_use]
    pub const fn state(&self) -> StateName {
        match self.mfa {
            CustomerMfa::Unconfigured(_) => StateName::Unconfigured,
            CustomerMfa::Pending(_) => StateName::Pending,
            CustomerMfa::Configured(_) => StateName::Configured,
        }
    }

    /// The failure count and lockout.
    #[must_use]
    pub const fn failures(&self) -> &Failures {
        &self.failures
    }

    /// The sealed secret, if any (for key rotation and its status).
    #[must_use]
    pub const fn sealed_secret(&self) -> Option<&SealedSecret> {
        match &self.mfa {
            CustomerMfa::Unconfigured(_) => None,
            CustomerMfa::Pending(pending) => Some(&pending.sealed),
            CustomerMfa::Configured(configured) => Some(&configured.sealed),
        }
    }

    /// The customer's MFA at a glance.
    #[must_use]
    pub fn status(&self, now: UnixTime) -> CustomerStatus {
        let (configured_since, backup_codes_remaining) = match &self.mfa {
            CustomerMfa::Configured(c) => (
                Some(c.configured_at),
                c.backup.as_ref().map_or(0, count_remaining),
            ),
            _ => (None, 0),
        };
        CustomerStatus {
            state: self.state(),
            configured_since,
            backup_codes_remaining,
            locked_until: self.failures.locked_at(now),
            failures: self.failures.consecutive(),
        }
    }

    /// What a password sign-in must do next. A configured customer is challenged whatever the
    /// organisation's policy: switching MFA off does not switch it off for them (DESIGN.md).
    ///
    /// The session it returns is stamped with the record's factor generation, so a reset or a
    /// change of factor later ends it.
    pub fn login_step(&self, policy: &OrgPolicy, ctx: &Context<'_>) -> LoginStep<Pass> {
        let session = MfaSession::signed_in(self.generation, ctx.now);
        match (&self.mfa, policy.enabled()) {
            (CustomerMfa::Configured(_), _) => LoginStep::Challenge(session),
            (CustomerMfa::Unconfigured(_) | CustomerMfa::Pending(_), true) => {
                LoginStep::Enroll(session)
            }
            (CustomerMfa::Unconfigured(_) | CustomerMfa::Pending(_), false) => {
                LoginStep::Done(ctx.passed(&session, self.generation, PassedBy::NotRequired))
            }
        }
    }

    /// The customer's factor generation: it moves on at every reset and change of factor.
    #[must_use]
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// What a protected request may do with `session` now: let it in, ask it to enroll or for a
    /// code, or end it. A session that needed no MFA is asked again once MFA is required (the
    /// organisation switched it on, or the customer set it up in another session); a session from
    /// before a reset or a change of factor is over.
    pub fn check_session(&self, policy: &OrgPolicy, session: &MfaSession) -> SessionCheck {
        if session.generation() != self.generation {
            return SessionCheck::Ended;
        }
        match session.passed() {
            Some(passed) if passed.is_second_factor() => SessionCheck::Complete(passed),
            passed => match (&self.mfa, policy.enabled()) {
                (CustomerMfa::Configured(_), _) => SessionCheck::Challenge,
                (_, true) => SessionCheck::Enroll,
                (_, false) => SessionCheck::Complete(passed.unwrap_or(FactorPassed {
                    by: PassedBy::NotRequired,
                    at: session.signed_in_at(),
                })),
            },
        }
    }

    /// Whether a sensitive action for `purpose` may go ahead in `session` at `now`.
    pub fn check_step_up(
        &self,
        policy: &OrgPolicy,
        session: &MfaSession,
        purpose: Purpose,
        now: UnixTime,
    ) -> StepUpCheck {
        let max_age_secs = policy.settings().step_up_max_age_secs;
        match self.check_session(policy, session) {
            SessionCheck::Complete(passed) if !passed.is_second_factor() => StepUpCheck::NoFactor,
            SessionCheck::Complete(_) if session.fresh_for(purpose, max_age_secs, now) => {
                StepUpCheck::Fresh
            }
            SessionCheck::Complete(_) => StepUpCheck::Required { max_age_secs },
            other => StepUpCheck::Session(other),
        }
    }

    /// Refuses a session from before the last reset or change of factor.
    fn current(&self, session: &MfaSession) -> Result<(), Refusal> {
        if session.generation() == self.generation {
            Ok(())
        } else {
            Err(Refusal::SessionEnded)
        }
    }

    /// The generation after a reset or a change of factor: drawn at random, never 0 (a customer
    /// with no record) nor the current one. Random rather than counted, so that a record deleted
    /// by hand and made again, whose count would start over, can never meet a session stamped
    /// before: the chance that a new generation equals any given earlier one is 2^-64.
    fn next_generation<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> u64 {
        loop {
            let drawn = rng.next_u64();
            if drawn != 0 && drawn != self.generation {
                return drawn;
            }
        }
    }

    /// Issues a fresh secret to enroll, replacing any pending one. Only while the organisation has
    /// MFA on, for a session whose password was checked since the last reset; refused once
    /// configured (an admin reset comes first).
    pub fn start_enrollment<R: CryptoRng + ?Sized>(
        &self,
        session: &MfaSession,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Decision<Enrollment> {
        if let Err(error) = self.current(session) {
            return Decision::refuse(error);
        }
        let issued = match &self.mfa {
            CustomerMfa::Configured(_) => return Decision::refuse(Refusal::AlreadyConfigured),
            _ if !policy.enabled() => return Decision::refuse(Refusal::MfaDisabled),
            CustomerMfa::Unconfigured(state) => state.start(policy, keys, ctx, rng),
            CustomerMfa::Pending(state) => state.restart(policy, keys, ctx, rng),
        };
        match issued {
            Ok((pending, enrollment)) => {
                let event = ctx.event(EventKind::EnrollmentStarted {
                    expires_at: pending.expires_at,
                });
                let next = Self {
                    mfa: CustomerMfa::Pending(pending),
                    failures: self.failures,
                    generation: self.generation,
                };
                Decision::write(next, vec![event], Ok(enrollment))
            }
            Err(error) => Decision::refuse(error),
        }
    }

    /// Confirms a pending enrollment with a code from the app. The confirming step counts as used.
    /// A new factor: every other session of the customer ends, and the proof carries this one on.
    pub fn confirm_enrollment<R: CryptoRng + ?Sized>(
        &self,
        session: &MfaSession,
        typed: &str,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Decision<Pass> {
        // A session from before a reset or a change of factor is over, whatever the state now.
        if let Err(error) = self.current(session) {
            return Decision::refuse(error);
        }
        let pending = match &self.mfa {
            CustomerMfa::Pending(pending) => pending,
            CustomerMfa::Configured(_) => return Decision::refuse(Refusal::AlreadyConfigured),
            CustomerMfa::Unconfigured(_) => return Decision::refuse(Refusal::NotPending),
        };
        self.confirm_pending(
            pending,
            session,
            typed,
            policy,
            keys,
            ctx,
            rng,
            |configured| {
                let step = configured.last_step;
                (configured, EventKind::EnrollmentConfirmed { step })
            },
        )
    }

    /// Starts replacing a configured customer's authenticator (a new phone) without an
    /// administrator: a fresh secret to show as for an enrollment, pending beside the current
    /// one, which keeps working until the new one is confirmed
    /// ([`CustomerRecord::confirm_replacement`]) and after the new one expires unconfirmed. A second
    /// start replaces the pending secret.
    ///
    /// Only for a session whose second factor is fresh for [`Purpose::REPLACE_AUTHENTICATOR`]: the
    /// customer proves the current factor (a TOTP code, or a backup code when the old phone is
    /// gone) with a step-up first.
    pub fn start_replacement<R: CryptoRng + ?Sized>(
        &self,
        session: &MfaSession,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Decision<Enrollment> {
        if let Err(error) =
            self.fresh_for_change(session, Purpose::REPLACE_AUTHENTICATOR, policy, ctx)
        {
            return Decision::refuse(error);
        }
        let CustomerMfa::Configured(configured) = &self.mfa else {
            return Decision::refuse(Refusal::NotConfigured);
        };
        match issue(policy, keys, ctx, rng) {
            Ok((pending, enrollment)) => {
                let event = ctx.event(EventKind::ReplacementStarted {
                    expires_at: pending.expires_at,
                });
                let next = Self {
                    mfa: CustomerMfa::Configured(Configured {
                        replacement: Some(pending),
                        ..configured.clone()
                    }),
                    failures: self.failures,
                    generation: self.generation,
                };
                Decision::write(next, vec![event], Ok(enrollment))
            }
            Err(error) => Decision::refuse(error),
        }
    }

    /// Confirms the replacement authenticator with a code from it: the new secret takes the old
    /// one's place in one write (its confirming step counts as used), the backup codes stay, and
    /// every other session of the customer ends (a thief's session on the old phone included); the
    /// proof carries this one on. Refused, changing nothing, when no replacement is pending or it
    /// has expired (the old authenticator keeps working). Wrong codes count toward the lockout.
    pub fn confirm_replacement<R: CryptoRng + ?Sized>(
        &self,
        session: &MfaSession,
        typed: &str,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Decision<Pass> {
        if let Err(error) = self.current(session) {
            return Decision::refuse(error);
        }
        // Only a signed-in session (one that gave a code) takes the new authenticator in.
        if !session
            .passed()
            .is_some_and(|passed| passed.is_second_factor())
        {
            return Decision::refuse(Refusal::SecondFactorRequired {
                max_age_secs: policy.settings().step_up_max_age_secs,
            });
        }
        let CustomerMfa::Configured(configured) = &self.mfa else {
            return Decision::refuse(Refusal::NotConfigured);
        };
        let Some(pending) = &configured.replacement else {
            return Decision::refuse(Refusal::NotPending);
        };
        self.confirm_pending(
            pending,
            session,
            typed,
            policy,
            keys,
            ctx,
            rng,
            |replaced| {
                let step = replaced.last_step;
                let kept = Configured {
                    backup: configured.backup.clone(),
                    ..replaced
                };
                (kept, EventKind::AuthenticatorReplaced { step })
            },
        )
    }

    /// Confirms `pending` (an enrollment, or a replacement) with a code of its secret, as both
    /// confirmations do: refused while locked out or once expired (changing nothing), a wrong code
    /// counted toward the lockout; the confirmed state made by `confirmed` from the secret's own
    /// (with its event), a new generation, and this session passed by enrollment.
    #[allow(
        clippy::too_many_arguments,
        reason = "the two confirmations' shared steps, private; a struct would only rename them"
    )]
    fn confirm_pending<R: CryptoRng + ?Sized>(
        &self,
        pending: &Pending,
        session: &MfaSession,
        typed: &str,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
        rng: &mut R,
        confirmed: impl FnOnce(Configured) -> (Configured, EventKind),
    ) -> Decision<Pass> {
        if let Some(locked) = self.locked(Factor::Enrollment, ctx) {
            return locked;
        }
        if ctx.now >= pending.expires_at {
            let event = self.rejected(Factor::Enrollment, Rejection::Expired, ctx);
            return Decision::log(event, Refusal::EnrollmentExpired);
        }
        match pending.confirm(typed, policy.settings().window, keys, ctx) {
            Ok(configured) => {
                let (configured, kind) = confirmed(configured);
                let generation = self.next_generation(rng);
                let next = Self {
                    mfa: CustomerMfa::Configured(configured),
                    failures: Failures::default(),
                    generation,
                };
                let passed = ctx.passed(session, generation, PassedBy::Enrollment);
                Decision::write(next, vec![ctx.event(kind)], Ok(passed))
            }
            Err(refused) => self.refused(refused, Factor::Enrollment, policy, ctx),
        }
    }

    /// A new set of backup codes, replacing every earlier one. The plaintext codes are returned once;
    /// the record keeps only their argon2id hashes.
    ///
    /// A change of factor: only for a session whose second factor is fresh for
    /// [`Purpose::BACKUP_CODES`] (given at sign-in or at a step-up for it within the
    /// organisation's [`Settings::step_up_max_age_secs`]: a password alone, or a session that
    /// needed no MFA, must not mint a way around the second factor); every other session of the
    /// customer ends.
    pub fn generate_backup_codes<R: CryptoRng + ?Sized>(
        &self,
        session: &MfaSession,
        policy: &OrgPolicy,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Decision<BackupCodesIssued<Pass>> {
        if let Err(error) = self.may_change_factors(session, policy, ctx) {
            return Decision::refuse(error);
        }
        let settings = policy.settings();
        let owner = BackupOwner::new(ctx.org, ctx.customer);
        match BackupCodeSet::generate(
            &owner,
            settings.backup_code_count,
            settings.backup_hash,
            rng,
        ) {
            Ok((set, codes)) => {
                let (next, events, outcome) = self
                    .install_backup_codes(session, set, policy, ctx, rng)
                    .into_parts();
                Decision {
                    next,
                    events,
                    outcome: outcome.map(|passed| BackupCodesIssued { codes, passed }),
                }
            }
            Err(error) => Decision::refuse(Fault::Backup(error)),
        }
    }

    /// [`CustomerRecord::generate_backup_codes`] with a set made beforehand
    /// ([`BackupCodeSet::generate`] for this customer): the [`Service`](crate::Service) hashes a new
    /// set once, then installs it with as many compare-and-swaps as a race takes. The outcome is
    /// the calling session, moved on to the new factors; show the codes the set was made with.
    pub fn install_backup_codes<R: CryptoRng + ?Sized>(
        &self,
        session: &MfaSession,
        set: BackupCodeSet,
        policy: &OrgPolicy,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Decision<Pass> {
        let passed = match self.may_change_factors(session, policy, ctx) {
            Ok(passed) => passed,
            Err(error) => return Decision::refuse(error),
        };
        let CustomerMfa::Configured(configured) = &self.mfa else {
            return Decision::refuse(Refusal::NotConfigured);
        };
        let count = u32::try_from(set.len()).unwrap_or(u32::MAX);
        let generation = self.next_generation(rng);
        let next = Self {
            mfa: CustomerMfa::Configured(Configured {
                backup: Some(set),
                ..configured.clone()
            }),
            failures: self.failures,
            generation,
        };
        // The session keeps how and when its factor passed: making codes is not a new pass.
        let passed = Pass::new(
            ctx.org.clone(),
            ctx.customer.clone(),
            session.passed_at(generation, passed.by, passed.at),
        );
        Decision::write(
            next,
            vec![ctx.event(EventKind::BackupCodesGenerated { count })],
            Ok(passed),
        )
    }

    /// Whether `session` may change the customer's factors now: current, with a second factor
    /// fresh for [`Purpose::BACKUP_CODES`], of a configured customer. The factor, if so.
    pub(crate) fn may_change_factors(
        &self,
        session: &MfaSession,
        policy: &OrgPolicy,
        ctx: &Context<'_>,
    ) -> Result<FactorPassed, Refusal> {
        let passed = self.fresh_for_change(session, Purpose::BACKUP_CODES, policy, ctx)?;
        match self.mfa {
            CustomerMfa::Configured(_) => Ok(passed),
            _ => Err(Refusal::NotConfigured),
        }
    }

    /// Whether `session` is current and its second factor fresh for `purpose`: the factor, or the
    /// refusal (a session that never gave one, or one that must step up first).
    fn fresh_for_change(
        &self,
        session: &MfaSession,
        purpose: Purpose,
        policy: &OrgPolicy,
        ctx: &Context<'_>,
    ) -> Result<FactorPassed, Refusal> {
        self.current(session)?;
        let max_age_secs = policy.settings().step_up_max_age_secs;
        let passed = session
            .passed()
            .filter(FactorPassed::is_second_factor)
            .ok_or(Refusal::SecondFactorRequired { max_age_secs })?;
        if !session.fresh_for(purpose, max_age_secs, ctx.now) {
            return Err(Refusal::StepUpRequired {
                purpose,
                max_age_secs,
            });
        }
        Ok(passed)
    }

    /// Checks a sign-in TOTP code: accepted only for a step newer than the last accepted one.
    pub fn verify_totp(
        &self,
        session: &MfaSession,
        typed: &str,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
    ) -> Decision<TotpAccepted<Pass>> {
        self.check_totp(session, typed, None, policy, keys, ctx)
    }

    /// A step-up for `purpose` with a TOTP code: checked, consumed and counted toward lockout as
    /// at sign-in (a code used for one never serves again, for any purpose); the pass's session
    /// then counts as fresh for `purpose` ([`MfaSession::fresh_for`]). Also passes a session
    /// that had not given its code yet.
    pub fn step_up_totp(
        &self,
        session: &MfaSession,
        purpose: Purpose,
        typed: &str,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
    ) -> Decision<TotpAccepted<Pass>> {
        self.check_totp(session, typed, Some(purpose), policy, keys, ctx)
    }

    fn check_totp(
        &self,
        session: &MfaSession,
        typed: &str,
        purpose: Option<Purpose>,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
    ) -> Decision<TotpAccepted<Pass>> {
        if let Err(error) = self.current(session) {
            return Decision::refuse(error);
        }
        let CustomerMfa::Configured(configured) = &self.mfa else {
            return Decision::refuse(Refusal::NotConfigured);
        };
        if let Some(locked) = self.locked(Factor::Totp, ctx) {
            return locked;
        }
        let settings = policy.settings();
        match configured.verify_totp(typed, settings, keys, ctx) {
            Ok((configured, offset)) => {
                let step = configured.last_step;
                let next = Self {
                    mfa: CustomerMfa::Configured(configured),
                    failures: Failures::default(),
                    generation: self.generation,
                };
                let accepted = TotpAccepted {
                    passed: ctx.pass(session, self.generation, PassedBy::Totp, purpose),
                    backup_codes_remaining: next.status(ctx.now).backup_codes_remaining,
                };
                let events = ctx.accepted(
                    EventKind::TotpAccepted { step, offset },
                    Factor::Totp,
                    purpose,
                );
                Decision::write(next, events, Ok(accepted))
            }
            Err(refused) => self.refused(refused, Factor::Totp, policy, ctx),
        }
    }

    /// Checks a backup code: an unused one is accepted once, then marked used.
    ///
    /// The attempt keeps the hash it computed, so checking it again against this record read
    /// afresh (after a lost race) costs no second argon2id evaluation.
    pub fn verify_backup_code(
        &self,
        session: &MfaSession,
        attempt: &mut BackupAttempt<'_>,
        policy: &OrgPolicy,
        ctx: &Context<'_>,
    ) -> Decision<BackupAccepted<Pass>> {
        self.check_backup_code(session, attempt, None, policy, ctx)
    }

    /// A step-up for `purpose` with a backup code, which is used up as at sign-in: see
    /// [`CustomerRecord::step_up_totp`].
    pub fn step_up_backup_code(
        &self,
        session: &MfaSession,
        purpose: Purpose,
        attempt: &mut BackupAttempt<'_>,
        policy: &OrgPolicy,
        ctx: &Context<'_>,
    ) -> Decision<BackupAccepted<Pass>> {
        self.check_backup_code(session, attempt, Some(purpose), policy, ctx)
    }

    fn check_backup_code(
        &self,
        session: &MfaSession,
        attempt: &mut BackupAttempt<'_>,
        purpose: Option<Purpose>,
        policy: &OrgPolicy,
        ctx: &Context<'_>,
    ) -> Decision<BackupAccepted<Pass>> {
        if let Err(error) = self.current(session) {
            return Decision::refuse(error);
        }
        let CustomerMfa::Configured(configured) = &self.mfa else {
            return Decision::refuse(Refusal::NotConfigured);
        };
        if let Some(locked) = self.locked(Factor::BackupCode, ctx) {
            return locked;
        }
        match configured.redeem_backup_code(attempt, policy.settings().backup_hash, ctx) {
            Ok((configured, remaining)) => {
                let next = Self {
                    mfa: CustomerMfa::Configured(configured),
                    failures: Failures::default(),
                    generation: self.generation,
                };
                let events = ctx.accepted(
                    EventKind::BackupCodeAccepted { remaining },
                    Factor::BackupCode,
                    purpose,
                );
                let accepted = BackupAccepted {
                    passed: ctx.pass(session, self.generation, PassedBy::BackupCode, purpose),
                    remaining,
                };
                Decision::write(next, events, Ok(accepted))
            }
            Err(refused) => self.refused(refused, Factor::BackupCode, policy, ctx),
        }
    }

    /// An administrator's reset: back to unconfigured from any state, secret and backup codes erased,
    /// lockout cleared, and every session of the customer ended (the generation moves on). The
    /// customer signs in again with the password and enrolls again (while the organisation has MFA
    /// on). `by` names the administrator for the audit log.
    pub fn reset<R: CryptoRng + ?Sized>(
        &self,
        by: &Actor,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Decision<()> {
        let event = ctx.event(EventKind::Reset { by: by.clone() });
        let next = Self {
            generation: self.next_generation(rng),
            ..Self::default()
        };
        Decision::write(next, vec![event], Ok(()))
    }

    /// Key rotation's step for one customer: the secret (configured or pending) sealed again under
    /// the keyring's active key, with a [`SecretResealed`](crate::EventKind::SecretResealed) event;
    /// nothing to write when it already is, or when there is no secret.
    pub fn reseal_secret<R: CryptoRng + ?Sized>(
        &self,
        keys: &KeyRing,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Decision<Resealed> {
        let Some(from) = self.sealed_secret().map(SealedSecret::key_id) else {
            return Decision::unchanged(Resealed::NoSecret);
        };
        match self.reseal(keys, ctx, rng) {
            Ok(None) => Decision::unchanged(Resealed::AlreadyCurrent(from)),
            Ok(Some(next)) => {
                let to = keys.active_id();
                let event = ctx.event(EventKind::SecretResealed { from, to });
                Decision::write(next, vec![event], Ok(Resealed::Moved { from, to }))
            }
            Err(error) => Decision::refuse(Fault::Seal(error)),
        }
    }

    /// The record with its secret sealed again under the keyring's active key, or `None` when it
    /// already is (or holds no secret). For key rotation; it changes nothing else.
    ///
    /// # Errors
    /// [`SealError`] when the secret does not open with the keyring.
    pub fn reseal<R: CryptoRng + ?Sized>(
        &self,
        keys: &KeyRing,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Result<Option<Self>, SealError> {
        let Some(sealed) = self.sealed_secret() else {
            return Ok(None);
        };
        // A replacement under way is sealed again with the secret it replaces, so that a rotation
        // that finds the record (by the current secret's key) leaves neither on the old key.
        let replacement = match &self.mfa {
            CustomerMfa::Configured(c) => c.replacement.as_ref(),
            _ => None,
        };
        if !keys.needs_reseal(sealed)
            && !replacement.is_some_and(|pending| keys.needs_reseal(&pending.sealed))
        {
            return Ok(None);
        }
        let resealed = keys.reseal(sealed, ctx.org, ctx.customer, rng)?;
        let mfa = match &self.mfa {
            CustomerMfa::Pending(p) => CustomerMfa::Pending(Pending {
                sealed: resealed,
                ..p.clone()
            }),
            CustomerMfa::Configured(c) => CustomerMfa::Configured(Configured {
                sealed: resealed,
                replacement: match &c.replacement {
                    Some(pending) => Some(Pending {
                        sealed: keys.reseal(&pending.sealed, ctx.org, ctx.customer, rng)?,
                        ..pending.clone()
                    }),
                    None => None,
                },
                ..c.clone()
            }),
            CustomerMfa::Unconfigured(_) => return Ok(None),
        };
        Ok(Some(Self {
            mfa,
            failures: self.failures,
            generation: self.generation,
        }))
    }

    /// The byte form stores keep (format 3: format 2 and a replacement authenticator).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(RECORD_FORMAT, self)
    }

    /// Reads the byte form back: format 3; format 2 as earlier versions wrote it (no replacement
    /// under way); or format 1 (factor generation 0, which is what sessions signed in with before
    /// it existed).
    ///
    /// # Errors
    /// [`DecodeError`] for bytes this version did not write.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        match format_of(bytes)? {
            (RECORD_FORMAT, body) => decode(body),
            (2, body) => {
                let old: RecordV2 = decode(body)?;
                Ok(Self {
                    mfa: old.mfa.into(),
                    failures: old.failures,
                    generation: old.generation,
                })
            }
            (1, body) => {
                let old: RecordV1 = decode(body)?;
                Ok(Self {
                    mfa: old.mfa.try_into()?,
                    failures: old.failures,
                    generation: 0,
                })
            }
            (other, _) => Err(DecodeError::UnknownFormat(other)),
        }
    }

    /// The refusal while locked out: the attempt is recorded, never checked, and changes no record
    /// (so a flood of attempts cannot starve the customer's own writes).
    fn locked<T>(&self, factor: Factor, ctx: &Context<'_>) -> Option<Decision<T>> {
        let until = self.failures.locked_at(ctx.now)?;
        let event = self.rejected(factor, Rejection::Locked, ctx);
        Some(Decision::log(event, Refusal::Locked { retry_at: until }))
    }

    /// The decision for a step that did not go through: bad settings change nothing, text that is not a
    /// code is logged, a genuine failed attempt counts toward lockout.
    fn refused<T>(
        &self,
        refused: Refused,
        factor: Factor,
        policy: &OrgPolicy,
        ctx: &Context<'_>,
    ) -> Decision<T> {
        match refused {
            Refused::Fault(error) => Decision::refuse(error),
            Refused::Malformed(error) => {
                Decision::log(self.rejected(factor, Rejection::Malformed, ctx), error)
            }
            Refused::Repeat => Decision::log(
                self.rejected(factor, Rejection::ReplayedCode, ctx),
                Refusal::ReplayedCode,
            ),
            Refused::Attempt(reason) => self.failed(factor, reason, policy, ctx),
        }
    }

    /// The event of an attempt refused without counting as a failure.
    fn rejected(&self, factor: Factor, reason: Rejection, ctx: &Context<'_>) -> Event {
        ctx.event(EventKind::AttemptRejected {
            factor,
            reason,
            failures: self.failures.consecutive(),
        })
    }

    /// A failed attempt: one more failure, perhaps a lockout, and their events.
    fn failed<T>(
        &self,
        factor: Factor,
        reason: Rejection,
        policy: &OrgPolicy,
        ctx: &Context<'_>,
    ) -> Decision<T> {
        let failures = self
            .failures
            .after_failure(&policy.settings().lockout, ctx.now);
        let mut events = vec![ctx.event(EventKind::AttemptRejected {
            factor,
            reason,
            failures: failures.consecutive(),
        })];
        if let Some(until) = failures.locked_at(ctx.now) {
            events.push(ctx.event(EventKind::LockedOut { until }));
        }
        let error = match reason {
            Rejection::ReplayedCode => Refusal::ReplayedCode,
            Rejection::UsedBackupCode => Refusal::UsedBackupCode,
            _ => Refusal::WrongCode,
        };
        Decision::write(
            Self {
                mfa: self.mfa.clone(),
                failures,
                generation: self.generation,
            },
            events,
            Err(error.into()),
        )
    }
}

/// Why a state-level step did not go through.
enum Refused {
    /// A fault (a secret that does not open, a broken setting): nothing changes.
    Fault(Fault),
    /// Text that is not a code: logged, not counted as a failure.
    Malformed(Refusal),
    /// The code just accepted, again: logged as a replay, not counted as a failure.
    Repeat,
    /// A genuine failed attempt: it counts toward lockout.
    Attempt(Rejection),
}

fn count_remaining(set: &BackupCodeSet) -> u32 {
    u32::try_from(set.remaining()).unwrap_or(u32::MAX)
}

/// Issues a fresh secret: sealed for the record, and as a key URI for the customer.
fn issue<R: CryptoRng + ?Sized>(
    policy: &OrgPolicy,
    keys: &KeyRing,
    ctx: &Context<'_>,
    rng: &mut R,
) -> Result<(Pending, Enrollment), Fault> {
    let settings = policy.settings();
    let totp = settings.totp;
    let secret = Secret::generate(totp.algorithm(), rng);
    let sealed = keys.seal(&secret, ctx.org, ctx.customer, rng);
    let uri =
        KeyUri::totp(&settings.issuer, ctx.customer.as_str(), secret, &totp).map_err(Fault::Uri)?;
    let expires_at = ctx.now.saturating_add(settings.enrollment_lifetime_secs);
    Ok((
        Pending {
            sealed,
            totp,
            started_at: ctx.now,
            expires_at,
        },
        Enrollment { uri, expires_at },
    ))
}

impl Unconfigured {
    fn start<R: CryptoRng + ?Sized>(
        &self,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Result<(Pending, Enrollment), Fault> {
        issue(policy, keys, ctx, rng)
    }
}

impl Pending {
    /// A second start replaces the pending secret with a fresh one.
    fn restart<R: CryptoRng + ?Sized>(
        &self,
        policy: &OrgPolicy,
        keys: &KeyRing,
        ctx: &Context<'_>,
        rng: &mut R,
    ) -> Result<(Pending, Enrollment), Fault> {
        issue(policy, keys, ctx, rng)
    }

    fn confirm(
        &self,
        typed: &str,
        window: Window,
        keys: &KeyRing,
        ctx: &Context<'_>,
    ) -> Result<Configured, Refused> {
        let secret = keys
            .open(&self.sealed, ctx.org, ctx.customer)
            .map_err(|e| Refused::Fault(Fault::Seal(e)))?;
        let matched = self
            .totp
            .verify(&secret, typed, ctx.now, window)
            .map_err(refusal)?;
        Ok(Configured {
            sealed: self.sealed.clone(),
            totp: self.totp,
            configured_at: ctx.now,
            last_step: matched.step,
            drift: 0,
            backup: None,
            replacement: None,
        })
    }
}

impl Configured {
    fn verify_totp(
        &self,
        typed: &str,
        settings: &Settings,
        keys: &KeyRing,
        ctx: &Context<'_>,
    ) -> Result<(Configured, i64), Refused> {
        let (window, drift_learning) = (settings.window, settings.drift_learning);
        let secret = keys
            .open(&self.sealed, ctx.org, ctx.customer)
            .map_err(|e| Refused::Fault(Fault::Seal(e)))?;
        // With drift learning the window also reaches as far as this customer's clock has been seen to
        // drift (RFC 6238 section 6), in that direction only. It always keeps the current step, so a
        // clock that is put right again still works, and the learnt drift is bounded: a larger jump
        // needs an administrator's reset (the RFC's "additional authentication").
        let drift = if drift_learning { self.drift } else { 0 };
        let widen = |steps: u8, by: i64| {
            let by = u8::try_from(by.max(0)).unwrap_or(u8::MAX);
            steps.saturating_add(by).min(Window::MAX_SKEW)
        };
        let reach = Window::new(
            widen(window.behind(), drift.saturating_neg()),
            widen(window.ahead(), drift),
        )
        .unwrap_or(window);
        // RFC 6238 section 5.2: never accept a second code for a step at or before the last
        // accepted. Only the later steps are candidates, so a fresh code that happens to equal a
        // used step's is still accepted for its own step.
        let matched = match self
            .totp
            .verify_after(&secret, typed, ctx.now, reach, self.last_step)
        {
            Ok(matched) => matched,
            // Told apart for the audit log: a code of a used step is a replay. The code of the very
            // step just accepted is a second submission (a double click, a retried request): it is
            // refused and logged, but not counted toward lockout, since it proves the customer holds
            // the authenticator. Older steps' codes count.
            Err(VerifyError::NoMatch) => {
                return Err(match self.totp.verify(&secret, typed, ctx.now, reach) {
                    // Compared with the accepted step's own code, not the earliest match: the two
                    // differ when an older step shares the code (one pair in a million).
                    Ok(_) if self.is_last_code(&secret, typed) => Refused::Repeat,
                    Ok(_) => Refused::Attempt(Rejection::ReplayedCode),
                    Err(error) => refusal(error),
                });
            }
            Err(error) => return Err(refusal(error)),
        };
        let drift = if drift_learning {
            matched.offset.clamp(-MAX_LEARNT_DRIFT, MAX_LEARNT_DRIFT)
        } else {
            0
        };
        Ok((
            Configured {
                last_step: matched.step,
                drift,
                ..self.clone()
            },
            matched.offset,
        ))
    }

    /// Whether `typed` is the code of the last accepted step (compared in constant time).
    fn is_last_code(&self, secret: &Secret, typed: &str) -> bool {
        Code::parse(typed, self.totp.digits())
            .is_ok_and(|code| code == self.totp.generate_at_step(secret, self.last_step))
    }

    fn redeem_backup_code(
        &self,
        attempt: &mut BackupAttempt<'_>,
        params: BackupHashParams,
        ctx: &Context<'_>,
    ) -> Result<(Configured, u32), Refused> {
        let refusal = |error| match error {
            BackupError::NoMatch => Refused::Attempt(Rejection::WrongCode),
            BackupError::AlreadyUsed => Refused::Attempt(Rejection::UsedBackupCode),
            BackupError::Malformed => Refused::Malformed(Refusal::InvalidBackupCode),
            other => Refused::Fault(Fault::Backup(other)),
        };
        let Some(set) = &self.backup else {
            // The same answer, after the same work, as for a set without this code: whether the
            // customer has backup codes at all is not revealed.
            return Err(refusal(BackupCodeSet::check_attempt_without_set(
                attempt, params,
            )));
        };
        let owner = BackupOwner::new(ctx.org, ctx.customer);
        let slot = set.check_attempt(attempt, &owner).map_err(refusal)?;
        let mut set = set.clone();
        set.mark_used(slot, ctx.now);
        let remaining = count_remaining(&set);
        Ok((
            Configured {
                backup: Some(set),
                ..self.clone()
            },
            remaining,
        ))
    }
}

fn refusal(error: VerifyError) -> Refused {
    match error {
        VerifyError::NoMatch => Refused::Attempt(Rejection::WrongCode),
        VerifyError::InvalidCode(code) => Refused::Malformed(Refusal::InvalidCode(code)),
        VerifyError::Time(time) => Refused::Fault(Fault::Time(time)),
    }
}

/// What key rotation did to one customer's secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resealed {
    /// Sealed again: it was under `from`, it is now under `to`, the active key.
    Moved {
        /// The key it was sealed under.
        from: KeyId,
        /// The active key, which seals it now.
        to: KeyId,
    },
    /// Nothing to do: the active key already seals it.
    AlreadyCurrent(KeyId),
    /// Nothing to do: the customer has no secret (never enrolled, or reset).
    NoSecret,
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;
    use crate::{KeyId, OrgId, SealingKey};

    /// A configured record as format 2 wrote it reads in format 3 with no replacement under way,
    /// every other field as it was.
    #[test]
    fn a_format_2_configured_record_reads_with_no_replacement() {
        let keys = KeyRing::new(SealingKey::new(KeyId::new(1), [1; 32]));
        let (org, customer) = (
            OrgId::new("acme").unwrap(),
            CustomerId::new("alice").unwrap(),
        );
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let secret = Secret::generate(crate::Algorithm::Sha1, &mut rng);
        let sealed = keys.seal(&secret, &org, &customer, &mut rng);
        let old = RecordV2 {
            mfa: CustomerMfaV2::Configured(ConfiguredV2 {
                sealed: sealed.clone(),
                totp: Totp::default(),
                configured_at: UnixTime::from_secs(5),
                last_step: 7,
                drift: -1,
                backup: None,
            }),
            failures: Failures::default(),
            generation: 42,
        };
        let record = CustomerRecord::from_bytes(&encode(2, &old)).unwrap();
        assert_eq!(record.generation(), 42);
        let CustomerMfa::Configured(configured) = record.mfa() else {
            panic!("configured: {record:?}");
        };
        assert_eq!(configured.sealed, sealed);
        assert_eq!((configured.last_step, configured.drift), (7, -1));
        assert_eq!(configured.replacement, None);
        // Written again it is format 3, and reads the same.
        let again = record.to_bytes();
        assert_eq!(again.first(), Some(&RECORD_FORMAT));
        assert_eq!(CustomerRecord::from_bytes(&again), Ok(record));
    }
}
