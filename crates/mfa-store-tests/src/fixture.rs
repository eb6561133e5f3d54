//! The test kit: one organisation (`acme`), a service on a manual clock with a fixed keyring, a
//! seeded RNG and fast backup-code hashing, customers whose authenticator app (a soft
//! authenticator: the code of any time step) and backup codes the test holds, and a reading of the
//! audit log the checks can compare. The process and outage suites are written with it; so can a
//! store's own tests.

use std::collections::{BTreeMap, BTreeSet};

use mfa_core::{
    Actor, Clock, CustomerId, KeyId, KeyRing, ManualClock, MfaSession, OrgId, OrgMfa, SealingKey,
    Service, Settings, Store, UnixTime,
    audit::{AuditQuery, EventKind, StoredEvent},
    backup::BackupHashParams,
    otp::{Secret, Totp},
    uri::KeyUri,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::T0;

/// Backup codes per customer: the most a set may hold, so a long stream has enough to use.
pub const BACKUP_CODES: u8 = 16;

/// The organisation every test here uses.
#[must_use]
pub fn acme() -> OrgId {
    OrgId::new("acme").expect("a valid id")
}

/// The kit's sealing key: key 1, fixed bytes.
#[must_use]
pub fn key() -> SealingKey {
    SealingKey::new(KeyId::new(1), [9; 32])
}

/// The one keyring every service and process of a test shares (a child must unseal what the
/// parent sealed): [`key`] alone.
#[must_use]
pub fn keys() -> KeyRing {
    KeyRing::new(key())
}

/// A manual clock at [`crate::T0`].
#[must_use]
pub fn clock() -> ManualClock {
    ManualClock::new(UnixTime::from_secs(crate::T0))
}

/// The kit's seeded RNG: the same `seed`, the same secrets and codes.
#[must_use]
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A service over `store` with a manual clock at `now`, the kit's [`keys`] and an RNG seeded with
/// `seed`.
pub fn service<S: Store>(
    store: S,
    now: u64,
    seed: u64,
) -> (Service<S, ManualClock, ChaCha20Rng>, ManualClock) {
    let clock = ManualClock::new(UnixTime::from_secs(now));
    let mfa = Service::new(store, clock.clone(), keys(), rng(seed));
    (mfa, clock)
}

/// The default settings with fast backup-code hashing (never in production: see
/// [`BackupHashParams::danger_insecure_fast`]).
#[must_use]
pub fn fast_settings() -> Settings {
    let mut settings = Settings::default();
    settings.backup_hash = BackupHashParams::danger_insecure_fast();
    settings
}

/// Switches `acme` on with fast backup-code hashing, [`BACKUP_CODES`] codes each, and the most
/// failures the rules allow before a lockout, so re-trying used codes is refused for being used,
/// not for a lockout.
pub async fn switch_on<S: Store>(mfa: &Service<S, ManualClock, ChaCha20Rng>) {
    let mut settings = fast_settings();
    settings.backup_code_count = BACKUP_CODES;
    settings.lockout.free_failures = mfa_core::machine::MAX_FREE_FAILURES;
    mfa.update_settings(&acme(), settings, &Actor::new("admin").unwrap())
        .await
        .expect("settings");
    mfa.set_org_mfa(&acme(), OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .expect("enable");
}

/// The refusal a service call answered with.
///
/// # Panics
/// If it succeeded or failed otherwise (a store error, a fault, corruption).
pub fn refusal<T: core::fmt::Debug, E: core::error::Error>(
    result: Result<T, mfa_core::ServiceError<E>>,
) -> mfa_core::Refusal {
    match result {
        Err(mfa_core::ServiceError::Refused(error)) => error,
        other => panic!("expected a refusal by the rules, got {other:?}"),
    }
}

/// A service over `store` (RNG seeded with `seed`) with `acme` switched on ([`switch_on`]), and
/// `alice@acme.test` enrolled there ([`Enrolled::new`]) and signed in again with a code a step
/// later: the service, its clock, alice, and that session.
pub async fn alice_signed_in<S: Store>(
    store: S,
    seed: u64,
) -> (
    Service<S, ManualClock, ChaCha20Rng>,
    ManualClock,
    Enrolled,
    MfaSession,
) {
    let (mfa, clock) = service(store, crate::T0, seed);
    switch_on(&mfa).await;
    let alice = Enrolled::new(&mfa, &clock, "alice@acme.test").await;
    clock.advance(30);
    let session = alice.signed_in(&mfa, &clock).await;
    (mfa, clock, alice, session)
}

/// A soft authenticator app: what the customer's phone shows for a key URI, at any time step.
#[derive(Clone)]
pub struct SoftApp {
    totp: Totp,
    secret: Secret,
}

impl core::fmt::Debug for SoftApp {
    // The parameters only: the secret stays out of test output too.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftApp")
            .field("totp", &self.totp)
            .finish_non_exhaustive()
    }
}

impl SoftApp {
    /// The app that scanned `uri`.
    ///
    /// # Panics
    /// If `uri` is not a TOTP URI.
    #[must_use]
    pub fn scan(uri: &KeyUri) -> Self {
        Self {
            totp: uri.as_totp().expect("a TOTP URI"),
            secret: uri.secret().clone(),
        }
    }

    /// The app's code for time step `step`.
    #[must_use]
    pub fn code(&self, step: u64) -> String {
        self.totp.generate_at_step(&self.secret, step).to_string()
    }

    /// The app's code `steps` time steps away from the clock's (negative: earlier).
    ///
    /// # Panics
    /// If the clock is before the app's T0.
    #[must_use]
    pub fn code_now(&self, clock: &impl Clock, steps: i64) -> String {
        let now = self
            .totp
            .step_at(clock.now())
            .expect("the clock is after T0");
        self.code(now.saturating_add_signed(steps))
    }

    /// A code the app shows at none of the steps around `step` (within any window the tests use).
    #[must_use]
    pub fn wrong_code(&self, step: u64) -> String {
        let near: Vec<String> = (step.saturating_sub(2)..=step + 2)
            .map(|s| self.code(s))
            .collect();
        (0u32..)
            .map(|n| format!("{n:06}"))
            .find(|candidate| !near.contains(candidate))
            .expect("a million candidates, five taken")
    }
}

/// A customer whose authenticator app and backup codes the test holds.
pub struct Enrolled {
    /// The customer.
    pub id: CustomerId,
    /// The app's parameters.
    pub totp: Totp,
    /// The app's secret.
    pub secret: Secret,
    /// The whole set, in the order the tests use them.
    pub backup: Vec<String>,
    /// The session that enrolled and made the codes: the one session of the customer's factors.
    pub session: MfaSession,
}

impl core::fmt::Debug for Enrolled {
    // The customer only: the rest is a secret and its codes, even in a test.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Enrolled")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Enrolled {
    /// Enrolls `name` at the clock's time (the confirming step counts as used) and gives it a set of
    /// backup codes.
    pub async fn new<S: Store>(
        mfa: &Service<S, ManualClock, ChaCha20Rng>,
        clock: &ManualClock,
        name: &str,
    ) -> Self {
        let id = CustomerId::new(name).expect("a valid id");
        let session = mfa
            .login_step(&acme(), &id)
            .await
            .expect("sign in")
            .session();
        let enrollment = mfa
            .start_enrollment(&acme(), &id, &session)
            .await
            .expect("start");
        let totp = enrollment.uri.as_totp().expect("a TOTP URI");
        let secret = enrollment.uri.secret().clone();
        let code = totp
            .generate(&secret, clock.now())
            .expect("after the epoch");
        let session = mfa
            .confirm_enrollment(&acme(), &id, &session, &code.to_string())
            .await
            .expect("confirm")
            .session();
        let issued = mfa
            .generate_backup_codes(&acme(), &id, &session)
            .await
            .expect("backup codes");
        let backup = issued
            .codes
            .iter()
            .map(|code| code.as_str().to_owned())
            .collect();
        Self {
            id,
            totp,
            secret,
            backup,
            session: issued.passed.session(),
        }
    }

    /// A new session of the customer's, signed in with the password and then the app's code of
    /// the clock's step (which must not have been used yet).
    ///
    /// # Panics
    /// If the service refuses either step.
    pub async fn signed_in<S: Store>(
        &self,
        mfa: &Service<S, ManualClock, ChaCha20Rng>,
        clock: &ManualClock,
    ) -> MfaSession {
        let session = mfa
            .login_step(&acme(), &self.id)
            .await
            .expect("sign in")
            .session();
        mfa.verify_totp(&acme(), &self.id, &session, &self.code_now(clock, 0))
            .await
            .expect("the app's code")
            .passed
            .session()
    }

    /// The customer's authenticator app.
    #[must_use]
    pub fn app(&self) -> SoftApp {
        SoftApp {
            totp: self.totp,
            secret: self.secret.clone(),
        }
    }

    /// The app's code for time step `step`.
    #[must_use]
    pub fn code(&self, step: u64) -> String {
        self.app().code(step)
    }

    /// The app's code `steps` time steps away from the clock's (negative: earlier).
    #[must_use]
    pub fn code_now(&self, clock: &ManualClock, steps: i64) -> String {
        self.app().code_now(clock, steps)
    }

    /// A code the app shows at none of the steps around `step` (within any window the tests use).
    #[must_use]
    pub fn wrong_code(&self, step: u64) -> String {
        self.app().wrong_code(step)
    }
}

/// The start of time step `step` plus `secs` (the clock a test sets to use that step's code).
#[must_use]
pub fn at_step(step: u64, secs: u64) -> UnixTime {
    UnixTime::from_secs(step * 30 + secs)
}

/// The time step the tests start after.
#[must_use]
pub const fn first_step() -> u64 {
    T0 / 30
}

/// Every event of `acme`, oldest first.
pub async fn audit<S: Store>(store: &S) -> Vec<StoredEvent> {
    let query = AuditQuery {
        customer: None,
        before_seq: None,
        limit: usize::MAX,
    };
    let mut events = store.audit(&acme(), &query).await.expect("audit");
    events.reverse();
    events
}

/// An acceptance in the audit log, as the checks compare them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accepted {
    /// A TOTP code of this step (a sign-in or the enrollment's confirmation).
    Totp(u64),
    /// A backup code, leaving this many unused.
    Backup(u32),
}

/// The acceptance an event records, with its customer, if it records one.
#[must_use]
pub fn acceptance(stored: &StoredEvent) -> Option<(String, Accepted)> {
    let customer = stored.event.customer.as_ref()?.as_str().to_owned();
    match stored.event.kind {
        EventKind::TotpAccepted { step, .. } | EventKind::EnrollmentConfirmed { step } => {
            Some((customer, Accepted::Totp(step)))
        }
        EventKind::BackupCodeAccepted { remaining } => {
            Some((customer, Accepted::Backup(remaining)))
        }
        _ => None,
    }
}

/// The invariants of a whole audit log: no customer has two acceptances of one time step, nor two
/// backup-code acceptances leaving the same count (which is what accepting one code twice, or a use
/// whose record was lost, looks like: the set never shrinks by two in one use). The tests here
/// never generate a second set, which would start the count again.
pub fn assert_no_acceptance_twice(events: &[StoredEvent]) {
    let mut steps: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut remaining: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for (customer, accepted) in events.iter().filter_map(acceptance) {
        let fresh = match accepted {
            Accepted::Totp(step) => steps.entry(customer.clone()).or_default().insert(step),
            Accepted::Backup(left) => remaining.entry(customer.clone()).or_default().insert(left),
        };
        assert!(
            fresh,
            "{customer}: {accepted:?} is in the audit log twice: {events:#?}"
        );
    }
}
