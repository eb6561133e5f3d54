//! The database goes away in the middle of a request, and comes back: the store-generic checks of
//! `mfa-store-tests` (a typed error within a deadline, nothing half-written, the next request works
//! on the same store), with what "goes away" means for one SQLite file:
//!
//! - another connection holds the write lock (`BEGIN EXCLUSIVE`, as an administrator's `sqlite3`
//!   shell or a backup tool might) for longer than the busy timeout: every write gives up, is
//!   retried as a lost race, and the request ends with [`ServiceError::Contended`];
//! - the disk is full: the store's file may not grow (a [`SqliteOptions::max_size`] ceiling, the
//!   space below it taken by another connection), so a write that needs a new page fails with
//!   `SQLITE_FULL`, until that space is freed.
//!
//! SQLite's locks are the file's, so a second connection in this process excludes the store's as
//! another process would. (A database file deleted or replaced while open is not an outage SQLite
//! can see: the open file lives on, unlinked; see the README.)

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mfa_core::ServiceError;
use mfa_sqlite::{SqliteError, SqliteOptions, SqliteStore};
use mfa_store_tests::TempDb;
use mfa_store_tests::{Outage, requests_fail_cleanly_while_the_database_is_away};
use rusqlite::{Connection, ErrorCode};

/// How long a request may take while the database is away: far above the retries' worst case here
/// (16 attempts, each waiting [`BUSY_TIMEOUT`] for the lock), far below forever.
const DEADLINE: Duration = Duration::from_secs(5);
const BUSY_TIMEOUT: Duration = Duration::from_millis(10);

/// Another connection holds the database's write lock while the outage lasts.
struct HeldLock {
    path: PathBuf,
    holder: Mutex<Option<Connection>>,
}

impl Outage for HeldLock {
    async fn begin(&self) {
        let connection = Connection::open(&self.path).expect("open the locking connection");
        connection
            .execute_batch("BEGIN EXCLUSIVE")
            .expect("take the write lock");
        *self.holder.lock().expect("the holder") = Some(connection);
    }

    async fn end(&self) {
        let connection = self
            .holder
            .lock()
            .expect("the holder")
            .take()
            .expect("the lock was taken");
        connection
            .execute_batch("ROLLBACK")
            .expect("release the lock");
        connection.close().expect("close the locking connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_past_the_busy_timeout_fails_requests_cleanly() {
    let db = TempDb::new("held-lock");
    let mut options = SqliteOptions::default();
    options.busy_timeout = BUSY_TIMEOUT;
    let store = SqliteStore::open_with(db.path(), options).await.unwrap();
    let outage = HeldLock {
        path: db.path().to_path_buf(),
        holder: Mutex::new(None),
    };
    let started = Instant::now();
    let errors = requests_fail_cleanly_while_the_database_is_away(store, outage, DEADLINE).await;
    println!("{errors:?} in {:?}", started.elapsed());
    // Writes give up (a lost race, retried, then given up on); reads go on, as WAL lets them.
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|error| matches!(error, ServiceError::Contended)),
        "{errors:?}"
    );
}

/// The ceiling the store is opened with, in bytes.
const MAX_SIZE: u64 = 1 << 20;

/// Another connection fills the space the store may grow into (a table of zeros, bigger than the
/// ceiling: free pages go first, then the file grows past the ceiling), and frees it at the end.
struct FullDisk {
    path: PathBuf,
}

impl Outage for FullDisk {
    async fn begin(&self) {
        let connection = Connection::open(&self.path).expect("open the filling connection");
        connection
            .execute_batch(&format!(
                "CREATE TABLE ballast (b BLOB); INSERT INTO ballast VALUES (zeroblob({}));",
                MAX_SIZE * 2
            ))
            .expect("fill the space");
        connection.close().expect("close the filling connection");
    }

    async fn end(&self) {
        let connection = Connection::open(&self.path).expect("open the filling connection");
        connection
            .execute_batch("DROP TABLE ballast")
            .expect("free the space");
        connection.close().expect("close the filling connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_requests_cleanly() {
    let db = TempDb::new("full-disk");
    let mut options = SqliteOptions::default();
    options.max_size = Some(MAX_SIZE);
    let store = SqliteStore::open_with(db.path(), options).await.unwrap();
    let outage = FullDisk {
        path: db.path().to_path_buf(),
    };
    let errors = requests_fail_cleanly_while_the_database_is_away(store, outage, DEADLINE).await;
    println!("{errors:?}");
    assert!(!errors.is_empty());
    assert!(
        errors.iter().all(|error| matches!(
            error,
            ServiceError::Store(SqliteError::Sqlite(sqlite))
                if sqlite.sqlite_error_code() == Some(ErrorCode::DiskFull)
        )),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_ceiling_below_what_migrating_needs_refuses_to_open() {
    let db = TempDb::new("tiny");
    let mut options = SqliteOptions::default();
    options.max_size = Some(4096);
    let error = SqliteStore::open_with(db.path(), options)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SqliteError::Sqlite(sqlite) if sqlite.sqlite_error_code() == Some(ErrorCode::DiskFull)),
        "{error:?}"
    );
}
