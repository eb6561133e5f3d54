//! Opening a file creates and migrates it; reopening changes nothing; a file this version cannot
//! own (a newer schema, another application's database) is refused and left byte for byte as it was.

use mfa_core::{
    OrgId, OrgMfa, OrgPolicy, Store,
    store::{Version, Written},
};
use mfa_sqlite::{SCHEMA_VERSION, SqliteError, SqliteStore};
use mfa_store_tests::TempDb;
use rusqlite::Connection;

fn pragma(connection: &Connection, name: &str) -> rusqlite::types::Value {
    connection
        .pragma_query_value(None, name, |row| row.get(0))
        .unwrap()
}

fn user_version(connection: &Connection) -> i64 {
    connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

/// Every table, index and trigger with its SQL.
fn schema(connection: &Connection) -> Vec<(String, String, Option<String>)> {
    let mut statement = connection
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The bytes of the database file and of each file beside it that exists.
fn snapshot(db: &TempDb) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    db.files()
        .into_iter()
        .filter_map(|file| std::fs::read(&file).ok().map(|bytes| (file, bytes)))
        .collect()
}

#[tokio::test]
async fn a_new_file_is_created_and_migrated_to_the_current_version() {
    let db = TempDb::new("migrate");
    SqliteStore::open(db.path())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let connection = Connection::open(db.path()).unwrap();
    assert_eq!(user_version(&connection), SCHEMA_VERSION);
    assert_eq!(
        pragma(&connection, "journal_mode"),
        rusqlite::types::Value::Text("wal".into())
    );
    let names: Vec<String> = schema(&connection)
        .into_iter()
        .map(|(_, name, _)| name)
        .collect();
    for expected in [
        "orgs",
        "customers",
        "events",
        "events_by_customer",
        "events_by_org",
        "retired_orgs",
        "retired_customers",
        "orgs_retire",
        "customers_retire",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} in {names:?}"
        );
    }
}

#[tokio::test]
async fn reopening_is_idempotent_and_keeps_the_data() {
    let db = TempDb::new("reopen");
    let acme = OrgId::new("acme").unwrap();
    let store = SqliteStore::open(db.path()).await.unwrap();
    let written = store
        .write_org(&acme, None, &OrgPolicy::default().with_mfa(OrgMfa::On), &[])
        .await
        .unwrap();
    assert_eq!(written, Written::Stored(Version(1)));
    store.close().await.unwrap();
    let before = schema(&Connection::open(db.path()).unwrap());

    for _ in 0..3 {
        let store = SqliteStore::open(db.path()).await.unwrap();
        let loaded = store
            .load_org(&acme)
            .await
            .unwrap()
            .unwrap()
            .decode()
            .unwrap();
        assert!(loaded.value.enabled());
        assert_eq!(loaded.version, Version(1));
        store.close().await.unwrap();
    }
    let connection = Connection::open(db.path()).unwrap();
    assert_eq!(schema(&connection), before);
    assert_eq!(user_version(&connection), SCHEMA_VERSION);
}

#[tokio::test]
async fn an_empty_existing_file_becomes_a_store() {
    let db = TempDb::new("empty");
    std::fs::write(db.path(), b"").unwrap();
    let store = SqliteStore::open(db.path()).await.unwrap();
    assert_eq!(
        store.load_org(&OrgId::new("acme").unwrap()).await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_connections_opening_a_new_file_at_once_all_succeed() {
    let db = TempDb::new("race-open");
    let path = db.path().to_path_buf();
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(path).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().unwrap());
    }
    let acme = OrgId::new("acme").unwrap();
    let written = stores[3]
        .write_org(&acme, None, &OrgPolicy::default(), &[])
        .await
        .unwrap();
    assert_eq!(written, Written::Stored(Version(1)));
    assert!(stores[5].load_org(&acme).await.unwrap().is_some());
    for store in stores {
        store.close().await.unwrap();
    }
    assert_eq!(
        user_version(&Connection::open(db.path()).unwrap()),
        SCHEMA_VERSION
    );
}

async fn assert_refused_untouched(db: &TempDb, check: impl Fn(&SqliteError) -> bool) {
    let before = snapshot(db);
    assert!(!before.is_empty());
    let error = SqliteStore::open(db.path()).await.unwrap_err();
    assert!(check(&error), "unexpected {error:?}");
    assert!(
        snapshot(db) == before,
        "the refused file (or a file beside it) changed"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_byte_for_byte_unchanged() {
    // A store from this version, then migrated further by a (pretend) newer one.
    let db = TempDb::new("newer");
    let store = SqliteStore::open(db.path()).await.unwrap();
    let _ = store
        .write_org(
            &OrgId::new("acme").unwrap(),
            None,
            &OrgPolicy::default(),
            &[],
        )
        .await
        .unwrap();
    store.close().await.unwrap();
    let connection = Connection::open(db.path()).unwrap();
    connection
        .execute_batch(&format!(
            "CREATE TABLE from_the_future (x); PRAGMA user_version = {};",
            SCHEMA_VERSION + 1
        ))
        .unwrap();
    connection.close().unwrap();

    assert_refused_untouched(&db, |error| {
        matches!(
            error,
            SqliteError::NewerSchema { found, supported }
                if *found == SCHEMA_VERSION + 1 && *supported == SCHEMA_VERSION
        )
    })
    .await;
    let message = SqliteStore::open(db.path()).await.unwrap_err().to_string();
    assert!(
        message.contains(&format!("schema version {}", SCHEMA_VERSION + 1))
            && message.contains(&format!("up to {SCHEMA_VERSION}")),
        "{message}"
    );
}

#[tokio::test]
async fn a_newer_schema_in_a_rollback_journal_file_is_refused_untouched() {
    let db = TempDb::new("newer-plain");
    let connection = Connection::open(db.path()).unwrap();
    connection
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1); PRAGMA user_version = 99;")
        .unwrap();
    connection.close().unwrap();
    assert_refused_untouched(&db, |error| {
        matches!(error, SqliteError::NewerSchema { found: 99, .. })
    })
    .await;
}

#[tokio::test]
async fn another_applications_database_is_refused_untouched() {
    let db = TempDb::new("foreign");
    let connection = Connection::open(db.path()).unwrap();
    connection
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER);")
        .unwrap();
    connection.close().unwrap();
    assert_refused_untouched(&db, |error| {
        matches!(error, SqliteError::NotOurs { application_id: 0 })
    })
    .await;

    let connection = Connection::open(db.path()).unwrap();
    connection
        .execute_batch("PRAGMA application_id = 1234;")
        .unwrap();
    connection.close().unwrap();
    assert_refused_untouched(&db, |error| {
        matches!(
            error,
            SqliteError::NotOurs {
                application_id: 1234
            }
        )
    })
    .await;
}
