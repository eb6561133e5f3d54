//! Rows damaged by hand in the SQLite file (a value of another type, a version never written) are
//! that record's corruption, not a store outage.

use mfa_sqlite::SqliteStore;
use mfa_store_tests::{Hooked, TempDb};

#[tokio::test]
async fn rows_damaged_by_hand_are_corruption() {
    let db = TempDb::new("damaged");
    let store = SqliteStore::open(db.path()).await.unwrap();
    let path = db.path().to_owned();
    mfa_store_tests::sqlite_rows_damaged_by_hand_are_corruption(
        Hooked::new(store, ()),
        async |sql: &str| {
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute(sql, [])
                .unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn a_record_deleted_by_hand_and_made_again_ends_old_sessions() {
    let db = TempDb::new("deleted");
    let store = SqliteStore::open(db.path()).await.unwrap();
    let path = db.path().to_owned();
    mfa_store_tests::a_record_deleted_by_hand_and_made_again_ends_old_sessions(
        Hooked::new(store, ()),
        async |org: &mfa_core::OrgId, customer: &mfa_core::CustomerId| {
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute(
                    "DELETE FROM customers WHERE org = ?1 AND customer = ?2",
                    [org.as_str(), customer.as_str()],
                )
                .unwrap();
        },
    )
    .await;
}
