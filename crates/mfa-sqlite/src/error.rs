//! What can go wrong in the SQLite store, each failure keeping its source.

use mfa_core::store::DecodeError;

/// Why the SQLite store failed.
///
/// A lost race is not an error: it is [`Written::Conflict`](mfa_core::store::Written::Conflict). An `Err`
/// from a write may hide a commit that happened (the disk failed after `COMMIT`); treat it as
/// "unknown", never as "not written".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// SQLite refused or failed a statement (I/O error, full disk or
    /// [`max_size`](crate::SqliteOptions::max_size) reached, corrupt file, a lock held longer than
    /// the [busy timeout](crate::SqliteOptions::busy_timeout) outside a conditional write...); its
    /// [`sqlite_error_code`](rusqlite::Error::sqlite_error_code) says which.
    #[error("an SQLite statement failed")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored audit event is not one this version of `mfa-core` can read. (Records and policies
    /// are handed to `mfa-core` undecoded: it reports them as corrupt itself.)
    #[error("a stored audit event cannot be read")]
    Decode(#[from] DecodeError),
    /// The database was migrated by a newer version of this crate. It was left untouched: upgrade,
    /// or restore a backup taken before the upgrade.
    #[error(
        "the database has schema version {found}; this version of mfa-sqlite supports up to {supported}"
    )]
    NewerSchema {
        /// The schema version in the file (`PRAGMA user_version`).
        found: i64,
        /// The newest schema version this crate knows ([`SCHEMA_VERSION`](crate::SCHEMA_VERSION)).
        supported: i64,
    },
    /// The file is an SQLite database that this crate did not create (another application's id, or
    /// tables but no id). It was left untouched: give the MFA store a file of its own.
    #[error(
        "the database was not created by mfa-sqlite (application id {application_id:#x}); refusing to change it"
    )]
    NotOurs {
        /// The file's `PRAGMA application_id` (0 when none was set).
        application_id: i32,
    },
    /// A row holds a value this crate never writes (a version or sequence number below 1): the
    /// database was edited by hand or is damaged.
    #[error("the database holds {0}, which mfa-sqlite never writes")]
    Corrupt(&'static str),
    /// The thread that owns the connection has stopped (after [`close`](crate::SqliteStore::close),
    /// or because a bug made it panic): every later call fails with this.
    #[error("the database thread has stopped")]
    WorkerGone,
    /// The thread that owns the connection could not be started.
    #[error("could not start the database thread")]
    Io(#[source] std::io::Error),
}

impl From<mfa_sql::Corrupt> for SqliteError {
    fn from(corrupt: mfa_sql::Corrupt) -> Self {
        Self::Corrupt(corrupt.0)
    }
}
