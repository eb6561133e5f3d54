//! A new phone without a support ticket: a configured customer proves the current factor (a
//! step-up), sets up a replacement authenticator while the old one keeps working, and the swap
//! happens in one write when the new one is confirmed. A replacement that expires changes nothing.

use mfa_core::{
    Actor, CustomerId, KeyId, KeyRing, MemoryStore, MfaSession, Purpose, RECENT_FACTOR_SECS,
    Refusal, Resealed, SealingKey, Service, SessionCheck, StateName, store::Store,
};
use mfa_store_tests::T0;
use mfa_store_tests::fixture::{self, Enrolled, SoftApp, acme, refusal};

type Mfa = Service<MemoryStore, mfa_core::ManualClock, rand_chacha::ChaCha20Rng>;

/// Alice configured (with backup codes), signed in again with a code a step later.
async fn signed_in() -> (Mfa, mfa_core::ManualClock, Enrolled, MfaSession) {
    fixture::alice_signed_in(MemoryStore::new(), 21).await
}

async fn kinds(mfa: &Mfa) -> Vec<&'static str> {
    fixture::audit(mfa.store())
        .await
        .iter()
        .map(|stored| stored.event.kind_name())
        .collect()
}

#[tokio::test]
async fn a_new_phone_takes_over_in_one_write_and_the_old_one_stops() {
    let (mfa, clock, alice, session) = signed_in().await;
    // Another session of alice's (a thief's, on the old phone) signed in too.
    clock.advance(30);
    let other = mfa.login_step(&acme(), &alice.id).await.unwrap().session();
    let other = mfa
        .verify_totp(&acme(), &alice.id, &other, &alice.code_now(&clock, 0))
        .await
        .unwrap()
        .passed
        .session();

    let started = mfa
        .start_replacement(&acme(), &alice.id, &session)
        .await
        .unwrap();
    let new_phone = SoftApp::scan(&started.uri);
    assert_eq!(started.uri.account(), alice.id.as_str());
    // While it is pending, the old phone keeps signing in; the new one does not yet.
    clock.advance(30);
    let probe = mfa.login_step(&acme(), &alice.id).await.unwrap().session();
    assert_eq!(
        refusal(
            mfa.verify_totp(&acme(), &alice.id, &probe, &new_phone.code_now(&clock, 0))
                .await
        ),
        Refusal::WrongCode
    );
    let _ = mfa
        .verify_totp(&acme(), &alice.id, &probe, &alice.code_now(&clock, 0))
        .await
        .unwrap();
    let status = mfa.status(&acme(), &alice.id).await.unwrap().customer;
    assert_eq!(status.state, StateName::Configured);

    // Confirmed with the new phone's code: the swap.
    clock.advance(30);
    let passed = mfa
        .confirm_replacement(&acme(), &alice.id, &session, &new_phone.code_now(&clock, 0))
        .await
        .unwrap();
    let kept = passed.session();
    assert!(
        mfa.check_session(&acme(), &alice.id, &kept)
            .await
            .unwrap()
            .is_complete()
    );
    assert_eq!(
        mfa.check_session(&acme(), &alice.id, &other).await.unwrap(),
        SessionCheck::Ended,
        "every other session ends"
    );
    // The old phone no longer signs in; the new one does; the backup codes still do.
    clock.advance(30);
    let next = mfa.login_step(&acme(), &alice.id).await.unwrap().session();
    assert_eq!(
        refusal(
            mfa.verify_totp(&acme(), &alice.id, &next, &alice.code_now(&clock, 0))
                .await
        ),
        Refusal::WrongCode
    );
    let _ = mfa
        .verify_totp(&acme(), &alice.id, &next, &new_phone.code_now(&clock, 0))
        .await
        .unwrap();
    let again = mfa.login_step(&acme(), &alice.id).await.unwrap().session();
    let accepted = mfa
        .verify_backup_code(&acme(), &alice.id, &again, &alice.backup[0])
        .await
        .unwrap();
    assert_eq!(
        accepted.remaining,
        u32::from(fixture::BACKUP_CODES) - 1,
        "the backup codes survive the new phone"
    );
    // The confirming code is used: confirming again finds nothing pending.
    assert_eq!(
        refusal(
            mfa.confirm_replacement(&acme(), &alice.id, &kept, &new_phone.code_now(&clock, 0))
                .await
        ),
        Refusal::NotPending
    );
    let log = kinds(&mfa).await;
    assert!(
        log.contains(&"replacement_started") && log.contains(&"authenticator_replaced"),
        "{log:?}"
    );
}

#[tokio::test]
async fn starting_needs_a_fresh_factor_for_it() {
    let (mfa, clock, alice, session) = signed_in().await;
    clock.advance(RECENT_FACTOR_SECS + 1);
    assert_eq!(
        refusal(mfa.start_replacement(&acme(), &alice.id, &session).await),
        Refusal::StepUpRequired {
            purpose: Purpose::REPLACE_AUTHENTICATOR,
            max_age_secs: RECENT_FACTOR_SECS
        }
    );
    // A step-up for another purpose does not do; one for this does, even with a backup code
    // (the old phone is gone).
    let for_card = mfa
        .step_up_totp(
            &acme(),
            &alice.id,
            &session,
            Purpose::PAYMENT_METHOD,
            &alice.code_now(&clock, 0),
        )
        .await
        .unwrap()
        .passed
        .session();
    assert!(matches!(
        refusal(mfa.start_replacement(&acme(), &alice.id, &for_card).await),
        Refusal::StepUpRequired { .. }
    ));
    let stepped = mfa
        .step_up_backup_code(
            &acme(),
            &alice.id,
            &for_card,
            Purpose::REPLACE_AUTHENTICATOR,
            &alice.backup[0],
        )
        .await
        .unwrap()
        .passed
        .session();
    let _ = mfa
        .start_replacement(&acme(), &alice.id, &stepped)
        .await
        .unwrap();
    // A password-only session may neither start one nor confirm one another session started,
    // even with the new app's code.
    let started = mfa
        .start_replacement(&acme(), &alice.id, &stepped)
        .await
        .unwrap();
    let password_only = mfa.login_step(&acme(), &alice.id).await.unwrap().session();
    assert!(matches!(
        refusal(
            mfa.confirm_replacement(
                &acme(),
                &alice.id,
                &password_only,
                &SoftApp::scan(&started.uri).code_now(&clock, 0)
            )
            .await
        ),
        Refusal::SecondFactorRequired { .. }
    ));
    let password_only = mfa.login_step(&acme(), &alice.id).await.unwrap().session();
    assert!(matches!(
        refusal(
            mfa.start_replacement(&acme(), &alice.id, &password_only)
                .await
        ),
        Refusal::SecondFactorRequired { .. }
    ));
    // Nor a customer without MFA.
    let bob = CustomerId::new("bob@acme.test").unwrap();
    let bobs = mfa.login_step(&acme(), &bob).await.unwrap().session();
    assert!(matches!(
        refusal(mfa.start_replacement(&acme(), &bob, &bobs).await),
        Refusal::SecondFactorRequired { .. } | Refusal::NotConfigured
    ));
}

#[tokio::test]
async fn a_replacement_that_expires_or_is_refused_changes_nothing() {
    let (mfa, clock, alice, session) = signed_in().await;
    let first = SoftApp::scan(
        &mfa.start_replacement(&acme(), &alice.id, &session)
            .await
            .unwrap()
            .uri,
    );
    // A second start replaces the pending secret: the first one's code confirms nothing.
    let second = SoftApp::scan(
        &mfa.start_replacement(&acme(), &alice.id, &session)
            .await
            .unwrap()
            .uri,
    );
    let before = generation(&mfa, &alice.id).await;
    assert_eq!(
        refusal(
            mfa.confirm_replacement(&acme(), &alice.id, &session, &first.code_now(&clock, 0))
                .await
        ),
        Refusal::WrongCode
    );
    assert_eq!(
        generation(&mfa, &alice.id).await,
        before,
        "a wrong code changes no factor"
    );
    // Expired: refused, and the old phone still works.
    clock.advance(600);
    assert_eq!(
        refusal(
            mfa.confirm_replacement(&acme(), &alice.id, &session, &second.code_now(&clock, 0))
                .await
        ),
        Refusal::EnrollmentExpired
    );
    let probe = mfa.login_step(&acme(), &alice.id).await.unwrap().session();
    let _ = mfa
        .verify_totp(&acme(), &alice.id, &probe, &alice.code_now(&clock, 0))
        .await
        .unwrap();
    assert!(!kinds(&mfa).await.contains(&"authenticator_replaced"));
    // An administrator's reset takes the pending replacement with everything else.
    let fresh = mfa
        .step_up_totp(
            &acme(),
            &alice.id,
            &session,
            Purpose::REPLACE_AUTHENTICATOR,
            &alice.code_now(&clock, 1),
        )
        .await
        .unwrap()
        .passed
        .session();
    let third = SoftApp::scan(
        &mfa.start_replacement(&acme(), &alice.id, &fresh)
            .await
            .unwrap()
            .uri,
    );
    mfa.reset(&acme(), &alice.id, &Actor::new("ops").unwrap())
        .await
        .unwrap();
    assert_eq!(
        refusal(
            mfa.confirm_replacement(&acme(), &alice.id, &fresh, &third.code_now(&clock, 0))
                .await
        ),
        Refusal::SessionEnded
    );
}

/// Key rotation reseals a replacement under way with the secret it replaces: once the old key is
/// gone, the new phone still confirms.
#[tokio::test]
async fn key_rotation_reseals_the_replacement_too() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let (mfa, clock) = fixture::service(std::sync::Arc::clone(&store), T0, 21);
    fixture::switch_on(&mfa).await;
    let alice = Enrolled::new(&mfa, &clock, "alice@acme.test").await;
    let session = alice.session;
    let new_phone = SoftApp::scan(
        &mfa.start_replacement(&acme(), &alice.id, &session)
            .await
            .unwrap()
            .uri,
    );
    let mut rotated = KeyRing::new(SealingKey::new(KeyId::new(2), [4; 32]));
    rotated.add(fixture::key()).unwrap();
    let rotating = Service::new(
        std::sync::Arc::clone(&store),
        clock.clone(),
        rotated,
        fixture::rng(3),
    );
    assert_eq!(
        rotating.reseal(&acme(), &alice.id).await.unwrap(),
        Resealed::Moved {
            from: KeyId::new(1),
            to: KeyId::new(2)
        }
    );
    // The old key gone: both secrets open with the new one alone.
    let new_only = Service::new(
        store,
        clock.clone(),
        KeyRing::new(SealingKey::new(KeyId::new(2), [4; 32])),
        fixture::rng(4),
    );
    clock.advance(30);
    let _ = new_only
        .confirm_replacement(&acme(), &alice.id, &session, &new_phone.code_now(&clock, 0))
        .await
        .unwrap();
    let probe = new_only
        .login_step(&acme(), &alice.id)
        .await
        .unwrap()
        .session();
    clock.advance(30);
    let _ = new_only
        .verify_totp(&acme(), &alice.id, &probe, &new_phone.code_now(&clock, 0))
        .await
        .unwrap();
}

/// The customer's factor generation as stored.
async fn generation(mfa: &Mfa, who: &CustomerId) -> u64 {
    mfa.store()
        .load_customer(&acme(), who)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap()
        .value
        .generation()
}
