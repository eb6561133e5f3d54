//! Opening the store a [`DatabaseUrl`] names: one reading of "SQLite or PostgreSQL from a URL" for
//! `mfa admin`, the portal and any host that takes a URL from its operator.

use std::path::PathBuf;

use mfa_core::{
    CustomerId, KeyId, OrgId, OrgPolicy, Store,
    audit::{AuditExport, AuditQuery, Event, StoredEvent},
    machine::CustomerRecord,
    store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
};
use mfa_postgres::{PostgresError, PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
use mfa_sqlite::{SqliteError, SqliteStore};

use super::DatabaseUrl;

/// What [`open`] does with a SQLite file that is not there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missing {
    /// Refuse ([`OpenError::NoSuchFile`]): a tool run against a mistyped path must not start an
    /// empty store (`mfa admin`).
    #[default]
    Refuse,
    /// Create it, readable by its owner only, before SQLite first writes it (a service's first
    /// start).
    Create,
}

/// How [`open`] opens a store.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct OpenOptions {
    /// A SQLite file that is not there.
    pub missing: Missing,
    /// The PostgreSQL schema (default: `mfa`); refused for SQLite, whose file holds one store.
    pub schema: Option<String>,
}

impl OpenOptions {
    /// Refuses a missing SQLite file and uses PostgreSQL's default schema.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// What to do with a SQLite file that is not there.
    #[must_use]
    pub const fn missing(mut self, missing: Missing) -> Self {
        self.missing = missing;
        self
    }

    /// The PostgreSQL schema, when given.
    #[must_use]
    pub fn schema(mut self, schema: Option<String>) -> Self {
        self.schema = schema;
        self
    }
}

/// The store was not opened. Each message names the database without its password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// [`Missing::Refuse`] and no file at the path.
    #[error("{0}: no such database file")]
    NoSuchFile(DatabaseUrl),
    /// A schema was given for a SQLite database.
    #[error("{0}: a schema is for PostgreSQL; a SQLite file holds one store")]
    SchemaOnSqlite(DatabaseUrl),
    /// This build cannot open that kind of database (SQLite without the `sqlite` feature, or a
    /// kind a newer version names).
    #[error("{0}: this build cannot open that database")]
    Unsupported(DatabaseUrl),
    /// The SQLite file could not be created.
    #[error("{url}: creating the file")]
    Create {
        /// The database.
        url: DatabaseUrl,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store refused to open (unreachable, a newer or foreign schema...).
    #[error("{url}")]
    Store {
        /// The database.
        url: DatabaseUrl,
        /// Why.
        #[source]
        source: AnyStoreError,
    },
}

/// A store opened from a URL: SQLite or PostgreSQL, one [`Store`] either way.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// A SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    /// A PostgreSQL schema.
    Postgres(PostgresStore),
}

/// The failure of an [`AnyStore`]: its store's own error, source chain intact.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnyStoreError {
    /// From SQLite.
    #[cfg(feature = "sqlite")]
    #[error(transparent)]
    Sqlite(#[from] SqliteError),
    /// From PostgreSQL.
    #[error(transparent)]
    Postgres(#[from] PostgresError),
}

/// Opens (and, on first use, creates and migrates) the store `url` names.
///
/// # Errors
/// [`OpenError`], naming the database without its password.
pub async fn open(url: &DatabaseUrl, options: &OpenOptions) -> Result<AnyStore, OpenError> {
    match url {
        DatabaseUrl::Sqlite(path) => open_sqlite(url, path.clone(), options).await,
        DatabaseUrl::Postgres(config) => {
            let mut postgres = PostgresOptions::default();
            if let Some(schema) = &options.schema {
                postgres = postgres.schema(schema.clone());
            }
            PostgresStore::connect_with(config.as_ref().clone(), postgres)
                .await
                .map(AnyStore::Postgres)
                .map_err(|source| OpenError::Store {
                    url: url.clone(),
                    source: source.into(),
                })
        }
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(
    url: &DatabaseUrl,
    path: PathBuf,
    options: &OpenOptions,
) -> Result<AnyStore, OpenError> {
    if options.schema.is_some() {
        return Err(OpenError::SchemaOnSqlite(url.clone()));
    }
    match options.missing {
        // SQLite would create a missing file: a mistyped path must not start a new store.
        Missing::Refuse if !path.is_file() => return Err(OpenError::NoSuchFile(url.clone())),
        Missing::Refuse => {}
        Missing::Create => {
            crate::files::ensure_private(&path).map_err(|source| OpenError::Create {
                url: url.clone(),
                source,
            })?;
        }
    }
    SqliteStore::open(&path)
        .await
        .map(AnyStore::Sqlite)
        .map_err(|source| OpenError::Store {
            url: url.clone(),
            source: source.into(),
        })
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(
    url: &DatabaseUrl,
    _: PathBuf,
    _: &OpenOptions,
) -> Result<AnyStore, OpenError> {
    Err(OpenError::Unsupported(url.clone()))
}

impl AnyStore {
    /// Closes the store: SQLite checkpoints and closes its file (waiting for its thread);
    /// PostgreSQL closes its pool.
    ///
    /// # Errors
    /// SQLite's error when the file does not close cleanly.
    pub async fn close(self) -> Result<(), AnyStoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(store) => Ok(store.close().await?),
            Self::Postgres(store) => {
                store.close();
                Ok(())
            }
        }
    }
}

/// Runs `$call` on whichever store this is, with its error made an [`AnyStoreError`].
macro_rules! either {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($store) => $call.await.map_err(AnyStoreError::from),
            AnyStore::Postgres($store) => $call.await.map_err(AnyStoreError::from),
        }
    };
}

impl Store for AnyStore {
    type Error = AnyStoreError;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, Self::Error> {
        either!(self, store => store.load_org(org))
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, Self::Error> {
        either!(self, store => store.write_org(org, expected, policy, events))
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, Self::Error> {
        either!(self, store => store.load_customer(org, customer))
    }

    async fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<OrgAndCustomer, Self::Error> {
        either!(self, store => store.load_org_and_customer(org, customer))
    }

    async fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> Result<Written, Self::Error> {
        either!(self, store => store.write_customer(org, customer, expected, record, events))
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), Self::Error> {
        either!(self, store => store.append_events(events))
    }

    async fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<StoredEvent>, Self::Error> {
        either!(self, store => store.audit(org, query))
    }

    async fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> Result<Vec<StoredEvent>, Self::Error> {
        either!(self, store => store.export_audit(org, query))
    }

    async fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> Result<Vec<CustomerKey>, Self::Error> {
        either!(self, store => store.sealed_under(key, after, limit))
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, Self::Error> {
        either!(self, store => store.count_sealed())
    }
}
