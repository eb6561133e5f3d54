//! No secret and no backup code rests in plaintext in the database: the raw bytes of the database
//! file and of its write-ahead log are searched for them (the kit's needles), while the store is
//! open and after closing it checkpoints the log into the file.

use std::sync::Arc;

use mfa_sqlite::SqliteStore;
use mfa_store_tests::TempDb;
use mfa_store_tests::plaintext::secrets_written;

/// Every file SQLite keeps for the database, concatenated with a separator no needle holds.
fn every_file(db: &TempDb) -> Vec<u8> {
    let mut bytes = Vec::new();
    for file in db.files() {
        if let Ok(content) = std::fs::read(&file) {
            bytes.extend_from_slice(&content);
            bytes.push(0);
        }
    }
    bytes
}

#[tokio::test]
async fn neither_the_secret_nor_a_backup_code_appears_in_the_files() {
    let db = TempDb::new("plaintext");
    let store = Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let secrets = secrets_written(Arc::clone(&store)).await;
    // While the store is open, recent writes sit in the write-ahead log.
    assert!(db.files()[1].exists(), "the write-ahead log is in use");
    secrets.assert_absent(&every_file(&db), "the files of the open database");
    // Closing checkpoints the log into the database file.
    let store = Arc::into_inner(store).expect("the service is gone");
    store.close().await.unwrap();
    secrets.assert_absent(&every_file(&db), "the database file after a checkpoint");
}
