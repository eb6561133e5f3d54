//! Step-up: a sensitive action asks for a second factor fresh for its purpose; a customer gives a
//! fresh code without signing out, and that code is consumed like any other.

use mfa_core::audit::{EventKind, Factor};
use mfa_core::{
    Actor, CustomerId, MemoryStore, MfaSession, OrgMfa, Purpose, RECENT_FACTOR_SECS, Refusal,
    SessionCheck, StepUpCheck,
};
use mfa_store_tests::T0;
use mfa_store_tests::fixture::{self, Enrolled, acme, refusal};

type Mfa = mfa_core::Service<MemoryStore, mfa_core::ManualClock, rand_chacha::ChaCha20Rng>;

fn payment() -> Purpose {
    Purpose::new("payment_method").unwrap()
}

/// Alice configured (with backup codes), signed in again with a code a step later.
async fn signed_in() -> (Mfa, mfa_core::ManualClock, Enrolled, MfaSession) {
    fixture::alice_signed_in(MemoryStore::new(), 3).await
}

async fn check(mfa: &Mfa, who: &CustomerId, session: &MfaSession, purpose: Purpose) -> StepUpCheck {
    mfa.check_step_up(&acme(), who, session, purpose)
        .await
        .unwrap()
}

async fn kinds(mfa: &Mfa) -> Vec<EventKind> {
    fixture::audit(mfa.store())
        .await
        .into_iter()
        .map(|stored| stored.event.kind)
        .collect()
}

#[tokio::test]
async fn the_sign_in_code_is_fresh_for_every_purpose_until_the_organisations_age() {
    let (mfa, clock, alice, session) = signed_in().await;
    for purpose in [payment(), Purpose::BACKUP_CODES] {
        assert_eq!(
            check(&mfa, &alice.id, &session, purpose).await,
            StepUpCheck::Fresh
        );
    }
    clock.advance(RECENT_FACTOR_SECS);
    assert_eq!(
        check(&mfa, &alice.id, &session, payment()).await,
        StepUpCheck::Fresh
    );
    clock.advance(1);
    assert_eq!(
        check(&mfa, &alice.id, &session, payment()).await,
        StepUpCheck::Required {
            max_age_secs: RECENT_FACTOR_SECS
        }
    );
    // The session itself still lets the customer in: step-up is about sensitive actions only.
    assert!(
        mfa.check_session(&acme(), &alice.id, &session)
            .await
            .unwrap()
            .is_complete()
    );
}

#[tokio::test]
async fn a_step_up_is_fresh_for_its_purpose_only_and_is_logged() {
    let (mfa, clock, alice, session) = signed_in().await;
    clock.advance(RECENT_FACTOR_SECS + 30);
    let before = kinds(&mfa).await.len();
    let stepped = mfa
        .step_up_totp(
            &acme(),
            &alice.id,
            &session,
            payment(),
            &alice.code_now(&clock, 0),
        )
        .await
        .unwrap();
    let stepped = stepped.passed.session();
    assert_eq!(stepped.step_up().map(|s| s.purpose), Some(payment()));
    assert_eq!(
        check(&mfa, &alice.id, &stepped, payment()).await,
        StepUpCheck::Fresh
    );
    assert_eq!(
        check(&mfa, &alice.id, &stepped, Purpose::BACKUP_CODES).await,
        StepUpCheck::Required {
            max_age_secs: RECENT_FACTOR_SECS
        },
        "a step-up for the card does not make new backup codes"
    );
    // The old session is not changed by the step-up of another copy of it: only the answer is.
    assert!(matches!(
        check(&mfa, &alice.id, &session, payment()).await,
        StepUpCheck::Required { .. }
    ));
    let new: Vec<EventKind> = kinds(&mfa).await.split_off(before);
    assert!(matches!(new[0], EventKind::TotpAccepted { .. }), "{new:?}");
    assert_eq!(
        new[1],
        EventKind::StepUpPassed {
            purpose: payment(),
            factor: Factor::Totp
        }
    );
    assert_eq!(new.len(), 2, "{new:?}");
    clock.advance(RECENT_FACTOR_SECS + 1);
    assert!(matches!(
        check(&mfa, &alice.id, &stepped, payment()).await,
        StepUpCheck::Required { .. }
    ));
}

#[tokio::test]
async fn a_code_serves_once_across_sign_in_and_every_purpose() {
    let (mfa, clock, alice, session) = signed_in().await;
    // The code that signed in, again, for a step-up: a replay.
    assert_eq!(
        refusal(
            mfa.step_up_totp(
                &acme(),
                &alice.id,
                &session,
                payment(),
                &alice.code_now(&clock, 0)
            )
            .await
        ),
        Refusal::ReplayedCode
    );
    clock.advance(30);
    let code = alice.code_now(&clock, 0);
    let _ = mfa
        .step_up_totp(&acme(), &alice.id, &session, payment(), &code)
        .await
        .unwrap();
    assert_eq!(
        refusal(
            mfa.step_up_totp(&acme(), &alice.id, &session, Purpose::BACKUP_CODES, &code)
                .await
        ),
        Refusal::ReplayedCode
    );
    let fresh = mfa.login_step(&acme(), &alice.id).await.unwrap().session();
    assert_eq!(
        refusal(mfa.verify_totp(&acme(), &alice.id, &fresh, &code).await),
        Refusal::ReplayedCode
    );
    // A backup code is used up by a step-up as at sign-in.
    let backup = &alice.backup[0];
    let accepted = mfa
        .step_up_backup_code(&acme(), &alice.id, &session, payment(), backup)
        .await
        .unwrap();
    assert_eq!(
        accepted.passed.session().step_up().map(|s| s.purpose),
        Some(payment())
    );
    assert_eq!(
        refusal(
            mfa.step_up_backup_code(&acme(), &alice.id, &session, payment(), backup)
                .await
        ),
        Refusal::UsedBackupCode
    );
    assert_eq!(
        refusal(
            mfa.verify_backup_code(&acme(), &alice.id, &fresh, backup)
                .await
        ),
        Refusal::UsedBackupCode
    );
    assert!(kinds(&mfa).await.contains(&EventKind::StepUpPassed {
        purpose: payment(),
        factor: Factor::BackupCode
    }));
}

#[tokio::test]
async fn wrong_step_up_codes_count_toward_the_lockout() {
    let (mfa, clock, alice, session) = signed_in().await;
    let step = mfa_core::Clock::now(&clock).as_secs() / 30;
    let wrong = alice.wrong_code(step);
    let mut refusals = Vec::new();
    for _ in 0..mfa_core::machine::MAX_FREE_FAILURES + 1 {
        refusals.push(refusal(
            mfa.step_up_totp(&acme(), &alice.id, &session, payment(), &wrong)
                .await,
        ));
    }
    assert!(refusals.contains(&Refusal::WrongCode), "{refusals:?}");
    assert!(
        refusals.iter().any(|r| matches!(r, Refusal::Locked { .. })),
        "{refusals:?}"
    );
    // Locked out, a right code (the next step's, inside the window) is not even checked.
    assert!(matches!(
        refusal(
            mfa.step_up_totp(
                &acme(),
                &alice.id,
                &session,
                payment(),
                &alice.code_now(&clock, 1)
            )
            .await
        ),
        Refusal::Locked { .. }
    ));
}

#[tokio::test]
async fn new_backup_codes_need_a_factor_fresh_for_them() {
    let (mfa, clock, alice, session) = signed_in().await;
    clock.advance(RECENT_FACTOR_SECS + 1);
    assert_eq!(
        refusal(
            mfa.generate_backup_codes(&acme(), &alice.id, &session)
                .await
        ),
        Refusal::StepUpRequired {
            purpose: Purpose::BACKUP_CODES,
            max_age_secs: RECENT_FACTOR_SECS
        }
    );
    let for_card = mfa
        .step_up_totp(
            &acme(),
            &alice.id,
            &session,
            payment(),
            &alice.code_now(&clock, 0),
        )
        .await
        .unwrap()
        .passed
        .session();
    assert!(matches!(
        refusal(
            mfa.generate_backup_codes(&acme(), &alice.id, &for_card)
                .await
        ),
        Refusal::StepUpRequired { .. }
    ));
    clock.advance(30);
    let for_codes = mfa
        .step_up_totp(
            &acme(),
            &alice.id,
            &for_card,
            Purpose::BACKUP_CODES,
            &alice.code_now(&clock, 0),
        )
        .await
        .unwrap()
        .passed
        .session();
    let issued = mfa
        .generate_backup_codes(&acme(), &alice.id, &for_codes)
        .await
        .unwrap();
    assert_eq!(issued.codes.len(), usize::from(fixture::BACKUP_CODES));
    // A change of factor: the session that made them goes on, the others end.
    let kept = issued.passed.session();
    assert_eq!(
        check(&mfa, &alice.id, &kept, Purpose::BACKUP_CODES).await,
        StepUpCheck::Fresh
    );
    assert_eq!(
        check(&mfa, &alice.id, &for_card, payment()).await,
        StepUpCheck::Session(SessionCheck::Ended)
    );
}

#[tokio::test]
async fn the_organisation_sets_the_age() {
    let (mfa, clock, alice, session) = signed_in().await;
    let mut settings = mfa.org_policy(&acme()).await.unwrap().settings().clone();
    settings.step_up_max_age_secs = 60;
    mfa.update_settings(&acme(), settings.clone(), &Actor::new("admin").unwrap())
        .await
        .unwrap();
    clock.advance(61);
    assert_eq!(
        check(&mfa, &alice.id, &session, payment()).await,
        StepUpCheck::Required { max_age_secs: 60 }
    );
    assert_eq!(
        refusal(
            mfa.generate_backup_codes(&acme(), &alice.id, &session)
                .await
        ),
        Refusal::StepUpRequired {
            purpose: Purpose::BACKUP_CODES,
            max_age_secs: 60
        }
    );
    for bad in [0, 29, 86_401] {
        settings.step_up_max_age_secs = bad;
        assert!(
            matches!(
                refusal(
                    mfa.update_settings(&acme(), settings.clone(), &Actor::new("admin").unwrap())
                        .await
                ),
                Refusal::InvalidSettings(_)
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn sessions_that_cannot_step_up_say_why() {
    let (mfa, clock) = fixture::service(MemoryStore::new(), T0, 4);
    let bob = CustomerId::new("bob@acme.test").unwrap();
    // MFA off, never set up: no factor to ask for.
    let none = mfa.login_step(&acme(), &bob).await.unwrap().session();
    assert_eq!(
        check(&mfa, &bob, &none, payment()).await,
        StepUpCheck::NoFactor
    );
    assert_eq!(
        refusal(
            mfa.step_up_totp(&acme(), &bob, &none, payment(), "123456")
                .await
        ),
        Refusal::NotConfigured
    );
    // MFA on: the session may only enroll.
    fixture::switch_on(&mfa).await;
    let enroll = mfa.login_step(&acme(), &bob).await.unwrap().session();
    assert_eq!(
        check(&mfa, &bob, &enroll, payment()).await,
        StepUpCheck::Session(SessionCheck::Enroll)
    );
    // Configured, signed in with the password only: the code comes first. A step-up code given
    // there signs the session in too.
    let alice = Enrolled::new(&mfa, &clock, "alice@acme.test").await;
    clock.advance(30);
    let password_only = mfa.login_step(&acme(), &alice.id).await.unwrap().session();
    assert_eq!(
        check(&mfa, &alice.id, &password_only, payment()).await,
        StepUpCheck::Session(SessionCheck::Challenge)
    );
    let stepped = mfa
        .step_up_totp(
            &acme(),
            &alice.id,
            &password_only,
            payment(),
            &alice.code_now(&clock, 0),
        )
        .await
        .unwrap()
        .passed
        .session();
    assert!(
        mfa.check_session(&acme(), &alice.id, &stepped)
            .await
            .unwrap()
            .is_complete()
    );
    assert_eq!(
        check(&mfa, &alice.id, &stepped, payment()).await,
        StepUpCheck::Fresh
    );
    // Reset: every session is over, whatever it stepped up for.
    mfa.reset(&acme(), &alice.id, &Actor::new("ops").unwrap())
        .await
        .unwrap();
    assert_eq!(
        check(&mfa, &alice.id, &stepped, payment()).await,
        StepUpCheck::Session(SessionCheck::Ended)
    );
    assert_eq!(
        refusal(
            mfa.step_up_totp(&acme(), &alice.id, &stepped, payment(), "123456")
                .await
        ),
        Refusal::SessionEnded
    );
    let _ = OrgMfa::On;
}

#[test]
fn purposes_are_short_plain_names() {
    for good in [
        "payment_method",
        "backup_codes",
        "a",
        "x.y-z_0",
        &"a".repeat(32),
    ] {
        assert_eq!(Purpose::new(good).unwrap().as_str(), good);
    }
    for bad in [
        "",
        "Payment",
        "pay ment",
        "é",
        "a/b",
        &"a".repeat(33),
        "a\0",
    ] {
        assert!(Purpose::new(bad).is_err(), "{bad:?}");
    }
    assert_eq!(Purpose::BACKUP_CODES, Purpose::new("backup_codes").unwrap());
    assert_eq!(
        Purpose::PAYMENT_METHOD,
        Purpose::new("payment_method").unwrap()
    );
    assert_eq!(
        serde_json::to_string(&payment()).unwrap(),
        "\"payment_method\""
    );
    assert!(serde_json::from_str::<Purpose>("\"Pay\"").is_err());
}

#[test]
fn sessions_kept_before_step_ups_existed_still_read() {
    // A session as a host's store kept it (JSON) before this version.
    let old =
        r#"{"generation":7,"signed_in_at":1767225600,"passed":{"by":"totp","at":1767225630}}"#;
    let session: MfaSession = serde_json::from_str(old).unwrap();
    assert_eq!(session.generation(), 7);
    assert_eq!(session.step_up(), None);
    // Written again (with its step-up, none), it reads back the same, in JSON as in a format
    // without field names.
    let json = serde_json::to_string(&session).unwrap();
    assert_eq!(serde_json::from_str::<MfaSession>(&json).unwrap(), session);
    let bytes = postcard::to_allocvec(&session).unwrap();
    assert_eq!(postcard::from_bytes::<MfaSession>(&bytes).unwrap(), session);
}
