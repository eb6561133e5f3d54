//! Nothing scans a whole table on a hot path: with a hundred thousand events and customers stored
//! and statistics gathered, the planner answers every statement the store runs from an index.

mod common;

use common::{raw_client, test_store};

/// The plan PostgreSQL picks for `sql`, one line per node.
async fn plan(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_indexed(plan: &str, index: &str) {
    assert!(plan.contains(index), "expected {index}:\n{plan}");
    assert!(!plan.contains("Seq Scan"), "a full scan:\n{plan}");
    // A sort may follow a bitmap scan of the index when the planner expects few rows (one
    // customer's events): it sorts those rows only, never the table.
}

#[tokio::test]
async fn every_hot_statement_is_an_index_lookup() {
    let Some(store) = test_store("plans").await else {
        return;
    };
    let client = raw_client(&store.hooks.url).await;
    let s = format!("\"{}\"", store.store.schema());
    // 10,000 organisations, 100,000 customers, 100,000 events and 10,000 records deleted by hand.
    client
        .batch_execute(&format!(
            "INSERT INTO {s}.orgs (org, version, policy)
               SELECT 'org' || o, 1, '\\x00' FROM generate_series(1, 10000) o;
             INSERT INTO {s}.retired_customers (org, customer, version)
               SELECT 'org' || (i % 100), 'gone' || i, 1 FROM generate_series(1, 10000) i;
             INSERT INTO {s}.customers (org, customer, version, state, sealing_key_id, record)
               SELECT 'org' || (i % 100), 'c' || i, 1, 'configured', 1 + i % 2, '\\x00'
               FROM generate_series(1, 100000) i;
             INSERT INTO {s}.events (org, customer, at, kind, event)
               SELECT 'org' || (i % 100), 'c' || (i % 1000), 1767225600 + i, 'totp_accepted', '\\x00'
               FROM generate_series(1, 100000) i;
             ANALYZE {s}.orgs; ANALYZE {s}.customers; ANALYZE {s}.events; ANALYZE {s}.retired_customers;"
        ))
        .await
        .unwrap();

    for (sql, index) in [
        (
            format!(
                "SELECT version, record FROM {s}.customers WHERE org = 'org7' AND customer = 'c7'"
            ),
            "customers_pkey",
        ),
        (
            format!(
                "UPDATE {s}.customers SET version = version + 1
                 WHERE org = 'org7' AND customer = 'c7' AND version = 1"
            ),
            "customers_pkey",
        ),
        (
            format!("SELECT version, policy FROM {s}.orgs WHERE org = 'org7'"),
            "orgs_pkey",
        ),
        (
            format!("UPDATE {s}.orgs SET version = version + 1 WHERE org = 'org7' AND version = 1"),
            "orgs_pkey",
        ),
        (
            format!(
                "SELECT max(version) FROM {s}.retired_customers WHERE org = 'org7' AND customer = 'c7'"
            ),
            "retired_customers_pkey",
        ),
        (
            format!(
                "SELECT seq, event FROM {s}.events WHERE org = 'org7' AND customer = 'c7'
                 AND seq <= 9223372036854775807 ORDER BY seq DESC LIMIT 100"
            ),
            "events_by_customer",
        ),
        (
            format!(
                "SELECT seq, event FROM {s}.events WHERE org = 'org7'
                 AND seq <= 9223372036854775807 ORDER BY seq DESC LIMIT 100"
            ),
            "events_by_org",
        ),
        (
            format!(
                "SELECT seq, event FROM {s}.events WHERE org = 'org7' AND seq > 0 AND at >= 0
                 ORDER BY seq LIMIT 1000"
            ),
            // By sequence number, or by time when the planner expects few rows: an index either way.
            "events_by_",
        ),
        (
            format!(
                "SELECT seq, event FROM {s}.events WHERE org = 'org7' AND customer = 'c7'
                 AND seq > 0 AND at >= 0 ORDER BY seq LIMIT 1000"
            ),
            "events_by_",
        ),
        // Key rotation's walk, a page at a time, along the primary key.
        (
            format!(
                "SELECT org, customer FROM {s}.customers
                 WHERE (org, customer) > ('org5'::text, 'c5'::text) AND sealing_key_id = 1
                 ORDER BY org, customer LIMIT 500"
            ),
            "customers_pkey",
        ),
    ] {
        assert_indexed(&plan(&client, &sql).await, index);
    }
    // A step's policy and record, read together: both by primary key.
    let both = plan(
        &client,
        &format!(
            "SELECT o.version, o.policy, c.version, c.record FROM (SELECT) AS one
             LEFT JOIN {s}.orgs o ON o.org = 'org7'
             LEFT JOIN {s}.customers c ON c.org = 'org7' AND c.customer = 'c7'"
        ),
    )
    .await;
    assert_indexed(&both, "orgs_pkey");
    assert_indexed(&both, "customers_pkey");
}
