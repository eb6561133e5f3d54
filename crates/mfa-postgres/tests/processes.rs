//! Separate operating-system processes on one database: eight racing to use one code (exactly one
//! wins), and one killed with `SIGKILL` in the middle of a stream of sign-ins (nothing it reported is
//! lost, nothing is accepted twice). The tests are the store-generic ones of `mfa-store-tests`; this
//! file says how a process opens the store: the test database's URL and a schema of the test's own.

mod common;

use std::time::{Duration, Instant};

use mfa_postgres::{PostgresOptions, PostgresStore};
use mfa_store_tests::ProcessStore;

/// A fresh schema in the test database, dropped when the test ends. Its location, as the child
/// processes get it, is `schema` and the URL separated by a tab.
struct PostgresSchema {
    url: String,
    schema: String,
    location: String,
}

impl ProcessStore for PostgresSchema {
    type Store = PostgresStore;

    async fn create(label: &str) -> Option<Self> {
        let url = common::url()?;
        let schema = common::fresh_schema(&label.replace('-', "_"));
        let location = format!("{schema}\t{url}");
        Some(Self {
            url,
            schema,
            location,
        })
    }

    fn location(&self) -> &str {
        &self.location
    }

    async fn open(location: &str) -> PostgresStore {
        let (schema, url) = location.split_once('\t').expect("schema, tab, URL");
        let mut config: tokio_postgres::Config = url.parse().expect("the test database's URL");
        // Names each process's sessions, so the parent can wait for a killed child's to end.
        config.application_name(application_name(schema, std::process::id()));
        PostgresStore::connect_with(config, PostgresOptions::default().schema(schema))
            .await
            .expect("open the store")
    }

    /// A killed child's server sessions live on until the server notices the closed socket, and
    /// a statement the child had sent whole still runs (and may commit). Waits until they are
    /// gone, so the checks read the log as the crash left it.
    async fn check_after_kill(&self) {
        let client = common::raw_client(&self.url).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE application_name LIKE $1 AND application_name <> $2",
                    &[
                        &format!("{}_%", self.schema),
                        &application_name(&self.schema, std::process::id()),
                    ],
                )
                .await
                .expect("read the server's sessions")
                .get(0);
            if left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "a killed child's sessions are still on the server"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn close(store: PostgresStore) {
        store.close();
    }
}

fn application_name(schema: &str, pid: u32) -> String {
    format!("{schema}_{pid}")
}

impl Drop for PostgresSchema {
    fn drop(&mut self) {
        common::drop_schema(&self.url, &self.schema);
    }
}

mfa_store_tests::process_suite!(PostgresSchema);
