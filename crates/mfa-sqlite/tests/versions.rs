//! Versions start at 1, grow by one per write, and are never reused for a key, even after its row
//! is deleted by hand; the indexed columns follow the record.

use mfa_core::{
    Actor, CustomerId, KeyId, KeyRing, OrgId, OrgMfa, SealingKey, Service, Store,
    machine::CustomerRecord,
    store::{Version, Written},
};
use mfa_sqlite::SqliteStore;
use mfa_store_tests::TempDb;
use mfa_store_tests::fixture;
use rusqlite::Connection;

#[tokio::test]
async fn a_row_deleted_by_hand_never_gives_its_versions_again() {
    let db = TempDb::new("versions");
    let store = SqliteStore::open(db.path()).await.unwrap();
    // An operator deletes the rows with the sqlite3 shell while the store is open.
    let operator = Connection::open(db.path()).unwrap();
    mfa_store_tests::a_row_deleted_by_hand_never_gives_its_versions_again(store, async || {
        operator
            .execute_batch("DELETE FROM customers; DELETE FROM orgs;")
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn versions_beyond_what_sqlite_holds_are_conflicts() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let (acme, alice) = (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice").unwrap(),
    );
    let record = CustomerRecord::default();
    let _ = store
        .write_customer(&acme, &alice, None, &record, &[])
        .await
        .unwrap();
    for expected in [u64::MAX, 1 << 63, i64::MAX as u64] {
        assert_eq!(
            store
                .write_customer(&acme, &alice, Some(Version(expected)), &record, &[])
                .await
                .unwrap(),
            Written::Conflict
        );
    }
}

#[tokio::test]
async fn state_and_key_id_columns_follow_the_record() {
    let db = TempDb::new("columns");
    let store = SqliteStore::open(db.path()).await.unwrap();
    // A key id of its own, to find in the column.
    let keys = KeyRing::new(SealingKey::new(KeyId::new(42), [3; 32]));
    let clock = fixture::clock();
    let mfa = Service::new(store, clock.clone(), keys, fixture::rng(5));
    let (acme, alice) = (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice").unwrap(),
    );
    mfa.set_org_mfa(&acme, OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();

    let row = || {
        Connection::open(db.path())
            .unwrap()
            .query_row(
                "SELECT state, sealing_key_id FROM customers WHERE org = 'acme' AND customer = 'alice'",
                [],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?)),
            )
            .unwrap()
    };
    let session = mfa.login_step(&acme, &alice).await.unwrap().session();
    let enrollment = mfa.start_enrollment(&acme, &alice, &session).await.unwrap();
    assert_eq!(row(), ("pending".to_owned(), Some(42)));
    let totp = enrollment.uri.as_totp().unwrap();
    let code = totp
        .generate(enrollment.uri.secret(), mfa_core::Clock::now(&clock))
        .unwrap()
        .to_string();
    let _ = mfa
        .confirm_enrollment(&acme, &alice, &session, &code)
        .await
        .unwrap();
    assert_eq!(row(), ("configured".to_owned(), Some(42)));
    mfa.reset(&acme, &alice, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    assert_eq!(row(), ("unconfigured".to_owned(), None));

    let kinds: Vec<String> = Connection::open(db.path())
        .unwrap()
        .prepare("SELECT kind FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        kinds,
        [
            "org_enabled",
            "enrollment_started",
            "enrollment_confirmed",
            "reset"
        ]
    );
}
