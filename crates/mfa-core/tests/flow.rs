//! The whole story through the public service API on the in-memory store, with a manual clock: the
//! DESIGN.md login table, enrollment, replay, backup codes, sticky-after-disable, reset and lockout.

use mfa_core::{
    Actor, CustomerId, Fault, KeyId, KeyRing, LoginStep, ManualClock, MemoryStore, MfaSession,
    OrgId, OrgMfa, PassedBy, Refusal, SealingKey, Service, ServiceError, Settings, StateName,
    Store, UnixTime,
    audit::{AuditQuery, EventKind, Rejection},
};
use rand_chacha::ChaCha20Rng;

type Mfa = Service<MemoryStore, ManualClock, ChaCha20Rng>;

use mfa_store_tests::{
    T0,
    fixture::{self, SoftApp},
};

fn service() -> (Mfa, ManualClock) {
    fixture::service(MemoryStore::new(), T0, 42)
}

fn ids() -> (OrgId, CustomerId, CustomerId) {
    (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice@acme.test").unwrap(),
        CustomerId::new("bob@acme.test").unwrap(),
    )
}

/// Fast backup-code hashing for tests; production keeps the default.
async fn enable_fast<S: Store, R: rand_core::CryptoRng + Send>(
    mfa: &Service<S, ManualClock, R>,
    org: &OrgId,
) {
    let mut settings = fixture::fast_settings();
    settings.issuer = "Acme Billing".into();
    mfa.update_settings(org, settings, &Actor::new("admin@acme.test").unwrap())
        .await
        .unwrap();
    mfa.set_org_mfa(org, OrgMfa::On, &Actor::new("admin@acme.test").unwrap())
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

/// The session a password sign-in keeps, whatever the step.
async fn sign_in<S: Store, R: rand_core::CryptoRng + Send>(
    mfa: &Service<S, ManualClock, R>,
    org: &OrgId,
    customer: &CustomerId,
) -> MfaSession {
    mfa.login_step(org, customer).await.unwrap().session()
}

/// The code the customer's app shows now.
fn app_code(uri: &mfa_core::uri::KeyUri, clock: &ManualClock) -> String {
    SoftApp::scan(uri).code_now(clock, 0)
}

#[tokio::test]
async fn the_whole_story() {
    let (mfa, clock) = service();
    let (org, alice, bob) = ids();

    // MFA off, nothing configured: no MFA.
    let step = mfa.login_step(&org, &alice).await.unwrap();
    assert!(matches!(&step, LoginStep::Done(p) if p.method() == PassedBy::NotRequired));
    assert_eq!(
        mfa_error(mfa.start_enrollment(&org, &alice, &step.session()).await),
        Refusal::MfaDisabled
    );

    // MFA on: enrollment is forced.
    enable_fast(&mfa, &org).await;
    let step = mfa.login_step(&org, &alice).await.unwrap();
    assert!(matches!(step, LoginStep::Enroll(_)));
    let session = step.session();
    let first = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
    let enrollment = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
    assert_ne!(
        first.uri.secret(),
        enrollment.uri.secret(),
        "a restart issues a fresh secret"
    );
    assert_eq!(enrollment.uri.issuer(), Some("Acme Billing"));
    assert!(
        matches!(
            mfa.login_step(&org, &alice).await.unwrap(),
            LoginStep::Enroll(_)
        ),
        "pending is not configured"
    );

    // The first secret no longer confirms; the current one does, and its code is then used up.
    let stale = app_code(&first.uri, &clock);
    assert_eq!(
        mfa_error(mfa.confirm_enrollment(&org, &alice, &session, &stale).await),
        Refusal::WrongCode
    );
    let code = app_code(&enrollment.uri, &clock);
    let passed = mfa
        .confirm_enrollment(&org, &alice, &session, &code)
        .await
        .unwrap();
    assert_eq!(passed.method(), PassedBy::Enrollment);
    let session = passed.session();
    assert!(matches!(
        mfa.login_step(&org, &alice).await.unwrap(),
        LoginStep::Challenge(_)
    ));
    // The confirming code again: a second submission, refused (and not counted, below).
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, &session, &code).await),
        Refusal::ReplayedCode
    );

    // The next step's code signs in once.
    clock.advance(30);
    let code = app_code(&enrollment.uri, &clock);
    let accepted = mfa
        .verify_totp(&org, &alice, &session, &code)
        .await
        .unwrap();
    assert_eq!(accepted.passed.method(), PassedBy::Totp);
    let session = accepted.passed.session();
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, &session, &code).await),
        Refusal::ReplayedCode
    );
    // The older code of the confirming step, still inside the window, is refused too.
    let older = enrollment
        .uri
        .as_totp()
        .unwrap()
        .generate_at_step(enrollment.uri.secret(), T0 / 30)
        .to_string();
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, &session, &older).await),
        Refusal::ReplayedCode
    );

    // Backup codes: each works once; a new set voids the old one.
    let issued = mfa
        .generate_backup_codes(&org, &alice, &session)
        .await
        .unwrap();
    let (codes, session) = (issued.codes, issued.passed.session());
    assert_eq!(codes.len(), 5);
    let accepted = mfa
        .verify_backup_code(&org, &alice, &session, &codes[0].as_str().to_lowercase())
        .await
        .unwrap();
    assert_eq!(
        (accepted.remaining, accepted.passed.method()),
        (4, PassedBy::BackupCode)
    );
    assert_eq!(
        mfa_error(
            mfa.verify_backup_code(&org, &alice, &session, codes[0].as_str())
                .await
        ),
        Refusal::UsedBackupCode
    );
    let issued = mfa
        .generate_backup_codes(&org, &alice, &session)
        .await
        .unwrap();
    let (fresh, session) = (issued.codes, issued.passed.session());
    assert_eq!(
        mfa_error(
            mfa.verify_backup_code(&org, &alice, &session, codes[1].as_str())
                .await
        ),
        Refusal::WrongCode
    );
    assert_eq!(
        mfa.verify_backup_code(&org, &alice, &session, fresh[4].as_str())
            .await
            .unwrap()
            .remaining,
        4
    );

    // MFA off: Alice (configured) is still challenged; Bob (never configured) is not.
    mfa.set_org_mfa(&org, OrgMfa::Off, &Actor::new("admin@acme.test").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        mfa.login_step(&org, &alice).await.unwrap(),
        LoginStep::Challenge(_)
    ));
    assert!(matches!(
        mfa.login_step(&org, &bob).await.unwrap(),
        LoginStep::Done(_)
    ));

    // Admin reset: Alice is unconfigured; with MFA back on she enrolls again.
    mfa.reset(&org, &alice, &Actor::new("admin@acme.test").unwrap())
        .await
        .unwrap();
    let step = mfa.login_step(&org, &alice).await.unwrap();
    assert!(matches!(step, LoginStep::Done(_)));
    assert_eq!(
        mfa_error(
            mfa.verify_totp(&org, &alice, &step.session(), "123456")
                .await
        ),
        Refusal::NotConfigured
    );
    mfa.set_org_mfa(&org, OrgMfa::On, &Actor::new("admin@acme.test").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        mfa.login_step(&org, &alice).await.unwrap(),
        LoginStep::Enroll(_)
    ));

    // Every step is in the audit log, newest first.
    let events = mfa
        .audit(
            &org,
            &AuditQuery {
                customer: Some(alice.clone()),
                before_seq: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert!(matches!(events[0].event.kind, EventKind::Reset { .. }));
    let kinds: Vec<_> = events
        .iter()
        .map(|e| {
            format!("{:?}", e.event.kind)
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    for expected in [
        "EnrollmentStarted",
        "EnrollmentConfirmed",
        "TotpAccepted",
        "BackupCodesGenerated",
        "BackupCodeAccepted",
        "AttemptRejected",
        "Reset",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} missing from {kinds:?}"
        );
    }
    // The just-accepted code submitted again is logged as a replay without a failure; the older
    // code of the confirming step counts one.
    for failures in [0, 1] {
        assert!(
            events.iter().any(|e| e.event.kind
                == EventKind::AttemptRejected {
                    factor: mfa_core::audit::Factor::Totp,
                    reason: Rejection::ReplayedCode,
                    failures
                }),
            "a replay with {failures} failures: {events:?}"
        );
    }
    // Nothing secret in any event.
    let text = format!("{events:?}");
    assert!(
        !text.contains(&*enrollment.uri.secret().to_base32()) && !text.contains(codes[0].as_str())
    );
}

#[tokio::test]
async fn lockout_after_five_failures_doubles_and_success_clears_it() {
    let (mfa, clock) = service();
    let (org, alice, _) = ids();
    enable_fast(&mfa, &org).await;
    let session = sign_in(&mfa, &org, &alice).await;
    let enrollment = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
    let session = mfa
        .confirm_enrollment(&org, &alice, &session, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap()
        .session();
    clock.advance(30);

    for _ in 0..4 {
        assert_eq!(
            mfa_error(mfa.verify_totp(&org, &alice, &session, "000000").await),
            Refusal::WrongCode
        );
    }
    // The fifth failure locks for 30 s; even the right code is then refused unchecked.
    assert_eq!(
        mfa_error(
            mfa.verify_backup_code(&org, &alice, &session, "AAAA-BBBB-CCCC")
                .await
        ),
        Refusal::WrongCode
    );
    let right = app_code(&enrollment.uri, &clock);
    let until = UnixTime::from_secs(T0 + 30 + 30);
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, &session, &right).await),
        Refusal::Locked { retry_at: until }
    );
    assert_eq!(
        mfa.status(&org, &alice)
            .await
            .unwrap()
            .customer
            .locked_until,
        Some(until)
    );

    // After it, one more failure locks for 60 s.
    clock.set(until);
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, &session, "000000").await),
        Refusal::WrongCode
    );
    assert_eq!(
        mfa.status(&org, &alice)
            .await
            .unwrap()
            .customer
            .locked_until,
        Some(UnixTime::from_secs(until.as_secs() + 60))
    );

    // Success clears the count.
    clock.advance(60);
    let _passed = mfa
        .verify_totp(&org, &alice, &session, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap();
    let report = mfa.status(&org, &alice).await.unwrap();
    let status = report.customer;
    let enabled = report.org_mfa == OrgMfa::On;
    assert!(enabled);
    assert_eq!(
        (status.state, status.failures, status.locked_until),
        (StateName::Configured, 0, None)
    );
}

#[tokio::test]
async fn an_expired_enrollment_cannot_be_confirmed() {
    let (mfa, clock) = service();
    let (org, alice, _) = ids();
    enable_fast(&mfa, &org).await;
    let session = sign_in(&mfa, &org, &alice).await;
    let enrollment = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
    assert_eq!(enrollment.expires_at, UnixTime::from_secs(T0 + 600));
    clock.set(enrollment.expires_at);
    let code = app_code(&enrollment.uri, &clock);
    assert_eq!(
        mfa_error(mfa.confirm_enrollment(&org, &alice, &session, &code).await),
        Refusal::EnrollmentExpired
    );
    // Starting again works.
    let again = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
    let _passed = mfa
        .confirm_enrollment(&org, &alice, &session, &app_code(&again.uri, &clock))
        .await
        .unwrap();
}

#[tokio::test]
async fn drift_learning_centres_the_window_on_the_customers_clock() {
    for learning in [false, true] {
        let (mfa, clock) = service();
        let (org, alice, _) = ids();
        let mut settings = fixture::fast_settings();
        settings.drift_learning = learning;
        mfa.update_settings(&org, settings, &Actor::new("admin").unwrap())
            .await
            .unwrap();
        mfa.set_org_mfa(&org, OrgMfa::On, &Actor::new("admin").unwrap())
            .await
            .unwrap();
        let session = sign_in(&mfa, &org, &alice).await;
        let enrollment = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
        let session = mfa
            .confirm_enrollment(&org, &alice, &session, &app_code(&enrollment.uri, &clock))
            .await
            .unwrap()
            .session();
        let totp = enrollment.uri.as_totp().unwrap();
        let ahead = |steps: u64| {
            let now = mfa_core::Clock::now(&clock).as_secs();
            totp.generate_at_step(enrollment.uri.secret(), now / 30 + steps)
                .to_string()
        };

        // Her phone runs a step ahead: accepted at the window's edge either way.
        clock.advance(30);
        let _passed = mfa
            .verify_totp(&org, &alice, &session, &ahead(1))
            .await
            .unwrap();
        // Then it drifts to two steps ahead: only a learnt drift still reaches it.
        clock.advance(60);
        let two_ahead = mfa.verify_totp(&org, &alice, &session, &ahead(2)).await;
        if learning {
            let _passed = two_ahead.unwrap();
            let events = mfa
                .audit(
                    &org,
                    &AuditQuery {
                        customer: Some(alice.clone()),
                        before_seq: None,
                        limit: 1,
                    },
                )
                .await
                .unwrap();
            assert!(
                matches!(
                    events[0].event.kind,
                    EventKind::TotpAccepted { offset: 2, .. }
                ),
                "{events:?}"
            );
            // NTP puts her phone right again: the current step is always in reach.
            clock.advance(90);
            let _passed = mfa
                .verify_totp(&org, &alice, &session, &ahead(0))
                .await
                .unwrap();
            // A jump beyond the learnt drift and the window is not followed.
            clock.advance(30);
            assert_eq!(
                mfa_error(mfa.verify_totp(&org, &alice, &session, &ahead(4)).await),
                Refusal::WrongCode
            );
        } else {
            assert_eq!(mfa_error(two_ahead), Refusal::WrongCode);
        }
    }
}

#[tokio::test]
async fn rotating_the_sealing_key_keeps_every_sign_in_working() {
    use std::sync::Arc;
    let store = Arc::new(MemoryStore::new());
    let clock = fixture::clock();
    let (old, new) = ([1u8; 32], [2u8; 32]);
    let ring = |keys: &[(u32, [u8; 32])], active: u32| {
        let mut ring = KeyRing::new(SealingKey::new(KeyId::new(keys[0].0), keys[0].1));
        for (id, key) in &keys[1..] {
            ring.add(SealingKey::new(KeyId::new(*id), *key)).unwrap();
        }
        ring.set_active(KeyId::new(active)).unwrap();
        ring
    };
    let service =
        |keys: KeyRing| Service::new(Arc::clone(&store), clock.clone(), keys, fixture::rng(3));
    let (org, alice, _) = ids();

    let before = service(ring(&[(1, old)], 1));
    enable_fast(&before, &org).await;
    let session = sign_in(&before, &org, &alice).await;
    let enrollment = before
        .start_enrollment(&org, &alice, &session)
        .await
        .unwrap();
    let session = before
        .confirm_enrollment(&org, &alice, &session, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap()
        .session();

    // Key 2 becomes active: secrets sealed under key 1 still open.
    let both = ring(&[(1, old), (2, new)], 2);
    let during = service(both.clone());
    clock.advance(30);
    let _passed = during
        .verify_totp(&org, &alice, &session, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap();

    // Re-seal the record under key 2, with the same compare-and-swap as every other write.
    let loaded = store
        .load_customer(&org, &alice)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(
        loaded.value.sealed_secret().unwrap().key_id(),
        KeyId::new(1)
    );
    let ctx = mfa_core::machine::Context {
        org: &org,
        customer: &alice,
        now: UnixTime::from_secs(T0),
    };
    let resealed = loaded
        .value
        .reseal(&both, &ctx, &mut fixture::rng(4))
        .unwrap()
        .unwrap();
    assert_eq!(resealed.sealed_secret().unwrap().key_id(), KeyId::new(2));
    assert_eq!(
        resealed.reseal(&both, &ctx, &mut fixture::rng(5)).unwrap(),
        None,
        "already current"
    );
    let written = store
        .write_customer(&org, &alice, Some(loaded.version), &resealed, &[])
        .await
        .unwrap();
    assert!(matches!(written, mfa_core::store::Written::Stored(_)));

    // Key 1 can go: the new key alone opens her secret; the old key alone no longer does.
    clock.advance(30);
    let _passed = service(ring(&[(2, new)], 2))
        .verify_totp(&org, &alice, &session, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap();
    clock.advance(30);
    let stale = service(ring(&[(1, old)], 1))
        .verify_totp(&org, &alice, &session, &app_code(&enrollment.uri, &clock))
        .await;
    assert!(
        matches!(
            stale,
            Err(ServiceError::Fault(Fault::Seal(mfa_core::seal::SealError::UnknownKey(id)))) if id == KeyId::new(2)
        ),
        "a fault, not a refusal: {stale:?}"
    );
}

#[tokio::test]
async fn settings_out_of_range_are_refused_and_change_nothing() {
    let (mfa, _) = service();
    let (org, _, _) = ids();
    let bad: [fn(&mut Settings); 5] = [
        |s| s.issuer = "Acme: Billing".into(),
        |s| s.issuer = "  ".into(),
        |s| s.backup_code_count = 0,
        |s| s.enrollment_lifetime_secs = 0,
        |s| s.lockout.base_delay_secs = 0,
    ];
    for change in bad {
        let mut settings = Settings::default();
        change(&mut settings);
        assert!(matches!(
            mfa_error(
                mfa.update_settings(&org, settings, &Actor::new("admin").unwrap())
                    .await
            ),
            Refusal::InvalidSettings(_)
        ));
    }
    assert_eq!(
        mfa.org_policy(&org).await.unwrap(),
        mfa_core::OrgPolicy::default()
    );
    assert!(
        mfa.audit(
            &org,
            &AuditQuery {
                customer: None,
                before_seq: None,
                limit: 10
            }
        )
        .await
        .unwrap()
        .is_empty()
    );
}

#[tokio::test]
async fn no_secret_reaches_debug_output() {
    let (mfa, clock) = service();
    let (org, alice, _) = ids();
    enable_fast(&mfa, &org).await;
    let session = sign_in(&mfa, &org, &alice).await;
    let enrollment = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
    let secret = enrollment.uri.secret().to_base32().to_string();
    let session = mfa
        .confirm_enrollment(&org, &alice, &session, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap()
        .session();
    let issued = mfa
        .generate_backup_codes(&org, &alice, &session)
        .await
        .unwrap();
    let record = mfa
        .store()
        .load_customer(&org, &alice)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap()
        .value;
    for shown in [
        format!("{enrollment:?}"),
        format!("{record:?}"),
        format!("{issued:?}"),
        format!("{:?}", mfa.keys()),
    ] {
        assert!(!shown.contains(&secret[..8]), "{shown}");
        for code in &issued.codes {
            assert!(!shown.contains(&code.as_str()[5..9]), "{shown}");
        }
    }
    // The stored bytes hold neither the secret nor any backup code.
    let bytes = record.to_bytes();
    let raw = enrollment.uri.secret().as_bytes();
    assert!(!bytes.windows(raw.len()).any(|w| w == raw));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        issued
            .codes
            .iter()
            .all(|code| !text.contains(&code.as_str().replace('-', "")))
    );
}

#[tokio::test]
async fn refused_attempts_are_logged_without_rewriting_the_record() {
    let (mfa, clock) = service();
    let (org, alice, _) = ids();
    enable_fast(&mfa, &org).await;
    let session = sign_in(&mfa, &org, &alice).await;
    let enrollment = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
    let session = mfa
        .confirm_enrollment(&org, &alice, &session, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap()
        .session();
    clock.advance(30);
    let all = AuditQuery {
        customer: Some(alice.clone()),
        ..AuditQuery::default()
    };

    // Text that is not a code: refused, logged, not counted.
    assert!(matches!(
        mfa_error(mfa.verify_totp(&org, &alice, &session, "12ab56").await),
        Refusal::InvalidCode(_)
    ));
    assert_eq!(
        mfa_error(
            mfa.verify_backup_code(&org, &alice, &session, "not-a-code!")
                .await
        ),
        Refusal::InvalidBackupCode
    );
    let events = mfa.audit(&org, &all).await.unwrap();
    assert!(events[..2].iter().all(|e| matches!(
        e.event.kind,
        EventKind::AttemptRejected {
            reason: Rejection::Malformed,
            failures: 0,
            ..
        }
    )));
    assert_eq!(mfa.status(&org, &alice).await.unwrap().customer.failures, 0);

    // Locked out: every further attempt is logged, but the record (and its version) stays put.
    for _ in 0..5 {
        let _ = mfa.verify_totp(&org, &alice, &session, "000000").await;
    }
    let version = mfa
        .store()
        .load_customer(&org, &alice)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap()
        .version;
    let logged = mfa
        .audit(
            &org,
            &AuditQuery {
                limit: 1_000,
                ..all.clone()
            },
        )
        .await
        .unwrap()
        .len();
    for _ in 0..50 {
        assert!(matches!(
            mfa_error(mfa.verify_totp(&org, &alice, &session, "000000").await),
            Refusal::Locked { .. }
        ));
    }
    assert_eq!(
        mfa.store()
            .load_customer(&org, &alice)
            .await
            .unwrap()
            .unwrap()
            .decode()
            .unwrap()
            .version,
        version
    );
    let events = mfa
        .audit(
            &org,
            &AuditQuery {
                limit: 1_000,
                ..all
            },
        )
        .await
        .unwrap();
    // Each refusal is in the log: the first of the lockout as its own event, the repeats after it
    // either as their own events or counted into one (coalesced refusals); nothing else.
    let new = &events[..events.len() - logged];
    assert!((1..=50).contains(&new.len()), "{new:#?}");
    assert!(matches!(
        new.last().unwrap().event.kind,
        EventKind::AttemptRejected {
            reason: Rejection::Locked,
            failures: 5,
            ..
        }
    ));
    assert!(
        new.iter().all(|e| matches!(
            e.event.kind,
            EventKind::AttemptRejected {
                reason: Rejection::Locked,
                failures: 5,
                ..
            } | EventKind::RejectionsCoalesced {
                reason: Rejection::Locked,
                ..
            }
        )),
        "{new:#?}"
    );
}

/// Counts up from a start byte: a predictable "CSPRNG", so a test can choose the secret.
struct Counting(u8);

impl rand_core::TryRng for Counting {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for byte in dst {
            *byte = self.0;
            self.0 = self.0.wrapping_add(1);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Counting {}

/// Two steps can share a code (one pair in a million with 6 digits). When the earlier one was
/// used, the customer's fresh code for the later one is still accepted, once; it is not taken for
/// a replay of the used step.
#[tokio::test]
async fn a_fresh_code_equal_to_the_used_steps_code_is_accepted_once() {
    // The secret 0x01..=0x14 gives 093910 at both steps 59696920 and 59696921 (found by search).
    const USED: u64 = 59_696_920;
    let (mfa, clock) = fixture::service(MemoryStore::new(), USED * 30, 1);
    let (org, alice, _) = ids();
    enable_fast(&mfa, &org).await;
    let session = sign_in(&mfa, &org, &alice).await;
    // The service draws each operation's randomness from a generator seeded for it, so the secret
    // is chosen here: the pure machine starts the enrollment with the counting RNG, and its record
    // is stored as the service would store it.
    let policy = mfa.org_policy(&org).await.unwrap();
    let ctx = mfa_core::machine::Context {
        org: &org,
        customer: &alice,
        now: mfa_core::Clock::now(&clock),
    };
    let (pending, events, enrollment) = mfa_core::machine::CustomerRecord::default()
        .start_enrollment(&session, &policy, mfa.keys(), &ctx, &mut Counting(1))
        .into_parts();
    let written = mfa
        .store()
        .write_customer(&org, &alice, None, &pending.unwrap(), &events)
        .await
        .unwrap();
    assert!(matches!(written, mfa_core::store::Written::Stored(_)));
    let enrollment = enrollment.unwrap();
    assert_eq!(
        enrollment.uri.secret().as_bytes(),
        (1..=20).collect::<Vec<u8>>()
    );
    let totp = enrollment.uri.as_totp().unwrap();
    let code = |step: u64| {
        totp.generate_at_step(enrollment.uri.secret(), step)
            .to_string()
    };
    assert_eq!(code(USED), "093910");
    assert_eq!(code(USED + 1), "093910");

    // The enrollment's code uses step USED.
    let session = mfa
        .confirm_enrollment(&org, &alice, &session, &code(USED))
        .await
        .unwrap()
        .session();
    clock.advance(30);
    let passed = mfa
        .verify_totp(&org, &alice, &session, &code(USED + 1))
        .await
        .unwrap();
    assert_eq!(passed.passed.method(), PassedBy::Totp);
    assert_eq!(
        mfa_error(
            mfa.verify_totp(&org, &alice, &session, &code(USED + 1))
                .await
        ),
        Refusal::ReplayedCode
    );
    // Sent again, it is the code just accepted (though it also matches the older step USED): a
    // second submission, which does not count toward lockout.
    assert_eq!(mfa.status(&org, &alice).await.unwrap().customer.failures, 0);
    let log = mfa.audit(&org, &AuditQuery::default()).await.unwrap();
    assert!(
        log.iter().any(|e| matches!(
            e.event.kind,
            EventKind::TotpAccepted { step, offset: 0 } if step == USED + 1
        )),
        "accepted for its own step"
    );
}

/// A service shows its store, clock and key ids in `Debug`, never key material or secrets.
#[tokio::test]
async fn a_service_debugs_without_its_keys() {
    // A key of its own, so its bytes are known to look for.
    let keys = KeyRing::new(SealingKey::new(KeyId::new(7), [0xAB; 32]));
    let mfa = Service::new(MemoryStore::new(), fixture::clock(), keys, fixture::rng(1));
    let (org, alice, _) = ids();
    enable_fast(&mfa, &org).await;
    let session = sign_in(&mfa, &org, &alice).await;
    let enrollment = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
    let shown = format!("{mfa:?}");
    assert!(shown.starts_with("Service {"), "{shown}");
    assert!(shown.contains("KeyId(7)"), "{shown}");
    for hidden in [
        "ab, ".to_owned(),
        "171".to_owned(),
        "AB".to_owned(),
        enrollment.uri.secret().to_base32().to_string(),
    ] {
        assert!(!shown.contains(&hidden), "{hidden} in {shown}");
    }
}
