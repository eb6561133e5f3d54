//! Rows damaged by hand in the SQLite file (a value of another type, a version never written) are
//! that record's corruption, not a store outage.

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
