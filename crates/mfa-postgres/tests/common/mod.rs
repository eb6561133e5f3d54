//! The database the tests use, and a store in a schema of its own per test.
//!
//! The tests read `MFA_TEST_POSTGRES_URL`. Without it each test prints that it was skipped and
//! passes, unless `MFA_REQUIRE_POSTGRES=1` (set by `.ci/run`) makes that a failure.

#![allow(dead_code, reason = "each test file uses part of this module")]
#![allow(unreachable_pub, reason = "a module shared by test crates")]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use mfa_core::{
    AuditQuery, CustomerId, CustomerRecord, Event, OrgId, OrgPolicy, Store, StoredEvent, Version,
    Versioned, Written,
};
use mfa_postgres::{PostgresError, PostgresOptions, PostgresStore};
use tokio_postgres::NoTls;

/// The variable that names the test database.
pub const URL: &str = "MFA_TEST_POSTGRES_URL";
/// The variable that turns a missing database into a failure.
pub const REQUIRE: &str = "MFA_REQUIRE_POSTGRES";

/// The test database's connection string, or `None` (after saying so) when the tests must skip.
pub fn url() -> Option<String> {
    match std::env::var(URL) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var(REQUIRE).as_deref() != Ok("1"),
                "{REQUIRE}=1 but {URL} is not set: the PostgreSQL tests cannot run"
            );
            // Written to the real stderr, past the test harness's capture, so the skip is visible;
            // once per test binary.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {URL} is not set, so the PostgreSQL tests did not run \
                     (set {REQUIRE}=1 to fail instead)"
                );
            });
            None
        }
    }
}

/// A schema name no other test (in this process or another) uses.
pub fn fresh_schema(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!("mfa_test_{label}_{}_{n}_{nanos}", std::process::id())
}

/// A plain connection to the test database, for looking under the store.
pub async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Drops `schema` and everything in it, from a thread of its own (so it works from `Drop`, inside
/// or outside a runtime).
pub fn drop_schema(url: &str, schema: &str) {
    let (url, schema) = (url.to_owned(), schema.to_owned());
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = raw_client(&url).await;
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .unwrap();
        });
    })
    .join();
}

/// A store in a fresh schema, dropped with the store.
pub struct TestStore {
    // Declared first, so the pool closes before the schema goes.
    pub store: PostgresStore,
    pub url: String,
}

impl TestStore {
    /// A store in a fresh schema of the test database, or `None` when the tests skip.
    pub async fn new(label: &str) -> Option<Self> {
        let url = url()?;
        Some(Self::with_options(&url, PostgresOptions::default().schema(fresh_schema(label))).await)
    }

    pub async fn with_options(url: &str, options: PostgresOptions) -> Self {
        let store = PostgresStore::connect_with(url.parse().unwrap(), options)
            .await
            .unwrap();
        Self {
            store,
            url: url.to_owned(),
        }
    }

    pub fn schema(&self) -> &str {
        self.store.schema()
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        self.store.close();
        drop_schema(&self.url, self.store.schema());
    }
}

impl Store for TestStore {
    type Error = PostgresError;

    async fn load_org(&self, org: &OrgId) -> Result<Option<Versioned<OrgPolicy>>, PostgresError> {
        self.store.load_org(org).await
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, PostgresError> {
        self.store.write_org(org, expected, policy, events).await
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<CustomerRecord>>, PostgresError> {
        self.store.load_customer(org, customer).await
    }

    async fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> Result<Written, PostgresError> {
        self.store
            .write_customer(org, customer, expected, record, events)
            .await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), PostgresError> {
        self.store.append_events(events).await
    }

    async fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<StoredEvent>, PostgresError> {
        self.store.audit(org, query).await
    }
}
