//! Separate operating-system processes on one database file: eight racing to use one code (exactly
//! one wins), and one killed with `SIGKILL` in the middle of a stream of sign-ins (nothing it
//! reported is lost, nothing is accepted twice, the file passes `PRAGMA integrity_check`). The
//! tests are the store-generic ones of `mfa-store-tests`; this file says how a process opens the
//! store.

use mfa_sqlite::SqliteStore;
use mfa_store_tests::ProcessStore;
use mfa_store_tests::TempDb;
use rusqlite::Connection;

/// A temporary database file, removed with the files beside it when the test ends.
struct SqliteFile {
    db: TempDb,
    location: String,
}

impl ProcessStore for SqliteFile {
    type Store = SqliteStore;

    async fn create(label: &str) -> Option<Self> {
        let db = TempDb::new(label);
        let location = db.path().to_str().expect("a UTF-8 path").to_owned();
        Some(Self { db, location })
    }

    fn location(&self) -> &str {
        &self.location
    }

    async fn open(location: &str) -> SqliteStore {
        SqliteStore::open(location).await.expect("open the store")
    }

    async fn close(store: SqliteStore) {
        store.close().await.expect("close the store");
    }

    /// The killed process left the write-ahead log as it was; this connection recovers it, then
    /// checks every page, index and constraint.
    async fn check_after_kill(&self) {
        let connection = Connection::open(self.db.path()).expect("open after the kill");
        let problems: Vec<String> = connection
            .prepare("PRAGMA integrity_check")
            .and_then(|mut check| {
                check
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<_, _>>()
            })
            .expect("run the integrity check");
        assert_eq!(problems, ["ok"], "the file after the kill");
        connection.close().expect("close the checking connection");
    }
}

mfa_store_tests::process_suite!(SqliteFile);
