//! The schema: created on first use, migrated once when many nodes start at once, refused untouched
//! when it is newer than this crate or not ours; versions never reused; the audit log append-only.

mod common;

use common::{drop_schema, fresh_schema, raw_client, test_store, url};
use mfa_core::{
    Actor, CustomerId, OrgId, OrgPolicy, Store, UnixTime,
    audit::{Event, EventKind},
    machine::CustomerRecord,
    store::{Version, Written},
};
use mfa_postgres::{PostgresError, PostgresOptions, PostgresStore, SCHEMA_VERSION};

async fn connect(url: &str, schema: &str) -> Result<PostgresStore, PostgresError> {
    PostgresStore::connect_with(
        url.parse().unwrap(),
        PostgresOptions::default().schema(schema),
    )
    .await
}

/// Drops the schema when the test ends, however it ends.
struct Cleanup(String, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        drop_schema(&self.0, &self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_nodes_starting_at_once_migrate_once() {
    let Some(url) = url() else { return };
    let schema = fresh_schema("start");
    let _cleanup = Cleanup(url.clone(), schema.clone());
    let nodes: Vec<_> = (0..8)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::spawn(async move { connect(&url, &schema).await })
        })
        .collect();
    for node in nodes {
        node.await.unwrap().unwrap();
    }
    let client = raw_client(&url).await;
    let rows = client
        .query(
            &format!("SELECT version FROM \"{schema}\".schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // Opening again changes nothing.
    connect(&url, &schema).await.unwrap();
    let again = client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".schema_migrations"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(again.get::<_, i64>(0), i64::from(SCHEMA_VERSION));
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_untouched() {
    let Some(url) = url() else { return };
    let schema = fresh_schema("newer");
    let _cleanup = Cleanup(url.clone(), schema.clone());
    connect(&url, &schema).await.unwrap();
    let client = raw_client(&url).await;
    client
        .batch_execute(&format!(
            "INSERT INTO \"{schema}\".schema_migrations (version) VALUES (999);
             CREATE TABLE \"{schema}\".from_the_future (x int);"
        ))
        .await
        .unwrap();
    let before = tables(&client, &schema).await;
    match connect(&url, &schema).await {
        Err(PostgresError::NewerSchema { found, supported }) => {
            assert_eq!((found, supported), (999, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(tables(&client, &schema).await, before);
}

#[tokio::test]
async fn someone_elses_schema_is_refused_and_left_untouched() {
    let Some(url) = url() else { return };
    let schema = fresh_schema("theirs");
    let _cleanup = Cleanup(url.clone(), schema.clone());
    let client = raw_client(&url).await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".invoices (id int);"
        ))
        .await
        .unwrap();
    match connect(&url, &schema).await {
        Err(PostgresError::NotOurs { schema: named }) => assert_eq!(named, schema),
        other => panic!("expected NotOurs, got {other:?}"),
    }
    assert_eq!(tables(&client, &schema).await, vec!["invoices".to_owned()]);
}

#[tokio::test]
async fn bad_schema_names_and_connection_strings_are_typed_errors() {
    // Refused before any connection is attempted, so this needs no database.
    let config: tokio_postgres::Config = "host=127.0.0.1 port=1 user=nobody".parse().unwrap();
    let refused = PostgresStore::connect_with(
        config,
        PostgresOptions::default().schema("mfa\"; DROP SCHEMA public; --"),
    )
    .await;
    assert!(matches!(refused, Err(PostgresError::InvalidSchema(_))));
    assert!(matches!(
        PostgresStore::connect("postgres://[::1").await,
        Err(PostgresError::Config(_))
    ));
}

#[tokio::test]
async fn a_database_that_is_not_there_is_a_typed_error_not_a_hang() {
    // Nothing listens on port 1.
    let config: tokio_postgres::Config = "host=127.0.0.1 port=1 user=nobody dbname=x"
        .parse()
        .unwrap();
    let started = std::time::Instant::now();
    let refused = PostgresStore::connect_with(
        config,
        PostgresOptions::default().timeout(std::time::Duration::from_secs(2)),
    )
    .await;
    assert!(
        matches!(refused, Err(PostgresError::Pool(_))),
        "{refused:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

async fn tables(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn a_row_deleted_by_hand_never_gives_its_versions_again() {
    let Some(store) = test_store("versions").await else {
        return;
    };
    // An operator deletes the rows with psql while the store is in use.
    let client = raw_client(&store.hooks.url).await;
    let schema = store.store.schema().to_owned();
    let store = std::sync::Arc::new(store);
    mfa_store_tests::a_row_deleted_by_hand_never_gives_its_versions_again(
        std::sync::Arc::clone(&store),
        async || {
            client
                .batch_execute(&format!(
                    "DELETE FROM \"{schema}\".customers; DELETE FROM \"{schema}\".orgs;"
                ))
                .await
                .unwrap();
        },
    )
    .await;

    // A retired version at the very top is a conflict, not an error.
    let (acme, record) = (OrgId::new("acme").unwrap(), CustomerRecord::default());
    let bob = CustomerId::new("bob").unwrap();
    client
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".retired_customers (org, customer, version)
                 VALUES ('acme', 'bob', 9223372036854775807)"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .write_customer(&acme, &bob, None, &record, &[])
            .await
            .unwrap(),
        Written::Conflict
    );
}

#[tokio::test]
async fn the_audit_log_is_append_only() {
    let Some(store) = test_store("append").await else {
        return;
    };
    let acme = OrgId::new("acme").unwrap();
    let event = Event {
        at: UnixTime::from_secs(1_767_225_600),
        org: acme.clone(),
        customer: None,
        kind: EventKind::Reset {
            by: Actor::new("admin").unwrap(),
        },
    };
    store.append_events(&[event]).await.unwrap();
    let client = raw_client(&store.hooks.url).await;
    let schema = store.store.schema().to_owned();
    for statement in [
        format!("UPDATE \"{schema}\".events SET kind = 'nothing'"),
        format!("DELETE FROM \"{schema}\".events"),
        format!("TRUNCATE \"{schema}\".events"),
    ] {
        let error = client.batch_execute(&statement).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only")
                || error
                    .as_db_error()
                    .is_some_and(|db| db.message().contains("append-only")),
            "{statement}: {error}"
        );
    }
    let count = client
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".events"), &[])
        .await
        .unwrap();
    assert_eq!(count.get::<_, i64>(0), 1);
}

/// The error a statement got, with the server's own message (which `Display` leaves out).
fn message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{error}: {}", db.message()),
        None => error.to_string(),
    }
}

#[tokio::test]
async fn truncating_the_records_is_refused_so_versions_are_never_reused() {
    let Some(store) = test_store("truncate").await else {
        return;
    };
    let (acme, alice) = (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice").unwrap(),
    );
    let record = CustomerRecord::default();
    let mut expected = None;
    for version in 1..=3 {
        let written = store
            .write_customer(&acme, &alice, expected, &record, &[])
            .await
            .unwrap();
        assert_eq!(written, Written::Stored(Version(version)));
        expected = Some(Version(version));
    }
    let policy = OrgPolicy::default();
    assert_eq!(
        store.write_org(&acme, None, &policy, &[]).await.unwrap(),
        Written::Stored(Version(1))
    );

    // TRUNCATE fires no row trigger, so it would forget the versions the rows held: refused.
    let client = raw_client(&store.hooks.url).await;
    let schema = store.store.schema().to_owned();
    for statement in [
        format!("TRUNCATE \"{schema}\".customers"),
        format!("TRUNCATE \"{schema}\".orgs"),
        format!("TRUNCATE \"{schema}\".orgs, \"{schema}\".customers"),
    ] {
        let error = client.batch_execute(&statement).await.unwrap_err();
        assert!(
            message(&error).contains("versions would be reused"),
            "{statement}: {}",
            message(&error)
        );
    }
    for table in ["customers", "orgs"] {
        let count = client
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".{table}"), &[])
            .await
            .unwrap();
        assert_eq!(count.get::<_, i64>(0), 1, "{table}");
    }

    // A node that read an older version, or none, still loses; the current one still wins.
    for (expected, outcome) in [
        (Some(Version(2)), Written::Conflict),
        (None, Written::Conflict),
        (Some(Version(3)), Written::Stored(Version(4))),
    ] {
        assert_eq!(
            store
                .write_customer(&acme, &alice, expected, &record, &[])
                .await
                .unwrap(),
            outcome
        );
    }
    for (expected, outcome) in [
        (None, Written::Conflict),
        (Some(Version(1)), Written::Stored(Version(2))),
    ] {
        assert_eq!(
            store
                .write_org(&acme, expected, &policy, &[])
                .await
                .unwrap(),
            outcome
        );
    }
}

/// Takes a schema at [`SCHEMA_VERSION`] back to version 1, as a database migrated by the first
/// release holds it: migration 2 only added the triggers that refuse TRUNCATE.
async fn back_to_version_1(client: &tokio_postgres::Client, schema: &str) {
    assert_eq!(
        SCHEMA_VERSION, 2,
        "a new migration: undo it here too, or test from a version-1 dump"
    );
    client
        .batch_execute(&format!(
            "DROP TRIGGER orgs_no_truncate ON \"{schema}\".orgs;
             DROP TRIGGER customers_no_truncate ON \"{schema}\".customers;
             DROP FUNCTION \"{schema}\".records_no_truncate();
             DELETE FROM \"{schema}\".schema_migrations WHERE version > 1;"
        ))
        .await
        .unwrap();
}

/// The triggers and functions in `schema`, by name.
async fn routines(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT t.tgname::text FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND NOT t.tgisinternal
             UNION ALL
             SELECT p.proname::text FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
             ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

// Several threads, so a lock holder's connection can close (and free the lock) while `Cleanup`
// blocks in `drop` after a failed assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_at_version_1_is_upgraded_keeping_its_rows() {
    let Some(url) = url() else { return };
    let schema = fresh_schema("upgrade");
    let _cleanup = Cleanup(url.clone(), schema.clone());
    let (acme, alice) = (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice").unwrap(),
    );
    let store = connect(&url, &schema).await.unwrap();
    let client = raw_client(&url).await;
    let current = (
        tables(&client, &schema).await,
        routines(&client, &schema).await,
    );
    let record = CustomerRecord::default();
    assert_eq!(
        store
            .write_customer(&acme, &alice, None, &record, &[])
            .await
            .unwrap(),
        Written::Stored(Version(1))
    );
    store.close();
    back_to_version_1(&client, &schema).await;
    // At version 1 TRUNCATE went through (in a transaction rolled back here).
    client
        .batch_execute(&format!(
            "BEGIN; TRUNCATE \"{schema}\".customers; ROLLBACK;"
        ))
        .await
        .unwrap();

    // A long transaction wrote to a table the migration changes and holds its lock: the upgrade
    // gives up in time and leaves the schema at version 1.
    let holder = raw_client(&url).await;
    holder
        .batch_execute(&format!(
            "BEGIN; UPDATE \"{schema}\".customers SET state = state;"
        ))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let waited = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        PostgresStore::connect_with(
            url.parse().unwrap(),
            PostgresOptions::default()
                .schema(&schema)
                .migration_timeout(std::time::Duration::from_secs(1)),
        ),
    )
    .await
    .expect("opening the store hung behind a table lock");
    assert!(matches!(waited, Err(PostgresError::Timeout)), "{waited:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let version = client
        .query_one(
            &format!("SELECT max(version) FROM \"{schema}\".schema_migrations"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(version.get::<_, i32>(0), 1);
    holder.batch_execute("ROLLBACK").await.unwrap();

    // Once the lock is gone the upgrade goes through, to what a new schema holds, rows kept.
    let store = connect(&url, &schema).await.unwrap();
    let rows = client
        .query(
            &format!("SELECT version FROM \"{schema}\".schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    assert_eq!(
        (
            tables(&client, &schema).await,
            routines(&client, &schema).await
        ),
        current
    );
    assert_eq!(
        store
            .load_customer(&acme, &alice)
            .await
            .unwrap()
            .unwrap()
            .decode()
            .unwrap()
            .version,
        Version(1)
    );
    let error = client
        .batch_execute(&format!("TRUNCATE \"{schema}\".customers"))
        .await
        .unwrap_err();
    assert!(
        message(&error).contains("versions would be reused"),
        "{}",
        message(&error)
    );
    store.close();
}

/// The migration's advisory lock, as `schema.rs` takes it: "MFAs" in ASCII, and a hash of the
/// schema name.
const MIGRATION_LOCK: &str = "pg_advisory_lock(1296449907, hashtext($1))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_migration_lock_is_a_timeout_not_a_hang() {
    let Some(url) = url() else { return };
    let schema = fresh_schema("locked");
    let _cleanup = Cleanup(url.clone(), schema.clone());
    let holder = raw_client(&url).await;
    // A session that took the lock and stays (a node stuck mid-migration, an operator's psql).
    holder
        .execute(&format!("SELECT {MIGRATION_LOCK}"), &[&schema])
        .await
        .unwrap();
    let options = PostgresOptions::default()
        .schema(&schema)
        .migration_timeout(std::time::Duration::from_secs(1));

    // Through connect_with, and through a pool of the host's own that has no timeouts at all.
    let pool = || {
        let manager = mfa_postgres::deadpool_postgres::Manager::new(
            url.parse().unwrap(),
            tokio_postgres::NoTls,
        );
        mfa_postgres::deadpool_postgres::Pool::builder(manager)
            .max_size(2)
            .build()
            .unwrap()
    };
    for via_pool in [false, true] {
        let started = std::time::Instant::now();
        let open = async {
            if via_pool {
                PostgresStore::from_pool(pool(), options.clone()).await
            } else {
                PostgresStore::connect_with(url.parse().unwrap(), options.clone()).await
            }
        };
        let waited = tokio::time::timeout(std::time::Duration::from_secs(30), open)
            .await
            .expect("opening the store hung on the migration lock");
        assert!(
            matches!(waited, Err(PostgresError::Timeout)),
            "from_pool: {via_pool}: {waited:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
    // Nothing was created while waiting.
    assert!(tables(&holder, &schema).await.is_empty());

    holder
        .execute(
            "SELECT pg_advisory_unlock(1296449907, hashtext($1))",
            &[&schema],
        )
        .await
        .unwrap();
    for via_pool in [false, true] {
        let store = if via_pool {
            PostgresStore::from_pool(pool(), options.clone()).await
        } else {
            PostgresStore::connect_with(url.parse().unwrap(), options.clone()).await
        };
        store.unwrap().close();
    }
    assert!(
        tables(&holder, &schema)
            .await
            .contains(&"customers".to_owned())
    );
}
