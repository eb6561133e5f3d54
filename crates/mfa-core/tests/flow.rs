//! The whole story through the public service API on the in-memory store, with a manual clock: the
//! DESIGN.md login table, enrollment, replay, backup codes, sticky-after-disable, reset and lockout.

use mfa_core::{
    AuditQuery, BackupHashParams, CustomerId, EventKind, KeyId, KeyRing, LoginStep, ManualClock,
    MemoryStore, MfaError, OrgId, PassedBy, Rejection, SealingKey, Service, ServiceError, Settings,
    StateName, UnixTime,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type Mfa = Service<MemoryStore, ManualClock, ChaCha20Rng>;

const T0: u64 = 1_767_225_600; // 2026-01-01

fn service() -> (Mfa, ManualClock) {
    let clock = ManualClock::new(UnixTime::from_secs(T0));
    let mut seed = ChaCha20Rng::seed_from_u64(7);
    let keys = KeyRing::new(SealingKey::generate(KeyId::new(1), &mut seed));
    (
        Service::new(
            MemoryStore::new(),
            clock.clone(),
            keys,
            ChaCha20Rng::seed_from_u64(42),
        ),
        clock,
    )
}

fn ids() -> (OrgId, CustomerId, CustomerId) {
    (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice@acme.test").unwrap(),
        CustomerId::new("bob@acme.test").unwrap(),
    )
}

/// Fast backup-code hashing for tests; production keeps the default.
async fn enable_fast(mfa: &Mfa, org: &OrgId) {
    let mut settings = Settings::default();
    settings.backup_hash = BackupHashParams::danger_insecure_fast();
    settings.issuer = "Acme Billing".into();
    mfa.update_settings(org, settings, "admin@acme.test")
        .await
        .unwrap();
    mfa.set_org_enabled(org, true, "admin@acme.test")
        .await
        .unwrap();
}

fn mfa_error<E: std::error::Error>(
    result: Result<impl std::fmt::Debug, ServiceError<E>>,
) -> MfaError {
    match result {
        Err(ServiceError::Mfa(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The code the customer's app shows now.
fn app_code(uri: &mfa_core::KeyUri, clock: &ManualClock) -> String {
    uri.as_totp()
        .unwrap()
        .generate(uri.secret(), mfa_core::Clock::now(clock))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_whole_story() {
    let (mfa, clock) = service();
    let (org, alice, bob) = ids();

    // MFA off, nothing configured: no MFA.
    assert!(
        matches!(mfa.login_step(&org, &alice).await.unwrap(), LoginStep::Done(p) if p.method() == PassedBy::NotRequired)
    );
    assert_eq!(
        mfa_error(mfa.start_enrollment(&org, &alice).await),
        MfaError::MfaDisabled
    );

    // MFA on: enrollment is forced.
    enable_fast(&mfa, &org).await;
    assert_eq!(
        mfa.login_step(&org, &alice).await.unwrap(),
        LoginStep::Enroll
    );
    let first = mfa.start_enrollment(&org, &alice).await.unwrap();
    let enrollment = mfa.start_enrollment(&org, &alice).await.unwrap();
    assert_ne!(
        first.uri.secret(),
        enrollment.uri.secret(),
        "a restart issues a fresh secret"
    );
    assert_eq!(enrollment.uri.issuer(), Some("Acme Billing"));
    assert_eq!(
        mfa.login_step(&org, &alice).await.unwrap(),
        LoginStep::Enroll,
        "pending is not configured"
    );

    // The first secret no longer confirms; the current one does, and its code is then used up.
    let stale = app_code(&first.uri, &clock);
    assert_eq!(
        mfa_error(mfa.confirm_enrollment(&org, &alice, &stale).await),
        MfaError::WrongCode
    );
    let code = app_code(&enrollment.uri, &clock);
    let passed = mfa.confirm_enrollment(&org, &alice, &code).await.unwrap();
    assert_eq!(passed.method(), PassedBy::Enrollment);
    assert_eq!(
        mfa.login_step(&org, &alice).await.unwrap(),
        LoginStep::Challenge
    );
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, &code).await),
        MfaError::ReplayedCode
    );

    // The next step's code signs in once.
    clock.advance(30);
    let code = app_code(&enrollment.uri, &clock);
    assert_eq!(
        mfa.verify_totp(&org, &alice, &code).await.unwrap().method(),
        PassedBy::Totp
    );
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, &code).await),
        MfaError::ReplayedCode
    );
    // The older code of the confirming step, still inside the window, is refused too.
    let older = enrollment
        .uri
        .as_totp()
        .unwrap()
        .generate_at_step(enrollment.uri.secret(), T0 / 30)
        .to_string();
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, &older).await),
        MfaError::ReplayedCode
    );

    // Backup codes: each works once; a new set voids the old one.
    let codes = mfa.generate_backup_codes(&org, &alice).await.unwrap();
    assert_eq!(codes.len(), 5);
    let accepted = mfa
        .verify_backup_code(&org, &alice, &codes[0].as_str().to_lowercase())
        .await
        .unwrap();
    assert_eq!(
        (accepted.remaining, accepted.passed.method()),
        (4, PassedBy::BackupCode)
    );
    assert_eq!(
        mfa_error(
            mfa.verify_backup_code(&org, &alice, codes[0].as_str())
                .await
        ),
        MfaError::UsedBackupCode
    );
    let fresh = mfa.generate_backup_codes(&org, &alice).await.unwrap();
    assert_eq!(
        mfa_error(
            mfa.verify_backup_code(&org, &alice, codes[1].as_str())
                .await
        ),
        MfaError::WrongCode
    );
    assert_eq!(
        mfa.verify_backup_code(&org, &alice, fresh[4].as_str())
            .await
            .unwrap()
            .remaining,
        4
    );

    // MFA off: Alice (configured) is still challenged; Bob (never configured) is not.
    mfa.set_org_enabled(&org, false, "admin@acme.test")
        .await
        .unwrap();
    assert_eq!(
        mfa.login_step(&org, &alice).await.unwrap(),
        LoginStep::Challenge
    );
    assert!(matches!(
        mfa.login_step(&org, &bob).await.unwrap(),
        LoginStep::Done(_)
    ));

    // Admin reset: Alice is unconfigured; with MFA back on she enrolls again.
    mfa.reset(&org, &alice, "admin@acme.test").await.unwrap();
    assert!(matches!(
        mfa.login_step(&org, &alice).await.unwrap(),
        LoginStep::Done(_)
    ));
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, "123456").await),
        MfaError::NotConfigured
    );
    mfa.set_org_enabled(&org, true, "admin@acme.test")
        .await
        .unwrap();
    assert_eq!(
        mfa.login_step(&org, &alice).await.unwrap(),
        LoginStep::Enroll
    );

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
    assert!(events.iter().any(|e| e.event.kind
        == EventKind::AttemptRejected {
            factor: mfa_core::Factor::Totp,
            reason: Rejection::ReplayedCode,
            failures: 1
        }));
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
    let enrollment = mfa.start_enrollment(&org, &alice).await.unwrap();
    let _passed = mfa
        .confirm_enrollment(&org, &alice, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap();
    clock.advance(30);

    for _ in 0..4 {
        assert_eq!(
            mfa_error(mfa.verify_totp(&org, &alice, "000000").await),
            MfaError::WrongCode
        );
    }
    // The fifth failure locks for 30 s; even the right code is then refused unchecked.
    assert_eq!(
        mfa_error(mfa.verify_backup_code(&org, &alice, "AAAA-BBBB-CCCC").await),
        MfaError::WrongCode
    );
    let right = app_code(&enrollment.uri, &clock);
    let until = UnixTime::from_secs(T0 + 30 + 30);
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, &right).await),
        MfaError::Locked { retry_at: until }
    );
    assert_eq!(
        mfa.status(&org, &alice).await.unwrap().0.locked_until,
        Some(until)
    );

    // After it, one more failure locks for 60 s.
    clock.set(until);
    assert_eq!(
        mfa_error(mfa.verify_totp(&org, &alice, "000000").await),
        MfaError::WrongCode
    );
    assert_eq!(
        mfa.status(&org, &alice).await.unwrap().0.locked_until,
        Some(UnixTime::from_secs(until.as_secs() + 60))
    );

    // Success clears the count.
    clock.advance(60);
    let _passed = mfa
        .verify_totp(&org, &alice, &app_code(&enrollment.uri, &clock))
        .await
        .unwrap();
    let (status, enabled) = mfa.status(&org, &alice).await.unwrap();
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
    let enrollment = mfa.start_enrollment(&org, &alice).await.unwrap();
    assert_eq!(enrollment.expires_at, UnixTime::from_secs(T0 + 600));
    clock.set(enrollment.expires_at);
    let code = app_code(&enrollment.uri, &clock);
    assert_eq!(
        mfa_error(mfa.confirm_enrollment(&org, &alice, &code).await),
        MfaError::EnrollmentExpired
    );
    // Starting again works.
    let again = mfa.start_enrollment(&org, &alice).await.unwrap();
    let _passed = mfa
        .confirm_enrollment(&org, &alice, &app_code(&again.uri, &clock))
        .await
        .unwrap();
}
