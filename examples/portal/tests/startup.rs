//! The sealing keys at start-up, through the library as `main` uses it: a key file is created only
//! for a database that seals nothing yet, and a key that does not open what its key id sealed (or a
//! key id not given at all) stops the start, named, instead of failing every customer who set up
//! MFA. `tests/binary.rs` runs the same through the `portal` command.

mod common;

use std::path::{Path, PathBuf};

use common::{ALICE, Cleanup, TestPortal};
use mfa_core::{CustomerId, KeyId, KeyRing, SealingKey, Store, store::Written};
use mfa_sqlite::SqliteStore;
use portal::accounts::Accounts;
use portal::keys::{self, KeyError, KeySource};
use portal::{Portal, StartError};
use serde_json::json;

fn ring(id: u32, byte: u8) -> KeyRing {
    KeyRing::new(SealingKey::new(KeyId::new(id), [byte; 32]))
}

/// A portal sealing under `ring(1, 1)` in which Alice started an enrollment (her secret is sealed),
/// and its directory.
async fn sealed() -> (TestPortal<SqliteStore>, PathBuf) {
    let t = common::sqlite_with_keys(common::config(), ring(1, 1)).await;
    let _admin = t.admin_switches_mfa_on().await;
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "enroll");
    alice
        .post("/api/mfa/enrollment", &json!({}))
        .await
        .expect(201, None);
    let dir = match &t.cleanup {
        Cleanup::Dir(dir) => dir.path().to_path_buf(),
        Cleanup::Schemas { .. } => unreachable!("a SQLite portal"),
    };
    (t, dir)
}

/// `Portal::start` over the database in `dir` again, with `keys`.
async fn restart(dir: &Path, keys: KeyRing) -> Result<(), StartError> {
    let path = dir.join("portal.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let accounts = Accounts::sqlite(&path).await.unwrap();
    let clock = mfa_store_tests::fixture::clock();
    Portal::start(store, accounts, clock, keys, common::config())
        .await
        .map(drop)
}

#[tokio::test]
async fn no_key_file_is_made_up_for_a_database_that_seals_secrets() {
    let (t, dir) = sealed().await;
    let store = t.portal.service().store();
    let key_file = dir.join("portal.key");
    assert!(keys::read(None, &key_file).unwrap().is_none());
    let error = keys::load_or_create(None, &key_file, store)
        .await
        .unwrap_err();
    assert!(matches!(&error, KeyError::Missing { sealed, .. } if sealed == &[(KeyId::new(1), 1)]));
    let text = error.to_string();
    assert!(text.contains(&key_file.display().to_string()), "{text}");
    assert!(
        text.contains("1 sealed secret (1 under key id 1)"),
        "{text}"
    );
    assert!(!key_file.exists(), "no key file was created");
    // A key found (the environment's, an existing file's) is used as it is.
    let (found, source) =
        keys::load_or_create(Some((ring(1, 1), KeySource::Env)), &key_file, store)
            .await
            .unwrap();
    assert_eq!((found.active_id(), source), (KeyId::new(1), KeySource::Env));
    assert!(!key_file.exists());
}

#[tokio::test]
async fn an_empty_database_gets_a_new_key_file() {
    let t = common::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("portal.key");
    let (created, source) = keys::load_or_create(None, &key_file, t.portal.service().store())
        .await
        .unwrap();
    assert_eq!(source, KeySource::Created(key_file.clone()));
    assert_eq!(created.active_id(), keys::KEY_ID);
    let (read, source) = keys::read(None, &key_file).unwrap().unwrap();
    assert_eq!(source, KeySource::File(key_file));
    assert_eq!(read.active_id(), keys::KEY_ID);
}

#[tokio::test]
async fn a_wrong_key_or_a_missing_key_id_stops_the_start() {
    let (t, dir) = sealed().await;
    let store = t.portal.service().store();
    keys::check(&ring(1, 1), store).await.unwrap();
    // Another key under id 1 (a fresh key file, another environment's key): named.
    let error = keys::check(&ring(1, 2), store).await.unwrap_err();
    assert!(
        matches!(&error, KeyError::WrongKey { id, customer, .. }
            if *id == KeyId::new(1) && customer.as_str() == ALICE),
        "{error:?}"
    );
    assert!(error.to_string().contains("key id 1"), "{error}");
    // A new key without the old one as a previous key: the old id is named.
    let error = keys::check(&ring(2, 2), store).await.unwrap_err();
    assert!(
        matches!(error, KeyError::NotLoaded { id, count: 1 } if id == KeyId::new(1)),
        "{error:?}"
    );
    // During a rotation: the new key with the right previous key passes, a wrong previous one not.
    let mut rotating = ring(2, 2);
    rotating
        .add(SealingKey::new(KeyId::new(1), [1; 32]))
        .unwrap();
    keys::check(&rotating, store).await.unwrap();
    let mut rotating = ring(2, 2);
    rotating
        .add(SealingKey::new(KeyId::new(1), [3; 32]))
        .unwrap();
    assert!(matches!(
        keys::check(&rotating, store).await,
        Err(KeyError::WrongKey { id, .. }) if id == KeyId::new(1)
    ));

    // And the portal itself: refused with the wrong key, started with the right one.
    let error = restart(&dir, ring(1, 2)).await.unwrap_err();
    assert!(
        matches!(error, StartError::Keys(KeyError::WrongKey { .. })),
        "{error:?}"
    );
    // The start names its step; its cause, the key id.
    let cause = std::error::Error::source(&error).expect("the key error");
    assert!(cause.to_string().contains("key id 1"), "{cause}");
    restart(&dir, ring(1, 1)).await.unwrap();
}

/// Alice's stored record written again under each of `names` (all listed before hers): records
/// that hold her sealed secret, which opens only for her.
async fn copies_of_alice(t: &TestPortal<SqliteStore>, names: &[&str]) {
    let store = t.portal.service().store();
    let org = t.portal.config().org.clone();
    let alice = store
        .load_customer(&org, &CustomerId::new(ALICE).unwrap())
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap();
    for name in names {
        let written = store
            .write_customer(
                &org,
                &CustomerId::new(*name).unwrap(),
                None,
                &alice.value,
                &[],
            )
            .await
            .unwrap();
        assert!(matches!(written, Written::Stored(_)));
    }
}

#[tokio::test]
async fn one_damaged_record_does_not_stop_the_start() {
    let (t, _dir) = sealed().await;
    let store = t.portal.service().store();
    copies_of_alice(&t, &["aaron@acme.test"]).await;
    // The right key opens Alice's: the start goes on. A wrong one opens neither, and the error
    // names the first tried.
    keys::check(&ring(1, 1), store).await.unwrap();
    let error = keys::check(&ring(1, 2), store).await.unwrap_err();
    assert!(
        matches!(&error, KeyError::WrongKey { customer, .. } if customer.as_str() == "aaron@acme.test"),
        "{error:?}"
    );
}

/// Records that cannot be read at all (the first three listed under their key id) are named in
/// the log and passed over: the portal starts, and the record after them still tells a wrong key.
#[tokio::test]
async fn unreadable_records_do_not_stop_the_start_nor_hide_a_wrong_key() {
    let (t, dir) = sealed().await;
    // Listed before alice@acme.test.
    let damaged = ["a1@acme.test", "a2@acme.test", "aaron@acme.test"];
    copies_of_alice(&t, &damaged).await;
    let db = rusqlite::Connection::open(dir.join("portal.db")).unwrap();
    db.execute(
        "UPDATE customers SET record = x'02FFFFFF' WHERE customer <> 'alice@acme.test'",
        [],
    )
    .unwrap();
    let logs = mfa_store_tests::Logs::capture();
    restart(&dir, ring(1, 1)).await.unwrap();
    for name in damaged {
        assert_eq!(
            logs.errors_naming(&[name, "cannot be read"]),
            1,
            "{}",
            logs.text()
        );
    }
    let refused = restart(&dir, ring(1, 2)).await;
    assert!(
        matches!(&refused, Err(StartError::Keys(KeyError::WrongKey { customer, .. })) if customer.as_str() == ALICE),
        "{refused:?}"
    );
}
