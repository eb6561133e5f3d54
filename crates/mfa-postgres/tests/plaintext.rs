//! No secret and no backup code rests in plaintext in the database: every row of every table in the
//! store's schema is read back, in text form and as raw bytes, and searched for the kit's needles.

mod common;

use std::sync::Arc;

use common::{raw_client, test_store};
use mfa_store_tests::plaintext::secrets_written;

#[tokio::test]
async fn neither_the_secret_nor_a_backup_code_appears_in_any_row() {
    let Some(store) = test_store("plaintext").await else {
        return;
    };
    let (client, schema) = (
        raw_client(&store.hooks.url).await,
        store.store.schema().to_owned(),
    );
    // Kept until the end: the schema goes with the store.
    let store = Arc::new(store);
    let secrets = secrets_written(Arc::clone(&store)).await;
    // Every table of the schema, each row as PostgreSQL prints it (bytea as hex) and each bytea
    // column as raw bytes.
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(tables.len() >= 5, "{tables:?}");
    let mut everything = Vec::new();
    for table in &tables {
        for row in client
            .query(
                &format!("SELECT t::text FROM \"{schema}\".\"{table}\" t"),
                &[],
            )
            .await
            .unwrap()
        {
            everything.extend_from_slice(row.get::<_, String>(0).as_bytes());
            everything.push(0);
        }
    }
    for (table, column) in [
        ("orgs", "policy"),
        ("customers", "record"),
        ("events", "event"),
    ] {
        for row in client
            .query(&format!("SELECT {column} FROM \"{schema}\".{table}"), &[])
            .await
            .unwrap()
        {
            everything.extend_from_slice(row.get::<_, &[u8]>(0));
            everything.push(0);
        }
    }
    secrets.assert_absent(&everything, "the database's rows");
    drop(store);
}
