//! What can go wrong in the sqlx stores, each failure keeping its source.

use mfa_core::store::DecodeError;

/// Why a sqlx store failed.
///
/// A lost race is not an error: it is [`Written::Conflict`](mfa_core::store::Written::Conflict).
/// An `Err` from a write may hide a commit that happened (the connection dropped after `COMMIT`);
/// treat it as "unknown", never as "not written".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlxError {
    /// sqlx failed: the database refused or failed a statement, the pool gave no connection in
    /// time (its `acquire_timeout`) or is closed, the connection broke. The source says which.
    #[error("an SQL statement failed")]
    Sqlx(#[from] sqlx::Error),
    /// A statement took longer than the store's query timeout; its connection was closed, not
    /// given back to the pool.
    #[error("the database did not answer within the query timeout")]
    Timeout,
    /// A stored audit event is not one this version of `mfa-core` can read. (Records and policies
    /// are handed to `mfa-core` undecoded: it reports them as corrupt itself.)
    #[error("a stored audit event cannot be read")]
    Decode(#[from] DecodeError),
    /// The database was migrated by a newer version of the mfa stores. It was left untouched:
    /// upgrade, or restore a backup taken before the upgrade.
    #[error(
        "the database has schema version {found}; this version of mfa-sqlx supports up to {supported}"
    )]
    NewerSchema {
        /// The schema version found.
        found: i64,
        /// The newest schema version this crate knows.
        supported: i64,
    },
    /// The database (SQLite) or schema (PostgreSQL) holds tables the mfa stores did not create.
    /// It was left untouched: give the MFA store a database or schema of its own.
    #[error("{what} holds tables the mfa stores did not create; refusing to change it")]
    NotOurs {
        /// Which database or schema.
        what: String,
    },
    /// The PostgreSQL schema name is not a plain lower-case identifier.
    #[error("{0:?} is not a plain lower-case identifier (a-z, 0-9, _; at most 63 bytes)")]
    InvalidSchema(String),
    /// The SQLite pool's connections are not set up to keep a commit across a power cut
    /// (`synchronous = FULL` and a journal): an accepted code could be accepted again after a
    /// crash. Build the pool with [`SqliteStore::connect_options`](crate::SqliteStore::connect_options),
    /// or set the same on your own options.
    #[cfg(feature = "sqlite")]
    #[error("the SQLite pool runs with {setting} = {found}; the store needs {needed}")]
    NotDurable {
        /// The setting.
        setting: &'static str,
        /// What the connection reports.
        found: String,
        /// What the store needs.
        needed: &'static str,
    },
    /// A row holds a value the mfa stores never write (a version or sequence number below 1): the
    /// database was edited by hand or is damaged.
    #[error("the database holds {0}, which the mfa stores never write")]
    Corrupt(&'static str),
}

impl From<mfa_sql::Corrupt> for SqlxError {
    fn from(corrupt: mfa_sql::Corrupt) -> Self {
        Self::Corrupt(corrupt.0)
    }
}

impl From<tokio::time::error::Elapsed> for SqlxError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Self::Timeout
    }
}
