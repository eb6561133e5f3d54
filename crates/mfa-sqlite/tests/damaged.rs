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
