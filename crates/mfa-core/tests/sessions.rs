//! Sessions and factor generations, through the public service API on the in-memory store: a
//! session from before a change of factor or a reset is over, changing factors needs a recent
//! second factor in the acting session, what `check_session` says in each state, a reset of a
//! customer who has no record, double submissions of a TOTP code, the bound on backup-code hashing,
//! and records of the byte format before generations.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mfa_core::{
    Actor, Clock, CustomerId, FactorPassed, KeyId, KeyRing, LoginStep, ManualClock, MemoryStore,
    MfaSession, OrgId, OrgMfa, PassedBy, RECENT_FACTOR_SECS, Refusal, SealingKey, Service,
    ServiceError, SessionCheck, Store, UnixTime,
    audit::{AuditQuery, EventKind, Rejection, StoredEvent},
    machine::CustomerRecord,
    store::{DecodeError, Encoded, Versioned, Written},
    uri::KeyUri,
};
use mfa_store_tests::fixture::{self, SoftApp};
use mfa_store_tests::{Before, Call, Hooked, Hooks};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const T0: u64 = 1_767_225_600; // 2026-01-01

/// The kit's service: a manual clock at `T0`, a fixed keyring, a seeded RNG.
fn service<S: Store>(store: S) -> (Service<S, ManualClock, ChaCha20Rng>, ManualClock) {
    mfa_store_tests::fixture::service(store, T0, 11)
}

fn acme() -> OrgId {
    OrgId::new("acme").unwrap()
}

fn customer(name: &str) -> CustomerId {
    CustomerId::new(name).unwrap()
}

/// Fast backup-code hashing, and the organisation's MFA on or off.
async fn settle<S: Store>(mfa: &Service<S, ManualClock, ChaCha20Rng>, switch: OrgMfa) {
    let mut settings = fixture::fast_settings();
    // Enough failures before a lockout that the races below are refused for their codes.
    settings.lockout.free_failures = mfa_core::machine::MAX_FREE_FAILURES;
    mfa.update_settings(&acme(), settings, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    mfa.set_org_mfa(&acme(), switch, &Actor::new("admin").unwrap())
        .await
        .unwrap();
}

fn mfa_error<E: std::error::Error>(
    result: Result<impl std::fmt::Debug, ServiceError<E>>,
) -> Refusal {
    match result {
        Err(ServiceError::Refused(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn app_code(uri: &KeyUri, clock: &ManualClock) -> String {
    SoftApp::scan(uri).code_now(clock, 0)
}

fn code_at_step(uri: &KeyUri, step: u64) -> String {
    SoftApp::scan(uri).code(step)
}

/// A password sign-in: the session to keep, whatever the step.
async fn sign_in<S: Store>(
    mfa: &Service<S, ManualClock, ChaCha20Rng>,
    who: &CustomerId,
) -> MfaSession {
    mfa.login_step(&acme(), who).await.unwrap().session()
}

/// Enrolls `who` in a session of its own (MFA must be on): the key URI and that session, passed.
async fn enroll<S: Store>(
    mfa: &Service<S, ManualClock, ChaCha20Rng>,
    clock: &ManualClock,
    who: &CustomerId,
) -> (KeyUri, MfaSession) {
    let session = sign_in(mfa, who).await;
    let enrollment = mfa.start_enrollment(&acme(), who, &session).await.unwrap();
    let passed = mfa
        .confirm_enrollment(&acme(), who, &session, &app_code(&enrollment.uri, clock))
        .await
        .unwrap();
    assert_eq!(passed.method(), PassedBy::Enrollment);
    (enrollment.uri, passed.session())
}

async fn check<S: Store>(
    mfa: &Service<S, ManualClock, ChaCha20Rng>,
    who: &CustomerId,
    session: &MfaSession,
) -> SessionCheck {
    mfa.check_session(&acme(), who, session).await.unwrap()
}

/// The customer's audit events, newest first.
async fn events_of<S: Store>(
    mfa: &Service<S, ManualClock, ChaCha20Rng>,
    who: &CustomerId,
) -> Vec<StoredEvent> {
    mfa.audit(
        &acme(),
        &AuditQuery {
            customer: Some(who.clone()),
            before_seq: None,
            limit: 10_000,
        },
    )
    .await
    .unwrap()
}

/// The customer's stored record and its version.
async fn stored<S: Store>(
    mfa: &Service<S, ManualClock, ChaCha20Rng>,
    who: &CustomerId,
) -> Versioned<CustomerRecord> {
    mfa.store()
        .load_customer(&acme(), who)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap()
}

fn complete(by: PassedBy, at: u64) -> SessionCheck {
    SessionCheck::Complete(FactorPassed {
        by,
        at: UnixTime::from_secs(at),
    })
}

// ---------------------------------------------------------------------------------------------
// A session from before MFA: the attack.

/// MFA is off and a session signs in on the password alone; the organisation switches MFA on and
/// the customer (or whoever holds the password) enrolls in another session. The first session
/// must not be able to make backup codes, a way around the new authenticator: it is over (the
/// enrollment moved the generation on), so every step with it is refused and nothing is written.
#[tokio::test]
async fn a_session_from_before_enrollment_cannot_make_backup_codes() {
    let (mfa, clock) = service(MemoryStore::new());
    let alice = customer("alice");
    settle(&mfa, OrgMfa::Off).await;

    let step = mfa.login_step(&acme(), &alice).await.unwrap();
    let LoginStep::Done(passed) = &step else {
        panic!("no MFA while it is off: {step:?}")
    };
    assert_eq!(passed.method(), PassedBy::NotRequired);
    let old = step.session();
    assert_eq!(
        check(&mfa, &alice, &old).await,
        complete(PassedBy::NotRequired, T0)
    );

    mfa.set_org_mfa(&acme(), OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    // Needing no MFA is not a second factor, even in a session of the current generation.
    assert_eq!(check(&mfa, &alice, &old).await, SessionCheck::Enroll);
    assert_eq!(
        mfa_error(mfa.generate_backup_codes(&acme(), &alice, &old).await),
        Refusal::SecondFactorRequired {
            max_age_secs: RECENT_FACTOR_SECS
        }
    );

    clock.advance(5);
    let (uri, enrolled) = enroll(&mfa, &clock, &alice).await;
    assert_eq!(
        check(&mfa, &alice, &old).await,
        SessionCheck::Ended,
        "the enrollment ended the session from before it"
    );
    let logged = events_of(&mfa, &alice).await.len();
    let version = stored(&mfa, &alice).await.version;
    assert_eq!(
        mfa_error(mfa.generate_backup_codes(&acme(), &alice, &old).await),
        Refusal::SessionEnded
    );
    assert_eq!(
        mfa_error(mfa.start_enrollment(&acme(), &alice, &old).await),
        Refusal::SessionEnded
    );
    clock.advance(30);
    assert_eq!(
        mfa_error(
            mfa.verify_totp(&acme(), &alice, &old, &app_code(&uri, &clock))
                .await
        ),
        Refusal::SessionEnded
    );
    // Nothing was made, written or logged for any of it.
    let record = stored(&mfa, &alice).await;
    assert_eq!(record.version, version);
    assert_eq!(record.value.status(clock.now()).backup_codes_remaining, 0);
    assert_eq!(events_of(&mfa, &alice).await.len(), logged);

    // The session that enrolled may.
    let issued = mfa
        .generate_backup_codes(&acme(), &alice, &enrolled)
        .await
        .unwrap();
    assert_eq!(issued.codes.len(), 5);
}

/// Changing factors needs a second factor that passed in this session within
/// [`RECENT_FACTOR_SECS`]: not a password alone (a challenged session that gave no code), not one
/// that passed longer ago; the boundary itself still counts. A refusal writes nothing.
#[tokio::test]
async fn backup_codes_need_a_recent_second_factor_in_this_session() {
    let (mfa, clock) = service(MemoryStore::new());
    let alice = customer("alice");
    settle(&mfa, OrgMfa::On).await;
    let (uri, enrolled) = enroll(&mfa, &clock, &alice).await;

    // A password-only session of the current generation.
    let step = mfa.login_step(&acme(), &alice).await.unwrap();
    assert!(matches!(step, LoginStep::Challenge(_)), "{step:?}");
    let password_only = step.session();
    assert_eq!(
        check(&mfa, &alice, &password_only).await,
        SessionCheck::Challenge
    );
    let refused = Refusal::SecondFactorRequired {
        max_age_secs: RECENT_FACTOR_SECS,
    };
    let before = stored(&mfa, &alice).await.version;
    assert_eq!(
        mfa_error(
            mfa.generate_backup_codes(&acme(), &alice, &password_only)
                .await
        ),
        refused
    );

    // The enrolling session's factor, at the edge of recent and past it.
    clock.advance(RECENT_FACTOR_SECS);
    let issued = mfa
        .generate_backup_codes(&acme(), &alice, &enrolled)
        .await
        .unwrap();
    let enrolled = issued.passed.session();
    assert_eq!(
        (issued.passed.method(), issued.passed.at()),
        (PassedBy::Enrollment, UnixTime::from_secs(T0)),
        "making codes keeps how and when the session passed"
    );
    clock.advance(1);
    let after = stored(&mfa, &alice).await.version;
    assert_ne!(after, before);
    assert_eq!(
        mfa_error(mfa.generate_backup_codes(&acme(), &alice, &enrolled).await),
        Refusal::StepUpRequired {
            purpose: mfa_core::Purpose::BACKUP_CODES,
            max_age_secs: RECENT_FACTOR_SECS,
        }
    );
    assert_eq!(
        stored(&mfa, &alice).await.version,
        after,
        "a refusal writes nothing"
    );
    let generated = |events: &[StoredEvent]| {
        events
            .iter()
            .filter(|e| matches!(e.event.kind, EventKind::BackupCodesGenerated { .. }))
            .count()
    };
    assert_eq!(generated(&events_of(&mfa, &alice).await), 1);

    // A fresh code in that session makes it recent again.
    let accepted = mfa
        .verify_totp(&acme(), &alice, &enrolled, &app_code(&uri, &clock))
        .await
        .unwrap();
    let issued = mfa
        .generate_backup_codes(&acme(), &alice, &accepted.passed.session())
        .await
        .unwrap();
    assert_eq!(issued.passed.method(), PassedBy::Totp);
    assert_eq!(generated(&events_of(&mfa, &alice).await), 2);
}

// ---------------------------------------------------------------------------------------------
// Resets.

/// An administrator's reset ends every session of the customer: one that passed a second factor
/// and one that only gave the password. Neither can start enrolling again; a fresh sign-in can.
/// Another customer's session is untouched.
#[tokio::test]
async fn a_reset_ends_every_session_of_the_customer() {
    let (mfa, clock) = service(MemoryStore::new());
    let (alice, bob) = (customer("alice"), customer("bob"));
    settle(&mfa, OrgMfa::On).await;
    let (_, passed) = enroll(&mfa, &clock, &alice).await;
    let (_, bobs) = enroll(&mfa, &clock, &bob).await;
    let password_only = sign_in(&mfa, &alice).await;
    assert_eq!(
        check(&mfa, &alice, &passed).await,
        complete(PassedBy::Enrollment, T0)
    );
    assert_eq!(
        check(&mfa, &alice, &password_only).await,
        SessionCheck::Challenge
    );

    clock.advance(60);
    mfa.reset(&acme(), &alice, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    assert_eq!(check(&mfa, &alice, &passed).await, SessionCheck::Ended);
    assert_eq!(
        check(&mfa, &alice, &password_only).await,
        SessionCheck::Ended
    );
    for stale in [&password_only, &passed] {
        assert_eq!(
            mfa_error(mfa.start_enrollment(&acme(), &alice, stale).await),
            Refusal::SessionEnded
        );
    }
    assert_eq!(
        mfa.status(&acme(), &alice)
            .await
            .unwrap()
            .customer
            .state
            .as_str(),
        "unconfigured",
        "the refused starts wrote nothing"
    );
    assert_eq!(
        check(&mfa, &bob, &bobs).await,
        complete(PassedBy::Enrollment, T0),
        "only the customer who was reset"
    );

    // Signing in again, the customer enrolls anew.
    let step = mfa.login_step(&acme(), &alice).await.unwrap();
    assert!(matches!(step, LoginStep::Enroll(_)), "{step:?}");
    let fresh = step.session();
    assert_eq!(check(&mfa, &alice, &fresh).await, SessionCheck::Enroll);
    let enrollment = mfa.start_enrollment(&acme(), &alice, &fresh).await.unwrap();
    let again = mfa
        .confirm_enrollment(&acme(), &alice, &fresh, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap();
    assert_eq!(
        check(&mfa, &alice, &again.session()).await,
        complete(PassedBy::Enrollment, T0 + 60)
    );
}

/// A reset of a customer with no stored record (one who never enrolled, even if they signed in, or
/// an id spelt differently) is refused as not found, and writes no record and no event.
#[tokio::test]
async fn resetting_a_customer_without_a_record_is_not_found_and_writes_nothing() {
    let (mfa, clock) = service(MemoryStore::new());
    let (alice, ghost, shouting) = (customer("alice"), customer("ghost"), customer("ALICE"));
    settle(&mfa, OrgMfa::On).await;
    let _ = enroll(&mfa, &clock, &alice).await;
    // Signing in reads; it stores nothing.
    let _ = sign_in(&mfa, &ghost).await;
    let everything = mfa.audit(&acme(), &AuditQuery::default()).await.unwrap();

    for nobody in [&ghost, &shouting] {
        assert_eq!(
            mfa_error(
                mfa.reset(&acme(), nobody, &Actor::new("admin").unwrap())
                    .await
            ),
            Refusal::NotFound
        );
        assert_eq!(
            mfa.store().load_customer(&acme(), nobody).await.unwrap(),
            None
        );
        assert!(events_of(&mfa, nobody).await.is_empty());
    }
    assert_eq!(
        mfa.audit(&acme(), &AuditQuery::default()).await.unwrap(),
        everything,
        "no event anywhere in the organisation"
    );
    // A stored customer is reset as before.
    mfa.reset(&acme(), &alice, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        &events_of(&mfa, &alice).await[0].event.kind,
        EventKind::Reset { by } if by.as_str() == "admin"
    ));
}

// ---------------------------------------------------------------------------------------------
// What a protected request is told.

/// `check_session` in each state: enroll while MFA is on and the customer has none; a code while
/// the customer has MFA and the session gave none (also after the organisation switched MFA off);
/// a session that needed no MFA is sent to enroll once MFA is on, and let in again once it is off;
/// a passed session is let in with how and when it passed.
#[tokio::test]
async fn check_session_follows_the_organisation_and_the_customer() {
    let (mfa, clock) = service(MemoryStore::new());
    let (alice, bob) = (customer("alice"), customer("bob"));
    settle(&mfa, OrgMfa::Off).await;

    // MFA off, nothing configured: let in, as needing none, since the password check.
    let not_required = sign_in(&mfa, &bob).await;
    assert_eq!(
        check(&mfa, &bob, &not_required).await,
        complete(PassedBy::NotRequired, T0)
    );

    // MFA on: the same session is sent to enroll, as is a new one.
    clock.advance(10);
    mfa.set_org_mfa(&acme(), OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    assert_eq!(check(&mfa, &bob, &not_required).await, SessionCheck::Enroll);
    let enrolling = sign_in(&mfa, &bob).await;
    assert_eq!(check(&mfa, &bob, &enrolling).await, SessionCheck::Enroll);
    // Pending is not configured.
    let _ = mfa
        .start_enrollment(&acme(), &bob, &enrolling)
        .await
        .unwrap();
    assert_eq!(check(&mfa, &bob, &enrolling).await, SessionCheck::Enroll);

    // Off again: both are let in as needing none, each since its own password check.
    mfa.set_org_mfa(&acme(), OrgMfa::Off, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    assert_eq!(
        check(&mfa, &bob, &not_required).await,
        complete(PassedBy::NotRequired, T0)
    );
    assert_eq!(
        check(&mfa, &bob, &enrolling).await,
        complete(PassedBy::NotRequired, T0 + 10)
    );

    // A configured customer: a session that gave no code is challenged, whatever the policy.
    mfa.set_org_mfa(&acme(), OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    let (uri, enrolled) = enroll(&mfa, &clock, &alice).await;
    assert_eq!(
        check(&mfa, &alice, &enrolled).await,
        complete(PassedBy::Enrollment, T0 + 10)
    );
    let challenged = sign_in(&mfa, &alice).await;
    assert_eq!(
        check(&mfa, &alice, &challenged).await,
        SessionCheck::Challenge
    );
    mfa.set_org_mfa(&acme(), OrgMfa::Off, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    assert_eq!(
        check(&mfa, &alice, &challenged).await,
        SessionCheck::Challenge,
        "MFA stays on for whoever configured it"
    );

    // Passed with a code, then with a backup code: let in, saying how and when.
    clock.advance(30);
    let by_totp = mfa
        .verify_totp(&acme(), &alice, &challenged, &app_code(&uri, &clock))
        .await
        .unwrap()
        .passed
        .session();
    assert_eq!(
        check(&mfa, &alice, &by_totp).await,
        complete(PassedBy::Totp, T0 + 40)
    );
    let issued = mfa
        .generate_backup_codes(&acme(), &alice, &by_totp)
        .await
        .unwrap();
    let by_totp = issued.passed.session();
    let backup_session = sign_in(&mfa, &alice).await;
    clock.advance(7);
    let by_backup = mfa
        .verify_backup_code(&acme(), &alice, &backup_session, issued.codes[0].as_str())
        .await
        .unwrap()
        .passed
        .session();
    assert_eq!(
        check(&mfa, &alice, &by_backup).await,
        complete(PassedBy::BackupCode, T0 + 47)
    );
    assert_eq!(
        check(&mfa, &alice, &by_totp).await,
        complete(PassedBy::Totp, T0 + 40),
        "a backup code changes no factor: other sessions go on"
    );
    // A passed session stays let in after the organisation switches MFA on again.
    mfa.set_org_mfa(&acme(), OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    assert!(check(&mfa, &alice, &by_backup).await.is_complete());
}

/// Changing factors ends every other session of the customer but not the one that made the
/// change, which goes on with the session the service hands back (its old stamp is over too).
#[tokio::test]
async fn changing_factors_ends_other_sessions_but_not_the_acting_one() {
    let (mfa, clock) = service(MemoryStore::new());
    let alice = customer("alice");
    settle(&mfa, OrgMfa::On).await;
    let (uri, enrolled) = enroll(&mfa, &clock, &alice).await;

    // Two sessions, each passed with a code of its own step.
    let mut passed = Vec::new();
    for _ in 0..2 {
        clock.advance(30);
        let session = sign_in(&mfa, &alice).await;
        let accepted = mfa
            .verify_totp(&acme(), &alice, &session, &app_code(&uri, &clock))
            .await
            .unwrap();
        passed.push(accepted.passed.session());
    }
    let (a, b) = (passed[0], passed[1]);
    assert_eq!(
        check(&mfa, &alice, &a).await,
        complete(PassedBy::Totp, T0 + 30)
    );
    assert_eq!(
        check(&mfa, &alice, &b).await,
        complete(PassedBy::Totp, T0 + 60)
    );

    let issued = mfa
        .generate_backup_codes(&acme(), &alice, &a)
        .await
        .unwrap();
    let a_now = issued.passed.session();
    assert_eq!(check(&mfa, &alice, &b).await, SessionCheck::Ended);
    assert_eq!(check(&mfa, &alice, &enrolled).await, SessionCheck::Ended);
    assert_eq!(
        check(&mfa, &alice, &a).await,
        SessionCheck::Ended,
        "the acting session's old stamp"
    );
    assert_eq!(
        check(&mfa, &alice, &a_now).await,
        complete(PassedBy::Totp, T0 + 30)
    );
    assert_new_generation(a_now.generation(), a.generation());

    // The ended session can neither use nor replace the new codes; the acting one can.
    assert_eq!(
        mfa_error(
            mfa.verify_backup_code(&acme(), &alice, &b, issued.codes[0].as_str())
                .await
        ),
        Refusal::SessionEnded
    );
    assert_eq!(
        mfa_error(mfa.generate_backup_codes(&acme(), &alice, &b).await),
        Refusal::SessionEnded
    );
    let used = mfa
        .verify_backup_code(&acme(), &alice, &a_now, issued.codes[0].as_str())
        .await
        .unwrap();
    assert_eq!(used.remaining, 4);
    assert_eq!(
        mfa.status(&acme(), &alice).await.unwrap().customer.failures,
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Double submissions.

/// The code just accepted, submitted again (a double click, a retried request), is refused as a
/// replay every time and logged, but counts no failure and writes no record: ten of them lock
/// nobody out. A code of an older used step still counts.
#[tokio::test]
async fn a_double_submission_is_refused_without_counting_toward_lockout() {
    let (mfa, clock) = service(MemoryStore::new());
    let alice = customer("alice");
    // The default lockout: five failures.
    mfa.set_org_mfa(&acme(), OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    let (uri, session) = enroll(&mfa, &clock, &alice).await;
    let confirmed_step = T0 / 30;

    clock.advance(30);
    let code = app_code(&uri, &clock);
    let accepted = mfa
        .verify_totp(&acme(), &alice, &session, &code)
        .await
        .unwrap();
    let session = accepted.passed.session();
    let version = stored(&mfa, &alice).await.version;
    let logged = events_of(&mfa, &alice).await.len();
    for _ in 0..10 {
        assert_eq!(
            mfa_error(mfa.verify_totp(&acme(), &alice, &session, &code).await),
            Refusal::ReplayedCode
        );
    }
    let report = mfa.status(&acme(), &alice).await.unwrap();
    let status = report.customer;
    assert_eq!((status.failures, status.locked_until), (0, None));
    assert_eq!(
        stored(&mfa, &alice).await.version,
        version,
        "no record write"
    );
    // Logged as replays that counted no failure (repeats in a row may be coalesced into one
    // count, so only the first is sure to be an event of its own).
    let events = events_of(&mfa, &alice).await;
    let new = &events[..events.len() - logged];
    assert!(!new.is_empty());
    assert!(
        new.iter().all(|e| matches!(
            e.event.kind,
            EventKind::AttemptRejected {
                factor: mfa_core::audit::Factor::Totp,
                reason: Rejection::ReplayedCode,
                failures: 0,
            } | EventKind::RejectionsCoalesced {
                reason: Rejection::ReplayedCode,
                ..
            }
        )),
        "{new:#?}"
    );

    // The confirming step's code, older than the one just accepted and still in the window.
    let older = code_at_step(&uri, confirmed_step);
    assert_ne!(older, code);
    assert_eq!(
        mfa_error(mfa.verify_totp(&acme(), &alice, &session, &older).await),
        Refusal::ReplayedCode
    );
    assert_eq!(
        mfa.status(&acme(), &alice).await.unwrap().customer.failures,
        1
    );
    assert!(matches!(
        events_of(&mfa, &alice).await[0].event.kind,
        EventKind::AttemptRejected {
            reason: Rejection::ReplayedCode,
            failures: 1,
            ..
        }
    ));
    assert_ne!(
        stored(&mfa, &alice).await.version,
        version,
        "a counted failure is written"
    );

    // The next step's code still signs in, and clears the count.
    clock.advance(30);
    let _passed = mfa
        .verify_totp(&acme(), &alice, &session, &app_code(&uri, &clock))
        .await
        .unwrap();
    assert_eq!(
        mfa.status(&acme(), &alice).await.unwrap().customer.failures,
        0
    );
}

// ---------------------------------------------------------------------------------------------
// The bound on backup-code hashing.

/// What the in-memory store does once armed: lose writes on purpose, hold the first loads at a
/// barrier (so that racing requests all read one version), and count loads, writes and the
/// requests in flight between their load and their write.
#[derive(Default)]
struct Probe {
    armed: AtomicBool,
    /// Customer writes still to answer with a conflict (storing nothing).
    conflicts: AtomicUsize,
    /// How many loads wait at the barrier, and the barrier (reused: it lets each `size` through).
    barrier: Option<(usize, tokio::sync::Barrier)>,
    held: AtomicUsize,
    loads: AtomicUsize,
    writes: AtomicUsize,
    lost: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Loads of the policy or the record alone (a sign-in should need neither).
    separate_loads: AtomicUsize,
    /// Records read back as bytes of a format no version wrote.
    garbled: AtomicBool,
}

impl Probe {
    /// The first `held` loads (once armed) each wait at a barrier of `size`.
    fn with_barrier(held: usize, size: usize) -> Self {
        Self {
            barrier: Some((held, tokio::sync::Barrier::new(size))),
            ..Self::default()
        }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }

    fn count(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }

    /// The request is done with the record: it wrote, or appended events instead.
    fn done(&self) {
        if self.armed() {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Hooks for Probe {
    async fn before(&self, call: Call) -> Before {
        match call {
            Call::LoadOrg | Call::LoadCustomer => {
                self.separate_loads.fetch_add(1, Ordering::SeqCst);
            }
            Call::WriteCustomer if self.armed() => {
                self.writes.fetch_add(1, Ordering::SeqCst);
                let lose = self
                    .conflicts
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if lose {
                    return Before::Lose;
                }
            }
            Call::AppendEvents => self.done(),
            _ => {}
        }
        Before::Proceed
    }

    fn loaded<T>(
        &self,
        _: &OrgId,
        customer: Option<&CustomerId>,
        loaded: Option<Versioned<Encoded<T>>>,
    ) -> Option<Versioned<Encoded<T>>> {
        match loaded {
            Some(stored) if customer.is_some() && self.garbled.load(Ordering::SeqCst) => {
                Some(Versioned {
                    value: Encoded::new(vec![9, 0]),
                    version: stored.version,
                })
            }
            other => other,
        }
    }

    async fn after(&self, call: Call, written: Option<Written>) {
        if !self.armed() {
            return;
        }
        match call {
            Call::LoadOrgAndCustomer => {
                self.loads.fetch_add(1, Ordering::SeqCst);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                if let Some((waiting, barrier)) = &self.barrier
                    && self.held.fetch_add(1, Ordering::SeqCst) < *waiting
                {
                    barrier.wait().await;
                }
            }
            Call::WriteCustomer => {
                if written == Some(Written::Conflict) {
                    self.lost.fetch_add(1, Ordering::SeqCst);
                }
                self.done();
            }
            _ => {}
        }
    }
}

type Probed = Hooked<MemoryStore, Probe>;

/// A service over the in-memory store, probed.
fn probed(probe: Probe) -> (Service<Probed, ManualClock, ChaCha20Rng>, ManualClock) {
    service(Hooked::new(MemoryStore::new(), probe))
}

/// A new set of backup codes whose write loses its compare-and-swap is hashed once and installed
/// again, not hashed anew at every attempt.
#[tokio::test]
async fn a_retried_set_of_backup_codes_is_hashed_once() {
    let (mfa, clock) = probed(Probe::default());
    let alice = customer("alice");
    settle(&mfa, OrgMfa::On).await;
    let (_, session) = enroll(&mfa, &clock, &alice).await;
    let probe = &mfa.store().hooks;
    probe.arm();
    // Three lost writes, then the set is stored: five evaluations (one a code), not twenty.
    probe.conflicts.store(3, Ordering::SeqCst);
    let before = mfa.kdf_evaluations();
    let issued = mfa
        .generate_backup_codes(&acme(), &alice, &session)
        .await
        .unwrap();
    assert_eq!(mfa.kdf_evaluations(), before + 5);
    assert_eq!(Probe::count(&probe.writes), 4);
    // The codes shown are the codes stored.
    let session = issued.passed.session();
    for code in &issued.codes {
        let accepted = mfa
            .verify_backup_code(&acme(), &alice, &session, code.as_str())
            .await
            .unwrap();
        assert_eq!(accepted.passed.method(), PassedBy::BackupCode);
    }
}

/// A backup-code check whose write loses its compare-and-swap, again and again, re-reads and
/// re-decides each time but evaluates the KDF once: for a wrong code, for a right one, and for one
/// that gives up after every attempt was lost.
#[tokio::test]
async fn a_retried_backup_code_costs_one_kdf_evaluation() {
    let (mfa, clock) = probed(Probe::default());
    let alice = customer("alice");
    settle(&mfa, OrgMfa::On).await;
    let (_, session) = enroll(&mfa, &clock, &alice).await;
    let issued = mfa
        .generate_backup_codes(&acme(), &alice, &session)
        .await
        .unwrap();
    let session = issued.passed.session();
    let probe = &mfa.store().hooks;
    probe.arm();

    // A wrong code: five lost writes, then the failure is stored.
    probe.conflicts.store(5, Ordering::SeqCst);
    let before = mfa.kdf_evaluations();
    assert_eq!(
        mfa_error(
            mfa.verify_backup_code(&acme(), &alice, &session, "AAAA-BBBB-CCCC")
                .await
        ),
        Refusal::WrongCode
    );
    assert_eq!(mfa.kdf_evaluations(), before + 1);
    assert_eq!(
        (Probe::count(&probe.loads), Probe::count(&probe.writes)),
        (6, 6)
    );
    assert_eq!(
        mfa.status(&acme(), &alice).await.unwrap().customer.failures,
        1
    );

    // A right code: the same.
    probe.conflicts.store(5, Ordering::SeqCst);
    let accepted = mfa
        .verify_backup_code(&acme(), &alice, &session, issued.codes[3].as_str())
        .await
        .unwrap();
    assert_eq!(accepted.remaining, 4);
    assert_eq!(mfa.kdf_evaluations(), before + 2);
    assert_eq!(Probe::count(&probe.writes), 12);

    // Every attempt lost: contended, nothing stored, still one evaluation.
    probe
        .conflicts
        .store(mfa_core::DEFAULT_MAX_ATTEMPTS as usize, Ordering::SeqCst);
    let contended = mfa
        .verify_backup_code(&acme(), &alice, &session, issued.codes[4].as_str())
        .await;
    assert!(
        matches!(contended, Err(ServiceError::Contended)),
        "{contended:?}"
    );
    assert_eq!(mfa.kdf_evaluations(), before + 3);
    assert_eq!(
        Probe::count(&probe.writes),
        12 + mfa_core::DEFAULT_MAX_ATTEMPTS as usize
    );
    assert_eq!(
        mfa.status(&acme(), &alice)
            .await
            .unwrap()
            .customer
            .backup_codes_remaining,
        4,
        "the contended code was not used"
    );
}

/// 24 wrong backup codes at once against one customer on a multi-thread runtime, all of them
/// reading the same version first (a barrier in the store holds the first 24 loads), so that 23
/// lose the race, then 22, and so on: 24 KDF evaluations in all, one per request, however many
/// times each re-read and re-decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_backup_codes_cost_one_kdf_evaluation_each() {
    const REQUESTS: usize = 24;
    let (mfa, clock) = probed(Probe::with_barrier(REQUESTS, REQUESTS));
    // Every request holds a hashing permit while it waits at the barrier.
    let mfa = Arc::new(
        mfa.with_max_concurrent_kdf(REQUESTS)
            .with_max_attempts(1_000),
    );
    let alice = customer("alice");
    settle(&mfa, OrgMfa::On).await;
    let (_, session) = enroll(&mfa, &clock, &alice).await;
    let _codes = mfa
        .generate_backup_codes(&acme(), &alice, &session)
        .await
        .unwrap();
    // Signed in before the store is armed: the barrier holds the backup-code checks' loads only.
    let mut sessions = Vec::new();
    for _ in 0..REQUESTS {
        sessions.push(sign_in(&mfa, &alice).await);
    }
    mfa.store().hooks.arm();
    let before = mfa.kdf_evaluations();

    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, session)| {
            let (mfa, alice) = (Arc::clone(&mfa), alice.clone());
            tokio::spawn(async move {
                let wrong = format!("AAAA-BBBB-{:04}", 1000 + i);
                mfa.verify_backup_code(&acme(), &alice, &session, &wrong)
                    .await
            })
        })
        .collect();
    let (mut wrong, mut locked) = (0, 0);
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the race ends")
            .unwrap()
        {
            Err(ServiceError::Refused(Refusal::WrongCode)) => wrong += 1,
            Err(ServiceError::Refused(Refusal::Locked { .. })) => locked += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let probe = &mfa.store().hooks;
    assert_eq!(
        mfa.kdf_evaluations() - before,
        REQUESTS as u64,
        "one evaluation per request ({} loads, {} lost writes)",
        Probe::count(&probe.loads),
        Probe::count(&probe.lost)
    );
    // The race really was run again and again.
    assert!(
        Probe::count(&probe.lost) >= REQUESTS - 1,
        "{}",
        Probe::count(&probe.lost)
    );
    assert!(Probe::count(&probe.loads) >= 2 * REQUESTS - 1);
    // The twentieth failure locks, and the requests still retrying then are refused unchecked
    // (they had hashed before, in the first round).
    let allowed = mfa_core::machine::MAX_FREE_FAILURES as usize;
    assert_eq!((wrong, locked), (allowed, REQUESTS - allowed));
    assert_eq!(
        mfa.status(&acme(), &alice).await.unwrap().customer.failures as usize,
        allowed
    );
}

/// With at most two requests allowed to hash at once, 24 concurrent backup-code checks (each for a
/// customer of its own, so each reads once and writes once) never have more than two between their
/// read and their write, the span the hashing permit covers. A barrier in the store makes each pair
/// wait for each other, so two really are in flight together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_the_bound_of_backup_code_checks_hash_at_once() {
    const REQUESTS: usize = 24;
    // Every load waits for another: two at a time go on.
    let (mfa, clock) = probed(Probe::with_barrier(REQUESTS, 2));
    let mfa = Arc::new(mfa.with_max_concurrent_kdf(2));
    settle(&mfa, OrgMfa::On).await;
    let mut customers = Vec::new();
    for i in 0..REQUESTS {
        let who = customer(&format!("customer{i}"));
        let (_, session) = enroll(&mfa, &clock, &who).await;
        customers.push((who, session));
    }
    mfa.store().hooks.arm();
    let before = mfa.kdf_evaluations();

    let tasks: Vec<_> = customers
        .into_iter()
        .map(|(who, session)| {
            let mfa = Arc::clone(&mfa);
            tokio::spawn(async move {
                mfa.verify_backup_code(&acme(), &who, &session, "AAAA-BBBB-CCCC")
                    .await
            })
        })
        .collect();
    for task in tasks {
        let outcome = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("no request waits forever")
            .unwrap();
        assert_eq!(mfa_error(outcome), Refusal::WrongCode);
    }
    let probe = &mfa.store().hooks;
    assert_eq!(
        (Probe::count(&probe.loads), Probe::count(&probe.writes)),
        (REQUESTS, REQUESTS)
    );
    assert_eq!(mfa.kdf_evaluations() - before, REQUESTS as u64);
    assert_eq!(Probe::count(&probe.max_in_flight), 2);
}

// ---------------------------------------------------------------------------------------------
// Records written before generations.

/// Format 1 (a record without its generation) still reads, as generation 0; format 2 is format 1's
/// body and then the generation. An unknown format byte is refused as such, and bytes of either
/// format with anything left over are corrupt.
#[tokio::test]
async fn records_of_format_1_still_read() {
    let (mfa, clock) = service(MemoryStore::new());
    let alice = customer("alice");
    settle(&mfa, OrgMfa::On).await;
    /// The bytes format 1 wrote for `record`, from the bytes format 3 writes: the same but for
    /// the format byte, without format 3's replacement (none: one 0x00 byte closing a configured
    /// state, before the failures), and without format 2's generation at the end (a postcard
    /// varint, 7 bits a byte).
    fn format_1(record: &CustomerRecord) -> Vec<u8> {
        let mut bytes = record.to_bytes();
        assert_eq!(bytes[0], 3, "this version writes format 3");
        bytes[0] = 1;
        let varint = (64 - record.generation().leading_zeros())
            .div_ceil(7)
            .max(1) as usize;
        if record.state() == mfa_core::StateName::Configured {
            let failures = postcard::to_allocvec(record.failures()).unwrap().len();
            let at = bytes.len() - varint - failures - 1;
            assert_eq!(bytes[at], 0x00, "no replacement under way");
            bytes.remove(at);
        }
        bytes.truncate(bytes.len() - varint);
        bytes
    }

    // The default record and a pending one with a failure, both of generation 0.
    let session = sign_in(&mfa, &alice).await;
    let enrollment = mfa
        .start_enrollment(&acme(), &alice, &session)
        .await
        .unwrap();
    let _ = mfa
        .confirm_enrollment(&acme(), &alice, &session, "000000")
        .await;
    let pending = stored(&mfa, &alice).await.value;
    assert_eq!(
        (pending.state().as_str(), pending.failures().consecutive()),
        ("pending", 1)
    );
    for record in [CustomerRecord::default(), pending] {
        assert_eq!(record.generation(), 0);
        let old = format_1(&record);
        assert_eq!(record.to_bytes().last(), Some(&0x00), "generation 0");
        assert_eq!(CustomerRecord::from_bytes(&old).unwrap(), record);
        assert_eq!(
            CustomerRecord::from_bytes(&record.to_bytes()).unwrap(),
            record
        );
    }

    // A configured record (generation 1, after the confirmation): format 1 reads as generation 0,
    // with every other field as it was, and is written back in this version's format. (A backup-code set is left
    // out: this version's sets are stored in a form of their own, so format 1's set cannot be cut
    // out of this version's bytes.)
    let passed = mfa
        .confirm_enrollment(
            &acme(),
            &alice,
            &session,
            &app_code(&enrollment.uri, &clock),
        )
        .await
        .unwrap();
    let confirmed = stored(&mfa, &alice).await.value;
    assert_eq!(confirmed.state().as_str(), "configured");
    assert_new_generation(confirmed.generation(), 0);
    let old = format_1(&confirmed);
    let read = CustomerRecord::from_bytes(&old).unwrap();
    assert_eq!(
        (read.mfa(), read.failures(), read.generation()),
        (confirmed.mfa(), confirmed.failures(), 0)
    );
    // Written back, it is this version's format, and holds exactly what format 1 held.
    assert_eq!(read.to_bytes()[0], 3);
    assert_eq!(format_1(&read), old);
    // A session of generation 0 (signed in before the upgrade) goes on with the record read from
    // format 1, and not with this version's record, whose generation moved on at confirmation.
    let policy = mfa.org_policy(&acme()).await.unwrap();
    assert_eq!(
        read.check_session(&policy, &session),
        SessionCheck::Challenge
    );
    assert_eq!(
        confirmed.check_session(&policy, &session),
        SessionCheck::Ended
    );

    // A record with backup codes for the checks of bytes this version refuses.
    let _codes = mfa
        .generate_backup_codes(&acme(), &alice, &passed.session())
        .await
        .unwrap();
    let configured = stored(&mfa, &alice).await.value;
    assert_new_generation(configured.generation(), confirmed.generation());

    // Another format byte, and bytes left over.
    let mut unknown = configured.to_bytes();
    unknown[0] = 9;
    assert_eq!(
        CustomerRecord::from_bytes(&unknown),
        Err(DecodeError::UnknownFormat(9))
    );
    let mut longer = configured.to_bytes();
    longer.push(0x00);
    assert_eq!(
        CustomerRecord::from_bytes(&longer),
        Err(DecodeError::Corrupt)
    );
    let mut format_1_with_generation = confirmed.to_bytes();
    format_1_with_generation[0] = 1;
    assert_eq!(
        CustomerRecord::from_bytes(&format_1_with_generation),
        Err(DecodeError::Corrupt)
    );
    assert_eq!(CustomerRecord::from_bytes(&[]), Err(DecodeError::Corrupt));
}

// ---------------------------------------------------------------------------------------------
// The crate as an embedder meets it: the proof comes only after the write, a sign-in reads once,
// and errors say what they are (a refusal or a fault) and each cause once.

/// Alice enrolled in a service over a [`Probe`], with the clock a step on: a session signed in
/// since, and the code of that step.
async fn alice_configured() -> (
    Service<Probed, ManualClock, ChaCha20Rng>,
    ManualClock,
    MfaSession,
    String,
) {
    let (mfa, clock) = probed(Probe::default());
    let mfa = mfa.with_max_attempts(3);
    settle(&mfa, OrgMfa::On).await;
    let alice = customer("alice");
    let (uri, _) = enroll(&mfa, &clock, &alice).await;
    clock.advance(30);
    let session = sign_in(&mfa, &alice).await;
    let code = app_code(&uri, &clock);
    (mfa, clock, session, code)
}

/// The proof comes after the write: while every write loses its compare-and-swap, a right code
/// gets no proof (the call ends contended), and so was never consumed: once writes go through,
/// the same code passes, once.
#[tokio::test]
async fn no_proof_without_the_write_that_consumes_the_code() {
    let (mfa, _clock, session, code) = alice_configured().await;
    let alice = customer("alice");
    mfa.store().hooks.arm();
    mfa.store()
        .hooks
        .conflicts
        .store(usize::MAX, Ordering::SeqCst);
    let lost = mfa.verify_totp(&acme(), &alice, &session, &code).await;
    assert!(matches!(lost, Err(ServiceError::Contended)), "{lost:?}");
    mfa.store().hooks.conflicts.store(0, Ordering::SeqCst);
    let accepted = mfa
        .verify_totp(&acme(), &alice, &session, &code)
        .await
        .unwrap();
    assert_eq!(accepted.passed.customer(), &alice);
    assert!(matches!(
        mfa.verify_totp(&acme(), &alice, &session, &code).await,
        Err(ServiceError::Refused(Refusal::ReplayedCode))
    ));
}

/// A password sign-in, a status and a session check each read the policy and the record in one
/// load (one round trip, one snapshot on a networked store), never one after the other.
#[tokio::test]
async fn a_sign_in_reads_policy_and_record_in_one_load() {
    let (mfa, _clock, session, _) = alice_configured().await;
    let alice = customer("alice");
    let probe = &mfa.store().hooks;
    probe.arm();
    let separate = Probe::count(&probe.separate_loads);
    let _step = mfa.login_step(&acme(), &alice).await.unwrap();
    let _status = mfa.status(&acme(), &alice).await.unwrap();
    let _check = mfa.check_session(&acme(), &alice, &session).await.unwrap();
    assert_eq!(Probe::count(&probe.separate_loads), separate);
    assert_eq!(Probe::count(&probe.loads), 3);
}

/// A host tells a refusal (answer the customer) from a fault (page an operator) with one arm each.
#[tokio::test]
async fn refusals_and_faults_are_told_apart() {
    let (mfa, clock, session, code) = alice_configured().await;
    let alice = customer("alice");
    let wrong = mfa.verify_totp(&acme(), &alice, &session, "000000").await;
    assert!(matches!(
        wrong,
        Err(ServiceError::Refused(Refusal::WrongCode))
    ));
    assert!(!wrong.unwrap_err().is_transient());
    // The same records under a keyring that lacks their key: a fault, not the customer's doing.
    let other = Service::new(
        MemoryStore::new(),
        clock.clone(),
        KeyRing::new(SealingKey::new(KeyId::new(2), [4; 32])),
        ChaCha20Rng::seed_from_u64(1),
    );
    let (policy, record) = mfa
        .store()
        .load_org_and_customer(&acme(), &alice)
        .await
        .unwrap();
    let (policy, record) = (
        policy.unwrap().decode().unwrap().value,
        record.unwrap().decode().unwrap().value,
    );
    let _ = other
        .store()
        .write_org(&acme(), None, &policy, &[])
        .await
        .unwrap();
    let _ = other
        .store()
        .write_customer(&acme(), &alice, None, &record, &[])
        .await
        .unwrap();
    let fault = other.verify_totp(&acme(), &alice, &session, &code).await;
    assert!(
        matches!(
            fault,
            Err(ServiceError::Fault(mfa_core::Fault::Seal(
                mfa_core::seal::SealError::UnknownKey(id)
            ))) if id == KeyId::new(1)
        ),
        "{fault:?}"
    );
    let fault = fault.unwrap_err();
    assert!(fault.refusal().is_none() && !fault.is_transient());
    // The pure machine's error splits the same way.
    assert_eq!(
        mfa_core::MfaError::from(Refusal::NotConfigured).refusal(),
        Some(&Refusal::NotConfigured)
    );
}

/// The messages of `error` and of each of its sources, outermost first.
fn chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut messages = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(next) = cause {
        messages.push(next.to_string());
        cause = next.source();
    }
    messages
}

/// Each error names its own step and hands its cause out as its source, never both: printed as a
/// chain (`anyhow`'s `{:#}`, tracing's error fields) every cause shows once.
#[tokio::test]
async fn no_error_repeats_its_source() {
    let (mfa, _clock, _, _) = alice_configured().await;
    let alice = customer("alice");
    mfa.store().hooks.garbled.store(true, Ordering::SeqCst);
    let corrupt = mfa.status(&acme(), &alice).await.unwrap_err();
    assert!(matches!(corrupt, ServiceError::Corrupt(_)), "{corrupt:?}");
    assert_eq!(
        chain(&corrupt),
        [
            "the stored MFA record of customer alice in organisation acme cannot be read",
            "stored data has format 9, which this version cannot read",
        ]
    );
    let errors: Vec<Box<dyn std::error::Error + 'static>> = vec![
        Box::new(corrupt),
        Box::new(Refusal::InvalidCode(
            mfa_core::otp::Code::parse("12", mfa_core::otp::Digits::SIX).unwrap_err(),
        )),
        Box::new(Refusal::InvalidSettings(mfa_core::SettingsError::NonZeroT0)),
        Box::new(mfa_core::Fault::Seal(
            mfa_core::seal::SealError::UnknownKey(KeyId::new(7)),
        )),
        Box::new(mfa_core::MfaError::Fault(mfa_core::Fault::Backup(
            mfa_core::backup::BackupError::InvalidParams,
        ))),
        Box::new(ServiceError::<DecodeError>::Store(DecodeError::Corrupt)),
        Box::new(KeyUri::parse("otpauth://totp/a?secret=1").unwrap_err()),
    ];
    for error in &errors {
        let messages = chain(error.as_ref());
        for (i, outer) in messages.iter().enumerate() {
            for inner in &messages[i + 1..] {
                assert!(
                    !outer.contains(inner.as_str()),
                    "{outer:?} repeats its cause {inner:?}"
                );
            }
        }
    }
}

/// A change of factor drew a new generation: never the old one, never 0 (no record).
#[track_caller]
fn assert_new_generation(new: u64, old: u64) {
    assert_ne!(new, old);
    assert_ne!(new, 0);
}
