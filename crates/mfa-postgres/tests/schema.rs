//! The schema: created on first use, migrated once when many nodes start at once, refused untouched
//! when it is newer than this crate or not ours; versions never reused; the audit log append-only.

mod common;

use common::{TestStore, drop_schema, fresh_schema, raw_client, url};
use mfa_core::{
    CustomerId, CustomerRecord, Event, EventKind, OrgId, OrgPolicy, Store, UnixTime, Version,
    Written,
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
    let Some(store) = TestStore::new("versions").await else {
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
    assert_eq!(
        store
            .write_org(&acme, None, &OrgPolicy::default(), &[])
            .await
            .unwrap(),
        Written::Stored(Version(1))
    );

    // An operator deletes both rows with psql while the store is in use.
    let client = raw_client(&store.url).await;
    let schema = store.schema().to_owned();
    client
        .batch_execute(&format!(
            "DELETE FROM \"{schema}\".customers; DELETE FROM \"{schema}\".orgs;"
        ))
        .await
        .unwrap();

    // A node that read version 3 before the delete must not write over what comes next.
    for (expected, outcome) in [
        (Some(Version(3)), Written::Conflict),
        (None, Written::Stored(Version(4))),
        (Some(Version(3)), Written::Conflict),
        (Some(Version(4)), Written::Stored(Version(5))),
    ] {
        assert_eq!(
            store
                .write_customer(&acme, &alice, expected, &record, &[])
                .await
                .unwrap(),
            outcome
        );
    }
    assert_eq!(
        store
            .write_org(&acme, None, &OrgPolicy::default(), &[])
            .await
            .unwrap(),
        Written::Stored(Version(2))
    );

    // Versions beyond a bigint, and a retired version at the very top, are conflicts, not errors.
    for expected in [
        Version(u64::MAX),
        Version(i64::MAX as u64),
        Version(1 << 63),
    ] {
        assert_eq!(
            store
                .write_customer(&acme, &alice, Some(expected), &record, &[])
                .await
                .unwrap(),
            Written::Conflict
        );
    }
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
    let Some(store) = TestStore::new("append").await else {
        return;
    };
    let acme = OrgId::new("acme").unwrap();
    let event = Event {
        at: UnixTime::from_secs(1_767_225_600),
        org: acme.clone(),
        customer: None,
        kind: EventKind::Reset { by: "admin".into() },
    };
    store.append_events(&[event]).await.unwrap();
    let client = raw_client(&store.url).await;
    let schema = store.schema().to_owned();
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
