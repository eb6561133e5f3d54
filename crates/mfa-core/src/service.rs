//! The service: load, decide, write back conditionally, retry on a lost race. Generic over the store,
//! so the same rules run on memory, SQLite and PostgreSQL.

use alloc::vec::Vec;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use async_lock::Semaphore;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, SeedableRng};

use crate::coalesce::Coalescer;
use crate::proof::Mint;
use crate::{
    Actor, AuditQuery, BackupAccepted, BackupAttempt, BackupCodesIssued, Context, CorruptRecord,
    CustomerId, CustomerRecord, CustomerStatus, Decision, Encoded, Enrollment, Event, EventKind,
    Fault, KeyRing, LoginStep, MfaError, MfaPassed, MfaSession, OrgId, OrgMfa, OrgPolicy, Purpose,
    Refusal, Resealed, SessionCheck, Settings, StepUpCheck, Store, StoredEvent, TotpAccepted,
    Version, Versioned, Written,
};

/// How many times an operation re-reads and re-decides after losing a compare-and-swap race.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;

/// The MFA flows over a store, a clock, a sealing keyring and a CSPRNG.
///
/// Each flow loads the records it needs, asks the pure state machine for a [`Decision`], and writes
/// the next record with its audit events only if the record is unchanged since it was loaded. When
/// another node or task got there first it starts over with fresh data, at most
/// [`DEFAULT_MAX_ATTEMPTS`] times. An outcome (such as [`MfaPassed`]) is returned only after its write
/// succeeded, so a lost race can never let a code count twice.
///
/// The RNG sits behind a mutex held only while a 256-bit seed is drawn from it for the one
/// operation that needs randomness (an enrollment, a set of backup codes, a resealing nonce),
/// which then draws from its own ChaCha20 generator: no call ever waits on another's hashing, and
/// sign-ins never take the lock. Use a CSPRNG seeded from the operating system (for example
/// `rand::rngs::StdRng::from_rng(&mut rand::rng())` or `rand::rngs::SysRng` wrapped in `UnwrapErr`).
///
/// Backup-code hashing (argon2id: about 15 ms and 19 MiB each with the default settings) is
/// bounded: a request evaluates the KDF once per code it checks or makes, however often a lost
/// race makes it retry, and at most [`Service::with_max_concurrent_kdf`] requests
/// (by default the number of CPUs) hash at once; the others wait their turn without holding a
/// thread. The hashing itself runs on the calling task: on an async runtime, call these from a
/// blocking-capable context (`mfa-http` uses `tokio::task::block_in_place`).
pub struct Service<S, C, R> {
    store: S,
    clock: C,
    keys: KeyRing,
    rng: Mutex<R>,
    max_attempts: u32,
    kdf_permits: Semaphore,
    max_concurrent_kdf: usize,
    kdf_evaluations: AtomicU64,
    coalescer: Coalescer,
}

/// The store, the clock, the key ids (never the keys: [`KeyRing`]'s own `Debug` shows ids only)
/// and the retry limit; not the RNG, whose state is secret.
impl<S: core::fmt::Debug, C: core::fmt::Debug, R> core::fmt::Debug for Service<S, C, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.store)
            .field("clock", &self.clock)
            .field("keys", &self.keys)
            .field("max_attempts", &self.max_attempts)
            .field("max_concurrent_kdf", &self.max_concurrent_kdf)
            .finish_non_exhaustive()
    }
}

/// Why a service call failed, in the four ways a host answers differently: a refusal (tell the
/// customer), a fault or a corrupt record (an operator must act; retrying will not help), an
/// outage (try again).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError<E: core::error::Error + 'static> {
    /// The rules refused the operation: tell the caller (see [`Refusal`]).
    #[error(transparent)]
    Refused(Refusal),
    /// A fault on the service's side (its keys, its settings, its clock): an operator must act.
    #[error(transparent)]
    Fault(Fault),
    /// A stored record cannot be read: not an outage, and nothing was changed or passed.
    #[error(transparent)]
    Corrupt(CorruptRecord),
    /// The store failed (an outage): try again shortly.
    #[error("the MFA store failed")]
    Store(#[source] E),
    /// Other writers kept winning the race for this record; nothing was changed by this call.
    #[error("the record kept changing under concurrent writes; try again")]
    Contended,
}

impl<E: core::error::Error + 'static> From<MfaError> for ServiceError<E> {
    fn from(error: MfaError) -> Self {
        match error {
            MfaError::Refused(refusal) => Self::Refused(refusal),
            MfaError::Fault(fault) => Self::Fault(fault),
        }
    }
}

impl<E: core::error::Error + 'static> From<Refusal> for ServiceError<E> {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

impl<E: core::error::Error + 'static> From<Fault> for ServiceError<E> {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

impl<E: core::error::Error + 'static> ServiceError<E> {
    /// The rule that refused the operation, if that is what happened.
    #[must_use]
    pub const fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// Whether the same call may succeed if tried again shortly (an outage, or a race lost too
    /// often); refusals, faults and corrupt records stay as they are.
    #[must_use]
    pub const fn is_transient(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Contended)
    }

    /// The same error with the store's error turned into another (for a store that wraps
    /// another, or a host that names its store's errors its own way).
    #[must_use]
    pub fn map_store<F: core::error::Error + 'static>(
        self,
        map: impl FnOnce(E) -> F,
    ) -> ServiceError<F> {
        match self {
            Self::Refused(refusal) => ServiceError::Refused(refusal),
            Self::Fault(fault) => ServiceError::Fault(fault),
            Self::Corrupt(corrupt) => ServiceError::Corrupt(corrupt),
            Self::Store(error) => ServiceError::Store(map(error)),
            Self::Contended => ServiceError::Contended,
        }
    }
}

type Result<T, E> = core::result::Result<T, ServiceError<E>>;

impl<S: Store, C: crate::Clock, R: CryptoRng + Send> Service<S, C, R> {
    /// A service over `store`, reading time from `clock`, sealing secrets with `keys`.
    pub fn new(store: S, clock: C, keys: KeyRing, rng: R) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            store,
            clock,
            keys,
            rng: Mutex::new(rng),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            kdf_permits: Semaphore::new(cpus),
            max_concurrent_kdf: cpus,
            kdf_evaluations: AtomicU64::new(0),
            coalescer: Coalescer::default(),
        }
    }

    /// The same service letting at most `requests` (at least one) hash backup codes at once: memory
    /// for argon2id is at most `requests` times the organisation's `m_cost`.
    #[must_use]
    pub fn with_max_concurrent_kdf(self, requests: usize) -> Self {
        let requests = requests.max(1);
        Self {
            kdf_permits: Semaphore::new(requests),
            max_concurrent_kdf: requests,
            ..self
        }
    }

    /// How many argon2id evaluations checking backup codes has cost since the service started (for
    /// monitoring: it grows by one per well-formed attempt, however contended).
    #[must_use]
    pub fn kdf_evaluations(&self) -> u64 {
        self.kdf_evaluations.load(Ordering::Relaxed)
    }

    /// The same service retrying a lost race at most `attempts` times (at least once).
    #[must_use]
    pub fn with_max_attempts(self, attempts: u32) -> Self {
        Self {
            max_attempts: attempts.max(1),
            ..self
        }
    }

    /// The store.
    pub const fn store(&self) -> &S {
        &self.store
    }

    /// The clock.
    pub const fn clock(&self) -> &C {
        &self.clock
    }

    /// The sealing keyring.
    pub const fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The organisation's policy (MFA off with default settings if it was never written).
    ///
    /// # Errors
    /// [`ServiceError::Store`] or [`ServiceError::Corrupt`].
    pub async fn org_policy(&self, org: &OrgId) -> Result<OrgPolicy, S::Error> {
        Ok(self.stored_policy(org).await?.unwrap_or_default())
    }

    /// The organisation's policy as stored, or `None` if it was never written (then
    /// [`Service::org_policy`] answers the default).
    ///
    /// # Errors
    /// [`ServiceError::Store`] or [`ServiceError::Corrupt`].
    pub async fn stored_policy(&self, org: &OrgId) -> Result<Option<OrgPolicy>, S::Error> {
        let loaded = self
            .store
            .load_org(org)
            .await
            .map_err(ServiceError::Store)?;
        Ok(decode_policy(org, loaded)?.map(|v| v.value))
    }

    /// Switches MFA on or off for the organisation's customers. Customers' own states never change:
    /// whoever configured MFA keeps being challenged. `by` is who did it, for the audit log.
    ///
    /// # Errors
    /// [`ServiceError::Store`], [`ServiceError::Contended`].
    pub async fn set_org_mfa(
        &self,
        org: &OrgId,
        mfa: OrgMfa,
        by: &Actor,
    ) -> Result<OrgPolicy, S::Error> {
        let by = by.clone();
        let kind = match mfa {
            OrgMfa::On => EventKind::OrgEnabled { by },
            OrgMfa::Off => EventKind::OrgDisabled { by },
        };
        self.update_org(org, kind, |policy| Ok(policy.with_mfa(mfa)))
            .await
    }

    /// Replaces the organisation's settings.
    ///
    /// # Errors
    /// [`Refusal::InvalidSettings`] for settings out of range; [`ServiceError::Store`],
    /// [`ServiceError::Contended`].
    pub async fn update_settings(
        &self,
        org: &OrgId,
        settings: Settings,
        by: &Actor,
    ) -> Result<OrgPolicy, S::Error> {
        settings.validate().map_err(Refusal::InvalidSettings)?;
        self.update_org(
            org,
            EventKind::OrgSettingsChanged { by: by.clone() },
            move |policy| {
                policy
                    .with_settings(settings.clone())
                    .map_err(Refusal::InvalidSettings)
            },
        )
        .await
    }

    async fn update_org(
        &self,
        org: &OrgId,
        kind: EventKind,
        change: impl Fn(OrgPolicy) -> core::result::Result<OrgPolicy, Refusal>,
    ) -> Result<OrgPolicy, S::Error> {
        for _ in 0..self.max_attempts {
            let loaded = self
                .store
                .load_org(org)
                .await
                .map_err(ServiceError::Store)?;
            let (current, version) = split(decode_policy(org, loaded)?);
            let next = change(current)?;
            let event = Event {
                at: self.clock.now(),
                org: org.clone(),
                customer: None,
                kind: kind.clone(),
            };
            match self
                .store
                .write_org(org, version, &next, &[event])
                .await
                .map_err(ServiceError::Store)?
            {
                Written::Stored(_) => return Ok(next),
                Written::Conflict => {}
            }
        }
        Err(ServiceError::Contended)
    }

    /// What a password sign-in must do next: enroll, give a code, or nothing (with the proof); call
    /// it once the password checked out, and keep [`LoginStep::session`] in the host's session.
    ///
    /// # Errors
    /// [`ServiceError::Store`] or [`ServiceError::Corrupt`].
    pub async fn login_step(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<LoginStep, S::Error> {
        let (policy, loaded) = self.load_both(org, customer).await?;
        let (record, _) = split(loaded);
        let ctx = Context {
            org,
            customer,
            now: self.clock.now(),
        };
        // Nothing to write: when no MFA is needed, the read is what the proof rests on.
        Ok(record.login_step(&policy, &ctx).mint())
    }

    /// What a protected request may do with `session` now (one read): let it in, send it to enroll
    /// or to give a code, or end it. Hosts call it on every request to what MFA protects, so that a
    /// reset, a change of factor or the organisation switching MFA on takes effect at once, on
    /// every node.
    ///
    /// # Errors
    /// [`ServiceError::Store`] or [`ServiceError::Corrupt`].
    pub async fn check_session(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
    ) -> Result<SessionCheck, S::Error> {
        let (policy, loaded) = self.load_both(org, customer).await?;
        let (record, _) = split(loaded);
        Ok(record.check_session(&policy, session))
    }

    /// Issues a fresh secret to enroll (replacing a pending one): show [`Enrollment::uri`] as a QR
    /// code and as grouped text, once. `session` is the caller's: its password must have been
    /// checked since the customer's last reset.
    ///
    /// # Errors
    /// [`Refusal::MfaDisabled`], [`Refusal::AlreadyConfigured`], [`Refusal::SessionEnded`];
    /// store errors.
    pub async fn start_enrollment(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
    ) -> Result<Enrollment, S::Error> {
        self.run_with_rng(org, customer, |record, policy, ctx, rng| {
            record.start_enrollment(session, policy, &self.keys, ctx, rng)
        })
        .await
    }

    /// Confirms the pending enrollment with a code from the app. A new factor: every other session
    /// of the customer ends; keep the proof's [`MfaPassed::session`] in this one.
    ///
    /// # Errors
    /// [`Refusal::NotPending`], [`Refusal::EnrollmentExpired`], [`Refusal::WrongCode`],
    /// [`Refusal::InvalidCode`], [`Refusal::Locked`], [`Refusal::SessionEnded`]; store errors.
    pub async fn confirm_enrollment(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
        code: &str,
    ) -> Result<MfaPassed, S::Error> {
        self.run_with_rng(org, customer, |record, policy, ctx, rng| {
            record.confirm_enrollment(session, code, policy, &self.keys, ctx, rng)
        })
        .await
    }

    /// Starts replacing the customer's authenticator (a new phone), without an administrator: a
    /// fresh secret to show as at enrollment ([`Enrollment::uri`]), pending beside the current one,
    /// which keeps working until the new one is confirmed ([`Service::confirm_replacement`]). Only
    /// for a session whose second factor is fresh for [`Purpose::REPLACE_AUTHENTICATOR`] (step up
    /// with the current authenticator's code, or a backup code when the old phone is gone).
    ///
    /// # Errors
    /// [`Refusal::StepUpRequired`], [`Refusal::SecondFactorRequired`], [`Refusal::NotConfigured`],
    /// [`Refusal::SessionEnded`]; store errors.
    pub async fn start_replacement(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
    ) -> Result<Enrollment, S::Error> {
        self.run_with_rng(org, customer, |record, policy, ctx, rng| {
            record.start_replacement(session, policy, &self.keys, ctx, rng)
        })
        .await
    }

    /// Confirms the replacement with a code from the new authenticator: it takes the old one's
    /// place in one write, the backup codes stay, and every other session of the customer ends;
    /// keep the answer's [`MfaPassed::session`] in this one. Logged as `authenticator_replaced`.
    ///
    /// # Errors
    /// [`Refusal::NotPending`] (nothing to confirm), [`Refusal::EnrollmentExpired`] (start again;
    /// the old authenticator still works), [`Refusal::WrongCode`], [`Refusal::InvalidCode`],
    /// [`Refusal::Locked`], [`Refusal::SecondFactorRequired`] (a session that gave no code),
    /// [`Refusal::NotConfigured`], [`Refusal::SessionEnded`]; store errors.
    pub async fn confirm_replacement(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
        code: &str,
    ) -> Result<MfaPassed, S::Error> {
        self.run_with_rng(org, customer, |record, policy, ctx, rng| {
            record.confirm_replacement(session, code, policy, &self.keys, ctx, rng)
        })
        .await
    }

    /// A new set of backup codes (the old set stops working); the plaintext is returned only here.
    /// Only for a session whose second factor is fresh for [`Purpose::BACKUP_CODES`]
    /// (see [`Service::check_step_up`]). A change of factor: every other session of the customer
    /// ends; keep the answer's [`MfaPassed::session`] in this one. Costs one argon2id evaluation
    /// per code, within the bound on concurrent hashing.
    ///
    /// # Errors
    /// [`Refusal::NotConfigured`], [`Refusal::SecondFactorRequired`] (no second factor in this
    /// session), [`Refusal::StepUpRequired`] (one, but stale: step up for
    /// [`Purpose::BACKUP_CODES`]), [`Refusal::SessionEnded`]; store errors.
    pub async fn generate_backup_codes(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
    ) -> Result<BackupCodesIssued, S::Error> {
        // Refused before any hashing when the session may not: a stale session cannot make the
        // service hash, nor queue behind those that may.
        let (policy, loaded) = self.load_both(org, customer).await?;
        let (record, _) = split(loaded);
        let ctx = Context {
            org,
            customer,
            now: self.clock.now(),
        };
        record.may_change_factors(session, &policy, &ctx)?;
        // Hashed once, under the bound on concurrent hashing; a lost race installs the same set
        // again rather than hashing a new one.
        let settings = policy.settings();
        let (set, codes) = {
            let _permit = self.kdf_permits.acquire().await;
            let owner = crate::BackupOwner::new(org, customer);
            let generated = crate::BackupCodeSet::generate(
                &owner,
                settings.backup_code_count,
                settings.backup_hash,
                &mut self.seeded_rng(),
            )
            .map_err(Fault::Backup)?;
            self.kdf_evaluations
                .fetch_add(u64::from(settings.backup_code_count), Ordering::Relaxed);
            generated
        };
        let passed = self
            .run_with_rng(org, customer, |record, policy, ctx, rng| {
                record.install_backup_codes(session, set.clone(), policy, ctx, rng)
            })
            .await?;
        Ok(BackupCodesIssued { codes, passed })
    }

    /// Checks a sign-in TOTP code; on success the proof, and how many backup codes are left.
    ///
    /// # Errors
    /// [`Refusal::WrongCode`], [`Refusal::ReplayedCode`], [`Refusal::InvalidCode`],
    /// [`Refusal::Locked`], [`Refusal::NotConfigured`]; store errors.
    pub async fn verify_totp(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
        code: &str,
    ) -> Result<TotpAccepted, S::Error> {
        self.run(org, customer, |record, policy, ctx| {
            record.verify_totp(session, code, policy, &self.keys, ctx)
        })
        .await
    }

    /// Whether a sensitive action for `purpose` (changing the card on file, say) may go ahead in
    /// `session` now (one read): [`StepUpCheck::Fresh`] when the code given at sign-in, or at a
    /// step-up for `purpose`, is within the organisation's
    /// [`Settings::step_up_max_age_secs`](crate::Settings::step_up_max_age_secs);
    /// [`StepUpCheck::Required`] when the customer should give a fresh one
    /// ([`Service::step_up_totp`], [`Service::step_up_backup_code`]) without signing out.
    ///
    /// # Errors
    /// [`ServiceError::Store`] or [`ServiceError::Corrupt`].
    pub async fn check_step_up(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
        purpose: Purpose,
    ) -> Result<StepUpCheck, S::Error> {
        let (policy, loaded) = self.load_both(org, customer).await?;
        let (record, _) = split(loaded);
        Ok(record.check_step_up(&policy, session, purpose, self.clock.now()))
    }

    /// A step-up for `purpose` with a TOTP code: checked and consumed like a sign-in code (lockout
    /// and replay rules included: a code used once serves no other purpose), logged as
    /// `totp_accepted` and `step_up_passed`. Keep the answer's session: it now counts as fresh for
    /// `purpose` ([`Service::check_step_up`]).
    ///
    /// # Errors
    /// As [`Service::verify_totp`].
    pub async fn step_up_totp(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
        purpose: Purpose,
        code: &str,
    ) -> Result<TotpAccepted, S::Error> {
        self.run(org, customer, |record, policy, ctx| {
            record.step_up_totp(session, purpose, code, policy, &self.keys, ctx)
        })
        .await
    }

    /// A step-up for `purpose` with a backup code, which is used up: see
    /// [`Service::step_up_totp`] and [`Service::verify_backup_code`].
    ///
    /// # Errors
    /// As [`Service::verify_backup_code`].
    pub async fn step_up_backup_code(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
        purpose: Purpose,
        code: &str,
    ) -> Result<BackupAccepted, S::Error> {
        self.backup_code(org, customer, session, Some(purpose), code)
            .await
    }

    /// Checks a backup code. This costs one argon2id evaluation (about 15 ms with the default
    /// parameters) on the calling task, for a wrong code as for a right one, once per call however
    /// often a lost race makes it re-read the record, and within the bound on concurrent hashing.
    ///
    /// # Errors
    /// [`Refusal::WrongCode`], [`Refusal::UsedBackupCode`], [`Refusal::InvalidBackupCode`],
    /// [`Refusal::Locked`], [`Refusal::NotConfigured`], [`Refusal::SessionEnded`]; store errors.
    pub async fn verify_backup_code(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
        code: &str,
    ) -> Result<BackupAccepted, S::Error> {
        self.backup_code(org, customer, session, None, code).await
    }

    /// A backup code at sign-in, or at a step-up for `purpose`.
    async fn backup_code(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
        purpose: Option<Purpose>,
        code: &str,
    ) -> Result<BackupAccepted, S::Error> {
        let _permit = self.kdf_permits.acquire().await;
        let mut attempt = BackupAttempt::new(code);
        let result = self
            .run(org, customer, |record, policy, ctx| match purpose {
                None => record.verify_backup_code(session, &mut attempt, policy, ctx),
                Some(purpose) => {
                    record.step_up_backup_code(session, purpose, &mut attempt, policy, ctx)
                }
            })
            .await;
        self.kdf_evaluations
            .fetch_add(u64::from(attempt.kdf_evaluations()), Ordering::Relaxed);
        result
    }

    /// An administrator's reset of one customer; `by` names the administrator. Every session of
    /// the customer ends.
    ///
    /// # Errors
    /// [`Refusal::NotFound`] when nothing is stored for the customer (an id that never signed in
    /// to MFA, or one spelt differently): nothing is written; store errors.
    pub async fn reset(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        by: &Actor,
    ) -> Result<(), S::Error> {
        self.run_stored(org, customer, |record, _, ctx| {
            record.reset(by, ctx, &mut self.seeded_rng())
        })
        .await
    }

    /// Up to `wanted` secrets sealed under `key` that can be read: see
    /// [`store::sealed_sample`](crate::store::sealed_sample).
    ///
    /// # Errors
    /// Store errors.
    pub async fn sealed_sample(
        &self,
        key: crate::KeyId,
        wanted: usize,
    ) -> Result<crate::store::SealedSample, S::Error> {
        crate::store::sealed_sample(&self.store, key, wanted)
            .await
            .map_err(ServiceError::Store)
    }

    /// Key rotation's step for one customer: seals the secret again under the keyring's active key
    /// if another key seals it, with a compare-and-swap like every other write (safe while sign-ins
    /// go on) and a [`SecretResealed`](crate::EventKind::SecretResealed) event.
    ///
    /// # Errors
    /// [`Fault::Seal`] naming the key id the secret needs when the keyring does not hold it or
    /// that key does not open it; store errors.
    pub async fn reseal(&self, org: &OrgId, customer: &CustomerId) -> Result<Resealed, S::Error> {
        self.run_with_rng(org, customer, |record, _, ctx, rng| {
            record.reseal_secret(&self.keys, ctx, rng)
        })
        .await
    }

    /// The customer's MFA at a glance, with the organisation's switch (one read).
    ///
    /// # Errors
    /// Store errors, [`ServiceError::Corrupt`].
    pub async fn status(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<StatusReport, S::Error> {
        let (policy, loaded) = self.load_both(org, customer).await?;
        let stored = loaded.is_some();
        let (record, _) = split(loaded);
        Ok(StatusReport {
            customer: record.status(self.clock.now()),
            org_mfa: policy.mfa(),
            stored,
        })
    }

    /// The organisation's audit events, newest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<StoredEvent>, S::Error> {
        self.store
            .audit(org, query)
            .await
            .map_err(ServiceError::Store)
    }

    /// The organisation's policy (the default if never written) and the customer's stored record,
    /// both at once: on a networked store that is one round trip instead of two.
    async fn load_both(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<(OrgPolicy, Option<Versioned<CustomerRecord>>), S::Error> {
        let (policy, loaded) = self
            .store
            .load_org_and_customer(org, customer)
            .await
            .map_err(ServiceError::Store)?;
        let policy = split(decode_policy(org, policy)?).0;
        let record = loaded
            .map(Versioned::<Encoded<CustomerRecord>>::decode)
            .transpose()
            .map_err(|error| {
                ServiceError::Corrupt(CorruptRecord {
                    org: org.clone(),
                    customer: Some(customer.clone()),
                    error,
                })
            })?;
        Ok((policy, record))
    }

    /// Load, decide, write if unchanged; again on a lost race. For decisions that draw randomness.
    ///
    /// The RNG's lock is held for the 32 bytes of a seed only (never across an `await`); only
    /// enrollment, its confirmation, backup-code generation, resets and resealing take it, so
    /// sign-ins never wait for it.
    async fn run_with_rng<T: Mint>(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        decide: impl Fn(&CustomerRecord, &OrgPolicy, &Context<'_>, &mut ChaCha20Rng) -> Decision<T>,
    ) -> Result<T::Minted, S::Error> {
        self.run(org, customer, |record, policy, ctx| {
            decide(record, policy, ctx, &mut self.seeded_rng())
        })
        .await
    }

    /// A generator of its own for one operation, seeded from the service's RNG: the lock is held
    /// for the 32 bytes of the seed only, never while the operation uses what it draws.
    fn seeded_rng(&self) -> ChaCha20Rng {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        {
            // Poisoning only means another call panicked mid-draw; an RNG has no invariant to break.
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            rng.fill_bytes(seed.as_mut_slice());
        }
        ChaCha20Rng::from_seed(*seed)
    }

    /// Load, decide, write if unchanged; again on a lost race. The outcome is minted (a [`Pass`]
    /// becomes an [`MfaPassed`]) only once its write was stored.
    ///
    /// [`Pass`]: crate::Pass
    async fn run<T: Mint>(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        decide: impl FnMut(&CustomerRecord, &OrgPolicy, &Context<'_>) -> Decision<T>,
    ) -> Result<T::Minted, S::Error> {
        self.run_inner(org, customer, Missing::Unconfigured, decide)
            .await
    }

    /// [`Service::run`] for an operation on a stored record only: [`Refusal::NotFound`] when
    /// there is none.
    async fn run_stored<T: Mint>(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        decide: impl FnMut(&CustomerRecord, &OrgPolicy, &Context<'_>) -> Decision<T>,
    ) -> Result<T::Minted, S::Error> {
        self.run_inner(org, customer, Missing::NotFound, decide)
            .await
    }

    async fn run_inner<T: Mint>(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        missing: Missing,
        mut decide: impl FnMut(&CustomerRecord, &OrgPolicy, &Context<'_>) -> Decision<T>,
    ) -> Result<T::Minted, S::Error> {
        for _ in 0..self.max_attempts {
            let (policy, loaded) = self.load_both(org, customer).await?;
            if matches!(missing, Missing::NotFound) && loaded.is_none() {
                return Err(Refusal::NotFound.into());
            }
            let (record, version) = split(loaded);
            let ctx = Context {
                org,
                customer,
                now: self.clock.now(),
            };
            let (next, events, outcome) = decide(&record, &policy, &ctx).into_parts();
            let Some(next) = next else {
                // A refusal that changes no record still leaves its audit event: the first of its
                // kind in a minute, and the count of the repeats after it (see `coalesce`).
                let events = self.coalescer.admit(events, ctx.now);
                if !events.is_empty() {
                    self.store
                        .append_events(&events)
                        .await
                        .map_err(ServiceError::Store)?;
                }
                // Only an outcome without a proof can be a success without a write
                // (`Decision::unchanged`), so this mints no pass that was not written.
                return outcome.map(Mint::mint).map_err(ServiceError::from);
            };
            match self
                .store
                .write_customer(org, customer, version, &next, &events)
                .await
                .map_err(ServiceError::Store)?
            {
                Written::Stored(_) => return outcome.map(Mint::mint).map_err(ServiceError::from),
                Written::Conflict => {}
            }
        }
        Err(ServiceError::Contended)
    }
}

/// What an operation makes of a customer with no stored record.
#[derive(Clone, Copy)]
enum Missing {
    /// A customer who never set MFA up: the default record.
    Unconfigured,
    /// Nothing to act on: [`Refusal::NotFound`].
    NotFound,
}

/// A customer's MFA at a glance, with the organisation's switch ([`Service::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusReport {
    /// The customer's state (that of a customer who never set MFA up, when nothing is stored).
    pub customer: CustomerStatus,
    /// Whether the organisation has MFA on.
    pub org_mfa: OrgMfa,
    /// Whether anything is stored for the customer (a customer who never signed in while MFA
    /// was on, or an id spelt differently, has nothing).
    pub stored: bool,
}

/// The policy in `loaded`, or corruption naming the organisation.
fn decode_policy<E: core::error::Error + 'static>(
    org: &OrgId,
    loaded: Option<Versioned<Encoded<OrgPolicy>>>,
) -> Result<Option<Versioned<OrgPolicy>>, E> {
    loaded
        .map(Versioned::<Encoded<OrgPolicy>>::decode)
        .transpose()
        .map_err(|error| {
            ServiceError::Corrupt(CorruptRecord {
                org: org.clone(),
                customer: None,
                error,
            })
        })
}

fn split<T: Default>(loaded: Option<Versioned<T>>) -> (T, Option<Version>) {
    loaded.map_or_else(|| (T::default(), None), |v| (v.value, Some(v.version)))
}
