//! Separate operating-system processes on one PostgreSQL schema through sqlx: eight racing to use
//! one code (exactly one wins), and one killed with `SIGKILL` in the middle of a stream of
//! sign-ins (nothing it reported is lost, nothing is accepted twice). The tests are the kit's;
//! this file says how a process opens the store: the test database's URL and a schema of the
//! test's own.

mod common;

use std::time::{Duration, Instant};

use mfa_sqlx::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use mfa_sqlx::sqlx::{Connection as _, PgConnection};
use mfa_sqlx::{PgOptions, PgStore};
use mfa_store_tests::{ProcessStore, fresh_schema, postgres_url};

/// A fresh schema, dropped when the test ends; its location is the schema and the URL separated
/// by a tab.
struct PgSchema {
    url: String,
    schema: String,
    location: String,
}

fn application_name(schema: &str, pid: u32) -> String {
    format!("{schema}_{pid}")
}

impl ProcessStore for PgSchema {
    type Store = PgStore;

    async fn create(label: &str) -> Option<Self> {
        let url = postgres_url()?;
        let schema = fresh_schema(&format!("sqlx_{}", label.replace('-', "_")));
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

    async fn open(location: &str) -> PgStore {
        let (schema, url) = location.split_once('\t').expect("schema, tab, URL");
        // Names each process's sessions, so the parent can wait for a killed child's to end.
        let options: PgConnectOptions = url.parse().expect("the test database's URL");
        let options = options.application_name(&application_name(schema, std::process::id()));
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .expect("connect");
        PgStore::with_options(pool, PgOptions::default().schema(schema))
            .await
            .expect("open the store")
    }

    async fn close(store: PgStore) {
        store.pool().close().await;
    }

    /// A killed child's server sessions live on until the server notices the closed socket, and
    /// a statement it had sent whole still runs (and may commit): waits until they are gone.
    async fn check_after_kill(&self) {
        let mut connection = PgConnection::connect(&self.url).await.expect("connect");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: i64 = mfa_sqlx::sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name LIKE $1 AND application_name <> $2",
            )
            .bind(format!("{}_%", self.schema))
            .bind(application_name(&self.schema, std::process::id()))
            .fetch_one(&mut connection)
            .await
            .expect("read the server's sessions");
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
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        common::drop_schema(&self.url, &self.schema);
    }
}

mfa_store_tests::process_suite!(PgSchema);
