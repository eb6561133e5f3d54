//! The SQLite store passes the store conformance suite, in memory and on files.

mod in_memory {
    mfa_store_tests::conformance_suite!(async {
        mfa_sqlite::SqliteStore::open_in_memory().await.unwrap()
    });
}

/// On a fresh file per test, where WAL, file locks and the busy timeout are real.
mod on_file {
    use mfa_sqlite::SqliteStore;
    use mfa_store_tests::{Hooked, Hooks};

    use mfa_store_tests::TempDb;

    /// The temporary file, removed when the test drops the store: the store (declared first in
    /// [`Hooked`]) is told to close before the files go. Nothing is hooked.
    struct Removed {
        _db: TempDb,
    }

    impl Hooks for Removed {}

    async fn file_store() -> Hooked<SqliteStore, Removed> {
        let db = TempDb::new("conformance");
        let store = SqliteStore::open(db.path()).await.unwrap();
        Hooked {
            store,
            hooks: Removed { _db: db },
        }
    }

    mfa_store_tests::conformance_suite!(file_store());
}

/// On a current-thread runtime every call goes through the connection's own thread (elsewhere most
/// run inline, on the caller's): the same checks hold on that path.
mod queued {
    mfa_store_tests::conformance_suite!(runtime = current_thread, async {
        mfa_sqlite::SqliteStore::open_in_memory().await.unwrap()
    });
}
