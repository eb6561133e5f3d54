//! What can go wrong in the PostgreSQL store, each failure keeping its source.

use mfa_core::store::DecodeError;

/// Why the PostgreSQL store failed.
///
/// A lost race is not an error: it is [`Written::Conflict`](mfa_core::store::Written::Conflict), and so
/// are serialization failures and deadlocks, which the service retries. An `Err` from a write may
/// hide a commit that happened (the connection dropped after the server committed); treat it as
/// "unknown", never as "not written".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The server refused or failed a statement, or the connection broke.
    #[error("a PostgreSQL statement failed")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool in time (the server is down or unreachable, or
    /// every connection stayed busy past the pool's timeout).
    #[error("no PostgreSQL connection could be had from the pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement got no answer within the query timeout
    /// ([`PostgresOptions::query_timeout`](crate::PostgresOptions::query_timeout)); its connection
    /// was closed. A write that timed out may still have been committed.
    ///
    /// Or opening the store did not create or migrate the schema within the migration timeout
    /// ([`PostgresOptions::migration_timeout`](crate::PostgresOptions::migration_timeout)):
    /// another session held the migration lock or a lock on one of the tables, or the server did
    /// not answer. The migration was rolled back, unless its commit was what went unanswered.
    #[error("postgres: no answer within the timeout")]
    Timeout,
    /// The connection pool could not be built from the configuration.
    #[error("the PostgreSQL connection pool could not be built")]
    Build(#[from] deadpool_postgres::BuildError),
    /// The connection string could not be read.
    #[error("the PostgreSQL connection string is invalid")]
    Config(#[source] tokio_postgres::Error),
    /// A stored audit event is not one this version of `mfa-core` can read. (Records and policies
    /// are handed to `mfa-core` undecoded: it reports them as corrupt itself.)
    #[error("a stored audit event cannot be read")]
    Decode(#[from] DecodeError),
    /// The schema name is not a plain lower-case identifier (letters, digits, `_`, at most 63
    /// bytes, not starting with a digit or `pg_`).
    #[error("{0:?} is not a plain lower-case identifier usable as the MFA schema name")]
    InvalidSchema(String),
    /// The schema was migrated by a newer version of this crate. It was left untouched: upgrade,
    /// or restore a backup taken before the upgrade.
    #[error(
        "the MFA schema has version {found}; this version of mfa-postgres supports up to {supported}"
    )]
    NewerSchema {
        /// The schema's version (the highest row of its `schema_migrations` table).
        found: i32,
        /// The newest schema version this crate knows ([`SCHEMA_VERSION`](crate::SCHEMA_VERSION)).
        supported: i32,
    },
    /// The schema holds tables that this crate did not create. It was left untouched: give the
    /// MFA store a schema of its own.
    #[error(
        "the schema {schema:?} holds tables mfa-postgres did not create; refusing to change it"
    )]
    NotOurs {
        /// The schema's name.
        schema: String,
    },
    /// A row holds a value this crate never writes (a version or sequence number below 1): the
    /// database was edited by hand or is damaged.
    #[error("the database holds {0}, which mfa-postgres never writes")]
    Corrupt(&'static str),
}

impl From<mfa_sql::Corrupt> for PostgresError {
    fn from(corrupt: mfa_sql::Corrupt) -> Self {
        Self::Corrupt(corrupt.0)
    }
}
