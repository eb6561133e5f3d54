//! No secret and no backup code rests in plaintext through the sqlx stores: the SQLite files (open,
//! then after the pool closes) and every row of the PostgreSQL schema (as text and raw bytes) are
//! searched for the kit's needles.

mod common;

use std::sync::Arc;

use mfa_sqlx::sqlx::{self, AssertSqlSafe, Row};
use mfa_store_tests::plaintext::secrets_written;

/// Every file of the store's SQLite database, concatenated.
fn every_file(db: &mfa_store_tests::TempDb) -> Vec<u8> {
    let mut bytes = Vec::new();
    for file in db.files() {
        if let Ok(content) = std::fs::read(&file) {
            bytes.extend_from_slice(&content);
            bytes.push(0);
        }
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_hold_no_secret() {
    let store = Arc::new(common::sqlite_store("sqlx-plaintext").await);
    let secrets = secrets_written(Arc::clone(&store)).await;
    secrets.assert_absent(
        &every_file(&store.hooks.0),
        "the files of the open database",
    );
    store.store.pool().close().await;
    secrets.assert_absent(
        &every_file(&store.hooks.0),
        "the files after the pool closed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_hold_no_secret() {
    let Some(store) = common::pg_store("sqlx_plaintext").await else {
        return;
    };
    // Kept until the end: the schema goes with the store.
    let store = Arc::new(store);
    let secrets = secrets_written(Arc::clone(&store)).await;
    let (pool, schema) = (store.store.pool(), &store.hooks.name);
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
            .bind(schema)
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(tables.len() >= 5, "{tables:?}");
    let mut everything = Vec::new();
    for table in &tables {
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT t::text FROM \"{schema}\".\"{table}\" t"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        for row in rows {
            everything.extend_from_slice(row.as_bytes());
            everything.push(0);
        }
    }
    for (table, column) in [
        ("orgs", "policy"),
        ("customers", "record"),
        ("events", "event"),
    ] {
        for row in sqlx::query(AssertSqlSafe(format!(
            "SELECT {column} FROM \"{schema}\".{table}"
        )))
        .fetch_all(pool)
        .await
        .unwrap()
        {
            everything.extend_from_slice(&row.get::<Vec<u8>, _>(0));
            everything.push(0);
        }
    }
    secrets.assert_absent(&everything, "the schema's rows");
}
