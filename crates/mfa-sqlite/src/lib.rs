#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Panic policy (as in mfa-core): an error means bad input, a panic means a broken invariant, and no
// input may cause one.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod error;
mod options;
mod queries;
mod schema;
mod worker;

use std::path::{Path, PathBuf};

use mfa_core::{
    CustomerId, KeyId, OrgId, OrgPolicy, Store, UnixTime,
    audit::{AuditExport, AuditQuery, Event, StoredEvent},
    machine::CustomerRecord,
    store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
};

pub use error::SqliteError;
pub use options::SqliteOptions;
pub use schema::{BUSY_TIMEOUT, SCHEMA_VERSION};

use queries::{CustomerRow, EventRow};
use worker::Worker;

/// A [`Store`] in one SQLite database file (or in memory, for tests).
///
/// # Threads
///
/// One connection, which runs the store's calls one after another. SQLite calls block, sometimes
/// for long (`fsync` at every commit, or waiting up to the busy timeout for another process's lock),
/// and none of that holds up a runtime's other tasks:
///
/// - On a worker of a multi-thread tokio runtime, a call that finds the connection free and no call
///   queued runs at once inside [`tokio::task::block_in_place`], which hands the worker's other
///   tasks to another thread first. The call never waits for a parked thread to wake and answer,
///   which is most of what a lookup of a few microseconds would otherwise cost.
/// - Otherwise (the connection is busy, a current-thread runtime, another executor) the call is a
///   closure sent to a dedicated thread that serves the connection, and the answer comes back on a
///   oneshot channel. Under load all calls but the running one wait in that queue, holding no
///   thread.
///
/// This rather than a pool of connections on `spawn_blocking`: SQLite lets one writer in at a time
/// anyway, so a pool would mostly queue on the write lock, each waiter holding a thread of tokio's
/// blocking pool; a single connection keeps the prepared-statement cache warm, works with any
/// executor, and serves an in-memory database, which exists only on the connection that created
/// it. The cost is that reads queue behind writes in this process; each is a primary-key or index
/// lookup of microseconds.
///
/// Calls queued before the store is dropped still run; the thread then closes the connection.
/// [`close`](Self::close) does the same and waits for it.
///
/// # Atomicity
///
/// Each conditional write is one `BEGIN IMMEDIATE` transaction: check the version, store the record,
/// insert its audit events, commit. `IMMEDIATE` takes the file's write lock first, so writers in
/// other processes on the same file serialise too. A version that does not match, or a lock still
/// held by another process after the busy timeout ([`SqliteOptions::busy_timeout`], by default
/// [`BUSY_TIMEOUT`]), rolls everything back and gives [`Written::Conflict`]. Versions start at 1
/// and grow by one per write; a record deleted by hand leaves its last version behind (a trigger
/// keeps it), so the key never reuses a version.
pub struct SqliteStore {
    worker: Worker,
    path: Option<PathBuf>,
}

impl core::fmt::Debug for SqliteStore {
    // The path only: the rows hold sealed secrets and backup-code hashes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database file at `path`, creating it if missing, and migrates it to
    /// [`SCHEMA_VERSION`]. The connection uses WAL journaling, full sync at every commit, foreign
    /// keys, and waits up to [`BUSY_TIMEOUT`] for locks held by other processes: the same as
    /// [`open_with`](Self::open_with) with the default [`SqliteOptions`].
    ///
    /// Several processes may open the same file at once: migrations run in one `BEGIN IMMEDIATE`
    /// transaction, so they take turns and only the first migrates.
    ///
    /// # Errors
    /// [`SqliteError::NewerSchema`] for a file migrated by a newer version of this crate and
    /// [`SqliteError::NotOurs`] for another application's database, both left untouched;
    /// [`SqliteError::Sqlite`] when the file cannot be opened, read or migrated;
    /// [`SqliteError::Io`] when the database thread cannot be started.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens the database file at `path` as [`open`](Self::open) does, with `options` (a shorter
    /// busy timeout, a ceiling on the file's size).
    ///
    /// # Errors
    /// As [`open`](Self::open); also [`SqliteError::Sqlite`] (`SQLITE_FULL`) when migrating a new
    /// file needs more than [`SqliteOptions::max_size`].
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, SqliteError> {
        let path = path.as_ref().to_path_buf();
        let opened = path.clone();
        let worker = Worker::start(move || schema::open(Some(&opened), &options)).await?;
        Ok(Self {
            worker,
            path: Some(path),
        })
    }

    /// A new, private database in memory, migrated: for tests and examples. It is gone when the store
    /// is dropped.
    ///
    /// # Errors
    /// [`SqliteError::Sqlite`] if SQLite cannot allocate it; [`SqliteError::Io`] when the database
    /// thread cannot be started.
    pub async fn open_in_memory() -> Result<Self, SqliteError> {
        let worker = Worker::start(|| schema::open(None, &SqliteOptions::default())).await?;
        Ok(Self { worker, path: None })
    }

    /// The database file's path (`None` in memory).
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs every call already queued, then closes the connection and stops its thread. Closing the
    /// last connection to a file checkpoints the write-ahead log into the database file and removes
    /// the log.
    ///
    /// # Errors
    /// [`SqliteError::Sqlite`] if SQLite reports an error while closing (the connection is closed
    /// anyway); [`SqliteError::WorkerGone`] if the thread had already stopped.
    pub async fn close(self) -> Result<(), SqliteError> {
        self.worker.close().await
    }
}

/// A stored policy or customer record and its version, its bytes left for `mfa-core` to read.
fn stored<T>(row: Option<queries::RecordRow>) -> Option<Versioned<Encoded<T>>> {
    row.map(|(version, bytes)| mfa_sql::read_row(version, bytes))
}

fn event_rows(events: &[Event]) -> Vec<EventRow> {
    events.iter().map(EventRow::new).collect()
}

impl Store for SqliteStore {
    type Error = SqliteError;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, SqliteError> {
        let org = org.as_str().to_owned();
        Ok(stored(
            self.worker
                .call(move |connection| queries::load_org(connection, &org))
                .await?,
        ))
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, SqliteError> {
        let org = org.as_str().to_owned();
        let policy = policy.to_bytes();
        let events = event_rows(events);
        self.worker
            .call(move |connection| {
                queries::write_org(connection, &org, expected, &policy, &events)
            })
            .await
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, SqliteError> {
        let (org, customer) = (org.as_str().to_owned(), customer.as_str().to_owned());
        Ok(stored(
            self.worker
                .call(move |connection| queries::load_customer(connection, &org, &customer))
                .await?,
        ))
    }

    async fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<OrgAndCustomer, SqliteError> {
        let (org, customer) = (org.as_str().to_owned(), customer.as_str().to_owned());
        // One trip to the connection's thread for both.
        let (org_row, customer_row) = self
            .worker
            .call(move |connection| {
                Ok((
                    queries::load_org(connection, &org)?,
                    queries::load_customer(connection, &org, &customer)?,
                ))
            })
            .await?;
        Ok((stored(org_row), stored(customer_row)))
    }

    async fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> Result<Written, SqliteError> {
        let (org, customer) = (org.as_str().to_owned(), customer.as_str().to_owned());
        let record = CustomerRow::new(record);
        let events = event_rows(events);
        self.worker
            .call(move |connection| {
                queries::write_customer(connection, &org, &customer, expected, &record, &events)
            })
            .await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), SqliteError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = event_rows(events);
        self.worker
            .call(move |connection| queries::append_events(connection, &events))
            .await
    }

    async fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<StoredEvent>, SqliteError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let org = org.as_str().to_owned();
        let customer = query.customer.as_ref().map(|c| c.as_str().to_owned());
        // `seq < before` as `seq <= before - 1`, so no bound is needed when paging is off; values
        // beyond what SQLite holds are clamped (the trait allows clamping the limit).
        let last = query.before_seq.map_or(i64::MAX, |before| {
            i64::try_from(before.saturating_sub(1)).unwrap_or(i64::MAX)
        });
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows = self
            .worker
            .call(move |connection| {
                queries::audit(connection, &org, customer.as_deref(), last, limit)
            })
            .await?;
        stored_events(rows)
    }

    async fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> Result<Vec<StoredEvent>, SqliteError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let org = org.as_str().to_owned();
        let customer = query.customer.as_ref().map(|c| c.as_str().to_owned());
        // Past what SQLite holds, no row can match.
        let Ok(after) = i64::try_from(query.after_seq.unwrap_or(0)) else {
            return Ok(Vec::new());
        };
        let Ok(since) = i64::try_from(query.since.map_or(0, UnixTime::as_secs)) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows = self
            .worker
            .call(move |connection| {
                queries::export_audit(connection, &org, customer.as_deref(), after, since, limit)
            })
            .await?;
        stored_events(rows)
    }

    async fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> Result<Vec<CustomerKey>, SqliteError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (after_org, after_customer) = after.map_or_else(Default::default, |(o, c)| {
            (o.as_str().to_owned(), c.as_str().to_owned())
        });
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .worker
            .call(move |connection| {
                queries::sealed_under(
                    connection,
                    i64::from(key.get()),
                    (&after_org, &after_customer),
                    limit,
                )
            })
            .await?;
        rows.into_iter()
            .map(|(org, customer)| Ok(mfa_sql::customer_key(org, customer)?))
            .collect()
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, SqliteError> {
        let rows = self
            .worker
            .call(|connection| queries::count_sealed(connection))
            .await?;
        rows.into_iter()
            .map(|(key, count)| Ok(mfa_sql::sealed_count(key, count)?))
            .collect()
    }
}

/// Events as stored, checked and decoded.
fn stored_events(rows: Vec<queries::Row>) -> Result<Vec<StoredEvent>, SqliteError> {
    rows.into_iter()
        .map(|(seq, bytes)| {
            Ok(StoredEvent {
                seq: mfa_sql::stored_seq(seq)?,
                event: Event::from_bytes(&bytes)?,
            })
        })
        .collect()
}
