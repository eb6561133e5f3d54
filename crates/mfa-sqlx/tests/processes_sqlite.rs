//! Separate operating-system processes on one SQLite file through sqlx: eight racing to use one
//! code (exactly one wins), and one killed with `SIGKILL` in the middle of a stream of sign-ins
//! (nothing it reported is lost, nothing is accepted twice, the file passes `PRAGMA
//! integrity_check`). The tests are the kit's; this file says how a process opens the store.

mod common;

use mfa_sqlx::SqliteStore;
use mfa_sqlx::sqlx::{Connection as _, SqliteConnection};
use mfa_store_tests::{ProcessStore, TempDb};

struct SqliteFile {
    db: TempDb,
    location: String,
}

impl ProcessStore for SqliteFile {
    type Store = SqliteStore;

    async fn create(label: &str) -> Option<Self> {
        let db = TempDb::new(&format!("sqlx-{label}"));
        let location = db.path().to_str().expect("a UTF-8 path").to_owned();
        Some(Self { db, location })
    }

    fn location(&self) -> &str {
        &self.location
    }

    async fn open(location: &str) -> SqliteStore {
        let pool = common::sqlite_pool(std::path::Path::new(location)).await;
        SqliteStore::new(pool).await.expect("open the store")
    }

    async fn close(store: SqliteStore) {
        store.pool().close().await;
    }

    /// Right after the kill, before anything else opens the file: every page, index and
    /// constraint.
    async fn check_after_kill(&self) {
        let options = SqliteStore::connect_options(self.db.path());
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .expect("open after the kill");
        let problems: Vec<String> = mfa_sqlx::sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut connection)
            .await
            .expect("run the integrity check");
        assert_eq!(problems, ["ok"], "the file after the kill");
        connection
            .close()
            .await
            .expect("close the checking connection");
    }
}

mfa_store_tests::process_suite!(SqliteFile);
