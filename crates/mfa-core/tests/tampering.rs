//! Someone who can write the database copies one customer's record onto another's: the secret is
//! sealed to its owner and does not open, and the backup codes are hashed for their owner and
//! verify nothing there (they used to: a set copied from an account whose codes the attacker knows
//! signed in as the victim).

use mfa_core::{Actor, CustomerId, MemoryStore, OrgId, OrgMfa, Refusal, ServiceError, Store};
use mfa_store_tests::{
    T0,
    fixture::{self, SoftApp},
};

#[tokio::test]
async fn backup_codes_copied_onto_another_record_verify_nothing() {
    let (mfa, clock) = fixture::service(MemoryStore::new(), T0, 2);
    let org = OrgId::new("acme").unwrap();
    let (mallory, victim) = (
        CustomerId::new("mallory@acme.test").unwrap(),
        CustomerId::new("victim@acme.test").unwrap(),
    );
    mfa.update_settings(
        &org,
        fixture::fast_settings(),
        &Actor::new("admin").unwrap(),
    )
    .await
    .unwrap();
    mfa.set_org_mfa(&org, OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    // Both set MFA up; the attacker makes backup codes for their own account.
    let mut codes = Vec::new();
    for customer in [&mallory, &victim] {
        let session = mfa.login_step(&org, customer).await.unwrap().session();
        let enrollment = mfa
            .start_enrollment(&org, customer, &session)
            .await
            .unwrap();
        let code = SoftApp::scan(&enrollment.uri).code_now(&clock, 0);
        let passed = mfa
            .confirm_enrollment(&org, customer, &session, &code)
            .await
            .unwrap();
        codes.push(
            mfa.generate_backup_codes(&org, customer, &passed.session())
                .await
                .unwrap()
                .codes,
        );
    }
    // The attacker's record, written over the victim's.
    let stolen = mfa
        .store()
        .load_customer(&org, &mallory)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap()
        .value;
    let version = mfa
        .store()
        .load_customer(&org, &victim)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap()
        .version;
    let written = mfa
        .store()
        .write_customer(&org, &victim, Some(version), &stolen, &[])
        .await
        .unwrap();
    assert!(matches!(written, mfa_core::store::Written::Stored(_)));
    // With the victim's password and the attacker's own backup codes: nothing passes.
    let session = mfa.login_step(&org, &victim).await.unwrap().session();
    for code in &codes[0] {
        assert!(
            matches!(
                mfa.verify_backup_code(&org, &victim, &session, code.as_str())
                    .await,
                Err(ServiceError::Refused(
                    Refusal::WrongCode | Refusal::Locked { .. }
                ))
            ),
            "a copied set must not verify"
        );
    }
    // On the attacker's own record the same codes still work.
    let own = mfa.login_step(&org, &mallory).await.unwrap().session();
    let accepted = mfa
        .verify_backup_code(&org, &mallory, &own, codes[0][0].as_str())
        .await
        .unwrap();
    assert_eq!(accepted.remaining, 4);
}
