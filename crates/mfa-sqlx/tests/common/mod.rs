//! Stores for the tests: a fresh SQLite file, or a fresh schema in the PostgreSQL test database,
//! each removed with the store.

#![allow(dead_code, reason = "each test file uses part of this module")]
#![allow(unreachable_pub, reason = "a module shared by test crates")]

use std::time::Duration;

use mfa_sqlx::sqlx::postgres::{PgPool, PgPoolOptions};
use mfa_sqlx::sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use mfa_sqlx::sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use mfa_sqlx::{PgOptions, PgStore, SqliteStore};
use mfa_store_tests::{Hooked, Hooks, TempDb, fresh_schema, postgres_url};

/// A pool on the store's file at `path`, as a host would make one.
pub async fn sqlite_pool(path: &std::path::Path) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(SqliteStore::connect_options(path))
        .await
        .unwrap()
}

/// The temporary file, removed once the store (declared first in [`Hooked`]) is gone.
pub struct Removed(pub TempDb);

impl Hooks for Removed {}

/// A store on a fresh SQLite file.
pub async fn sqlite_store(label: &str) -> Hooked<SqliteStore, Removed> {
    let db = TempDb::new(label);
    let store = SqliteStore::new(sqlite_pool(db.path()).await)
        .await
        .unwrap();
    Hooked::new(store, Removed(db))
}

/// A pool on the PostgreSQL test database, as a host would make one.
pub async fn pg_pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .unwrap()
}

/// The test database and a schema in it, dropped when the store is.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Hooks for Schema {}

impl Drop for Schema {
    fn drop(&mut self) {
        drop_schema(&self.url, &self.name);
    }
}

/// Drops `schema`, from a thread of its own (so it works from `Drop`, inside a runtime or not).
pub fn drop_schema(url: &str, schema: &str) {
    let (url, schema) = (url.to_owned(), schema.to_owned());
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut connection = PgConnection::connect(&url).await.unwrap();
            mfa_sqlx::sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(&mut connection)
            .await
            .unwrap();
        });
    })
    .join();
}

/// A store in a fresh schema of the test database, or `None` when the tests skip.
pub async fn pg_store(label: &str) -> Option<Hooked<PgStore, Schema>> {
    let url = postgres_url()?;
    let name = fresh_schema(label);
    let store = PgStore::with_options(pg_pool(&url).await, PgOptions::default().schema(&name))
        .await
        .unwrap();
    Some(Hooked::new(store, Schema { url, name }))
}
