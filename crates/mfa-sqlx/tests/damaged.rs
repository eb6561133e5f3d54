//! Rows damaged or deleted by hand (an operator's SQL, while the store is in use): a value of
//! another type or a version never written is that record's corruption, not an outage; a deleted
//! row never gives its versions again, nor brings an old session back. The kit's checks, on both
//! engines.

mod common;

use mfa_sqlx::sqlx::AssertSqlSafe;

#[tokio::test]
async fn rows_damaged_by_hand_are_corruption() {
    let store = common::sqlite_store("sqlx-damaged").await;
    let pool = store.store.pool().clone();
    mfa_store_tests::sqlite_rows_damaged_by_hand_are_corruption(store, async |sql: &str| {
        mfa_sqlx::sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_record_deleted_by_hand_and_made_again_ends_old_sessions() {
    let store = common::sqlite_store("sqlx-deleted").await;
    let pool = store.store.pool().clone();
    mfa_store_tests::a_record_deleted_by_hand_and_made_again_ends_old_sessions(
        store,
        async |org: &mfa_core::OrgId, customer: &mfa_core::CustomerId| {
            mfa_sqlx::sqlx::query("DELETE FROM customers WHERE org = ?1 AND customer = ?2")
                .bind(org.as_str())
                .bind(customer.as_str())
                .execute(&pool)
                .await
                .unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_record_deleted_by_hand_and_made_again_ends_old_sessions() {
    let Some(store) = common::pg_store("sqlx_deleted").await else {
        return;
    };
    let (pool, schema) = (store.store.pool().clone(), store.hooks.name.clone());
    mfa_store_tests::a_record_deleted_by_hand_and_made_again_ends_old_sessions(
        store,
        async |org: &mfa_core::OrgId, customer: &mfa_core::CustomerId| {
            mfa_sqlx::sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM \"{schema}\".customers WHERE org = $1 AND customer = $2"
            )))
            .bind(org.as_str())
            .bind(customer.as_str())
            .execute(&pool)
            .await
            .unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn a_sqlite_row_deleted_by_hand_never_gives_its_versions_again() {
    let store = common::sqlite_store("sqlx-versions").await;
    let pool = store.store.pool().clone();
    mfa_store_tests::a_row_deleted_by_hand_never_gives_its_versions_again(store, async || {
        mfa_sqlx::sqlx::raw_sql("DELETE FROM customers; DELETE FROM orgs;")
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_row_deleted_by_hand_never_gives_its_versions_again() {
    let Some(store) = common::pg_store("sqlx_versions").await else {
        return;
    };
    let (pool, schema) = (store.store.pool().clone(), store.hooks.name.clone());
    mfa_store_tests::a_row_deleted_by_hand_never_gives_its_versions_again(store, async || {
        mfa_sqlx::sqlx::raw_sql(AssertSqlSafe(format!(
            "DELETE FROM \"{schema}\".customers; DELETE FROM \"{schema}\".orgs;"
        )))
        .execute(&pool)
        .await
        .unwrap();
    })
    .await;
}
