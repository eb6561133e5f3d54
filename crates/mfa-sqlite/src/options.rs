//! How a connection is opened: the settings an operator may want to change.

use std::time::Duration;

use crate::BUSY_TIMEOUT;

/// Settings for [`SqliteStore::open_with`](crate::SqliteStore::open_with); the default is what
/// [`SqliteStore::open`](crate::SqliteStore::open) uses.
///
/// ```
/// use std::time::Duration;
/// use mfa_sqlite::SqliteOptions;
///
/// let mut options = SqliteOptions::default();
/// options.busy_timeout = Duration::from_millis(250);
/// options.max_size = Some(1 << 30);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How long a statement waits for a lock held by another connection (another process on the
    /// same file) before giving up; [`BUSY_TIMEOUT`] (5 s) by default, at most about 24 days (SQLite
    /// counts milliseconds in a C `int`; longer is taken as that). Zero does not wait at all.
    ///
    /// A conditional write that gives up has rolled back and reports
    /// [`Written::Conflict`](mfa_core::store::Written::Conflict), which the [`Service`](mfa_core::Service)
    /// retries with fresh data, up to its attempt limit ([`DEFAULT_MAX_ATTEMPTS`], 16): while
    /// another process holds the write lock, a call waits up to that limit times this timeout
    /// (80 s with the defaults) before it ends with
    /// [`ServiceError::Contended`](mfa_core::ServiceError::Contended). Choose the two so that their
    /// product fits your sign-in's deadline: 250 ms lets a call wait 4 s, longer than any commit
    /// takes, while an administrator's stray `BEGIN EXCLUSIVE` in the `sqlite3` shell fails sign-ins
    /// in seconds rather than hanging them. Other statements (reads, appended events) that give up
    /// fail with [`SqliteError::Sqlite`](crate::SqliteError::Sqlite) (`SQLITE_BUSY`).
    ///
    /// [`DEFAULT_MAX_ATTEMPTS`]: mfa_core::DEFAULT_MAX_ATTEMPTS
    pub busy_timeout: Duration,
    /// A ceiling on the database file, in bytes (rounded down to whole pages, at least one); `None`
    /// (the default) for none. A write that would grow the file past it fails with
    /// [`SqliteError::Sqlite`](crate::SqliteError::Sqlite) (`SQLITE_FULL`) and changes nothing, as
    /// on a full disk; pages freed by deletions are reused first. It keeps the audit log from filling
    /// a disk that other services share. The write-ahead log beside the file is not counted (it is
    /// emptied into the file at checkpoints), and a file already larger stays readable and writable
    /// within its size.
    pub max_size: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: BUSY_TIMEOUT,
            max_size: None,
        }
    }
}
