//! The store on a `sqlx::SqlitePool`.

use std::path::Path;
use std::time::Duration;

use mfa_core::{
    CustomerId, KeyId, OrgId, OrgPolicy, Store,
    audit::{AuditExport, AuditQuery, Event, StoredEvent},
    machine::CustomerRecord,
    store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
};
use mfa_sql::sqlite::{
    AUDIT_CUSTOMER, AUDIT_ORG, COUNT_SEALED, EXPORT_CUSTOMER, EXPORT_ORG, IDENTIFY,
    INSERT_CUSTOMER, INSERT_EVENT, INSERT_ORG, Identified, LOAD_CUSTOMER, LOAD_ORG,
    LOAD_ORG_AND_CUSTOMER, MIGRATIONS, RETIRED_CUSTOMER, RETIRED_ORG, SCHEMA_VERSION, SEALED_UNDER,
    UPDATE_CUSTOMER, UPDATE_ORG,
};
use mfa_sql::{CustomerRow, EventRow, first_version, next_version};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection as _, Row, Sqlite, SqliteConnection, SqlitePool};

use crate::SqlxError;

/// How long a statement waits by default for the write lock another connection (or process)
/// holds before giving up, as `mfa-sqlite` waits.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Store`] in an SQLite database file, on the host's own `sqlx::SqlitePool`: the same file
/// format, statements and guarantees as `mfa-sqlite`'s `SqliteStore`, whose files it reads and
/// writes (and the other way round).
///
/// # A file of its own
///
/// SQLite has no schemas to keep the store's tables apart from the host's, so the pool must open
/// a file of the store's own (the file `mfa admin` and `mfa-sqlite` open); a file holding other
/// tables is refused untouched ([`SqlxError::NotOurs`]). [`SqliteStore::connect_options`] gives
/// the options to build that pool with.
///
/// # Atomicity
///
/// Each conditional write is one `BEGIN IMMEDIATE` transaction: check the version, store the
/// record, insert its audit events, commit. `IMMEDIATE` takes the file's write lock first, so
/// writers on other connections and in other processes serialise. A version that does not match,
/// or a lock still held by another writer after the busy timeout, rolls everything back and gives
/// [`Written::Conflict`]. Versions start at 1 and grow by one per write; a record deleted by hand
/// leaves its last version behind (a trigger keeps it), so a key never reuses a version.
///
/// # Durability
///
/// An accepted code must stay accepted across a power cut, or it could be replayed: the pool's
/// connections must run with `synchronous = FULL` (SQLite's default, which sqlx keeps unless told
/// otherwise) and a journal. Opening checks this and refuses a pool set up otherwise
/// ([`SqlxError::NotDurable`]), for example one with the `synchronous = NORMAL` often advised
/// with WAL.
pub struct SqliteStore {
    pool: SqlitePool,
    query_timeout: Duration,
}

impl core::fmt::Debug for SqliteStore {
    // The pool's size only: the rows hold sealed secrets and backup-code hashes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The options for a pool on the store's file at `path`: created if missing, WAL (readers
    /// never wait for the writer), `synchronous = FULL`, a 5 s busy timeout, foreign keys on.
    #[must_use]
    pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
    }

    /// The store on `pool`, its file created or migrated first (10 s per statement).
    ///
    /// # Errors
    /// As [`with_query_timeout`](Self::with_query_timeout).
    pub async fn new(pool: SqlitePool) -> Result<Self, SqlxError> {
        Self::with_query_timeout(pool, Duration::from_secs(10)).await
    }

    /// The store on `pool`, each statement bounded by `query_timeout` (its connection is then
    /// closed, not given back to the pool), its file created or migrated first.
    ///
    /// # Errors
    /// [`SqlxError::NotDurable`] for a pool whose connections would not keep a commit across a
    /// power cut; [`SqlxError::NewerSchema`] and [`SqlxError::NotOurs`] for a file it must not
    /// touch; [`SqlxError::Sqlx`] when SQLite fails.
    pub async fn with_query_timeout(
        pool: SqlitePool,
        query_timeout: Duration,
    ) -> Result<Self, SqlxError> {
        let mut connection = pool.acquire().await?;
        check_durable(&mut connection).await?;
        if identify(&mut connection).await? < SCHEMA_VERSION {
            Box::pin(migrate(&mut connection)).await?;
        }
        drop(connection);
        Ok(Self {
            pool,
            query_timeout,
        })
    }

    /// The pool the store uses.
    #[must_use]
    pub const fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Runs `run` on a pooled connection within the query timeout.
    async fn on_connection<T>(
        &self,
        run: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, SqlxError> {
        let mut connection = Box::pin(self.pool.acquire()).await?;
        // sqlx's futures are large: boxed, so that a caller's future (a sign-in through the
        // service, say) stays small enough for a thread's stack in unoptimised builds.
        let answer = tokio::time::timeout(self.query_timeout, Box::pin(run(&mut connection))).await;
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if crate::is_broken(&error, |_| false) {
                    connection.close_on_drop();
                }
                Err(error.into())
            }
            Err(_) => {
                connection.close_on_drop();
                Err(SqlxError::Timeout)
            }
        }
    }

    /// Stores what `put` says and `events`, in one `BEGIN IMMEDIATE` transaction: a version that
    /// does not hold, or a lock another writer kept past the busy timeout, is a conflict.
    async fn conditional_write(
        &self,
        put: Put<'_>,
        events: &[Event],
    ) -> Result<Written, SqlxError> {
        let events: Vec<EventRow> = events.iter().map(EventRow::new).collect();
        let written = self
            .on_connection(async |connection| {
                let mut transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
                // On `None` the transaction is dropped, which rolls it back.
                let Some(version) = put.run(&mut transaction).await? else {
                    return Ok(None);
                };
                insert_events(&mut transaction, &events).await?;
                transaction.commit().await?;
                Ok(Some(version))
            })
            .await;
        match written {
            Ok(Some(version)) => Ok(Written::Stored(version)),
            Ok(None) => Ok(Written::Conflict),
            Err(SqlxError::Sqlx(error)) if is_busy(&error) => Ok(Written::Conflict),
            Err(error) => Err(error),
        }
    }

    /// The rows of one statement, within the query timeout.
    async fn fetch_all(
        &self,
        statement: Query<'_, Sqlite, SqliteArguments>,
    ) -> Result<Vec<SqliteRow>, SqlxError> {
        self.on_connection(async |connection| statement.fetch_all(connection).await)
            .await
    }
}

/// One conditional write of a record.
enum Put<'a> {
    Org {
        org: &'a str,
        expected: Option<Version>,
        policy: Vec<u8>,
    },
    Customer {
        org: &'a str,
        customer: &'a str,
        expected: Option<Version>,
        row: CustomerRow,
    },
}

impl Put<'_> {
    /// Stores the record, in the transaction: its new version, or `None` when the expected
    /// version does not hold.
    async fn run(self, transaction: &mut SqliteConnection) -> Result<Option<Version>, sqlx::Error> {
        let (next, changed) = match self {
            Put::Org {
                org,
                expected: None,
                policy,
            } => {
                let retired: Option<i64> = sqlx::query_scalar(RETIRED_ORG)
                    .bind(org)
                    .fetch_optional(&mut *transaction)
                    .await?;
                let Some(next) = first_version(retired) else {
                    return Ok(None);
                };
                let done = sqlx::query(INSERT_ORG)
                    .bind(org)
                    .bind(next)
                    .bind(policy)
                    .execute(&mut *transaction)
                    .await?;
                (next, done.rows_affected())
            }
            Put::Org {
                org,
                expected: Some(expected),
                policy,
            } => {
                let Some((current, next)) = next_version(expected) else {
                    return Ok(None);
                };
                let done = sqlx::query(UPDATE_ORG)
                    .bind(org)
                    .bind(next)
                    .bind(policy)
                    .bind(current)
                    .execute(&mut *transaction)
                    .await?;
                (next, done.rows_affected())
            }
            Put::Customer {
                org,
                customer,
                expected: None,
                row,
            } => {
                let retired: Option<i64> = sqlx::query_scalar(RETIRED_CUSTOMER)
                    .bind(org)
                    .bind(customer)
                    .fetch_optional(&mut *transaction)
                    .await?;
                let Some(next) = first_version(retired) else {
                    return Ok(None);
                };
                let done = sqlx::query(INSERT_CUSTOMER)
                    .bind(org)
                    .bind(customer)
                    .bind(next)
                    .bind(row.state)
                    .bind(row.sealing_key_id)
                    .bind(row.bytes)
                    .execute(&mut *transaction)
                    .await?;
                (next, done.rows_affected())
            }
            Put::Customer {
                org,
                customer,
                expected: Some(expected),
                row,
            } => {
                let Some((current, next)) = next_version(expected) else {
                    return Ok(None);
                };
                let done = sqlx::query(UPDATE_CUSTOMER)
                    .bind(org)
                    .bind(customer)
                    .bind(next)
                    .bind(row.state)
                    .bind(row.sealing_key_id)
                    .bind(row.bytes)
                    .bind(current)
                    .execute(&mut *transaction)
                    .await?;
                (next, done.rows_affected())
            }
        };
        Ok(mfa_sql::stored(next, changed))
    }
}

async fn insert_events(
    connection: &mut SqliteConnection,
    events: &[EventRow],
) -> Result<(), sqlx::Error> {
    for event in events {
        sqlx::query(INSERT_EVENT)
            .bind(event.org.as_str())
            .bind(event.customer.as_deref())
            .bind(event.at)
            .bind(event.kind)
            .bind(event.bytes.as_slice())
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// Whether SQLite said busy or locked: another writer kept the lock past the busy timeout, and
/// the transaction rolled back.
fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => error
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(mfa_sql::sqlite::is_busy),
        _ => false,
    }
}

/// Refuses a connection that would not keep a commit across a power cut.
async fn check_durable(connection: &mut PoolConnection<Sqlite>) -> Result<(), SqlxError> {
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut **connection)
        .await?;
    // 2 = FULL, 3 = EXTRA.
    if synchronous < 2 {
        return Err(SqlxError::NotDurable {
            setting: "synchronous",
            found: synchronous.to_string(),
            needed: "FULL (2) or EXTRA (3)",
        });
    }
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut **connection)
        .await?;
    if journal.eq_ignore_ascii_case("off") || journal.eq_ignore_ascii_case("memory") {
        return Err(SqlxError::NotDurable {
            setting: "journal_mode",
            found: journal,
            needed: "WAL, DELETE, TRUNCATE or PERSIST",
        });
    }
    Ok(())
}

/// The file's schema version, or why it is not ours to migrate. Reads only.
async fn identify(connection: &mut SqliteConnection) -> Result<i64, SqlxError> {
    let (application_id, found, objects): (i32, i64, i64) =
        sqlx::query_as(IDENTIFY).fetch_one(&mut *connection).await?;
    match mfa_sql::sqlite::identify(application_id, found, objects) {
        Identified::At(version) => Ok(version),
        Identified::Newer { found } => Err(SqlxError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        }),
        Identified::NotOurs { application_id } => Err(SqlxError::NotOurs {
            what: format!("the SQLite database (application id {application_id:#x})"),
        }),
        _ => Err(SqlxError::Corrupt("a schema this version cannot tell")),
    }
}

/// Applies the missing migrations in one `BEGIN IMMEDIATE` transaction: connections and processes
/// opening a new file at once take turns, and all but the first find nothing left to do.
async fn migrate(connection: &mut SqliteConnection) -> Result<(), SqlxError> {
    let mut transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
    let found = identify(&mut transaction).await?;
    let done =
        usize::try_from(found).map_err(|_| SqlxError::Corrupt("a negative schema version"))?;
    for migration in MIGRATIONS.iter().skip(done) {
        sqlx::raw_sql(AssertSqlSafe(*migration))
            .execute(&mut *transaction)
            .await?;
    }
    sqlx::raw_sql(AssertSqlSafe(mfa_sql::sqlite::mark_migrated()))
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(())
}

/// A stored policy or customer record and its version, its bytes left for `mfa-core` to read.
fn versioned<T>(row: Option<SqliteRow>) -> Result<Option<Versioned<Encoded<T>>>, SqlxError> {
    // A value of another type (the table is not `STRICT`) leaves the record unreadable.
    Ok(row.map(|row| mfa_sql::read_row(row.try_get(0).ok(), row.try_get(1).ok())))
}

/// The version in column `at` and the bytes after it; `None` where the version is NULL (the outer
/// join found no row). A value of another type leaves the record unreadable.
fn joined<T>(row: &SqliteRow, at: usize) -> Option<Versioned<Encoded<T>>> {
    let version = match row.try_get::<Option<i64>, _>(at) {
        Ok(None) => return None,
        Ok(Some(version)) => Some(version),
        Err(_) => None,
    };
    Some(mfa_sql::read_row(version, row.try_get(at + 1).ok()))
}

/// Events as stored, checked and decoded.
fn stored_events(rows: &[SqliteRow]) -> Result<Vec<StoredEvent>, SqlxError> {
    rows.iter()
        .map(|row| {
            Ok(StoredEvent {
                seq: mfa_sql::stored_seq(row.try_get(0)?)?,
                event: Event::from_bytes(row.try_get(1)?)?,
            })
        })
        .collect()
}

impl Store for SqliteStore {
    type Error = SqlxError;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, SqlxError> {
        let row = self
            .on_connection(async |connection| {
                sqlx::query(LOAD_ORG)
                    .bind(org.as_str())
                    .fetch_optional(connection)
                    .await
            })
            .await?;
        versioned(row)
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, SqlxError> {
        let put = Put::Org {
            org: org.as_str(),
            expected,
            policy: policy.to_bytes(),
        };
        self.conditional_write(put, events).await
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, SqlxError> {
        let row = self
            .on_connection(async |connection| {
                sqlx::query(LOAD_CUSTOMER)
                    .bind(org.as_str())
                    .bind(customer.as_str())
                    .fetch_optional(connection)
                    .await
            })
            .await?;
        versioned(row)
    }

    async fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<OrgAndCustomer, SqlxError> {
        // One statement: one snapshot, one trip to the connection's thread.
        let row = self
            .on_connection(async |connection| {
                sqlx::query(LOAD_ORG_AND_CUSTOMER)
                    .bind(org.as_str())
                    .bind(customer.as_str())
                    .fetch_one(connection)
                    .await
            })
            .await?;
        Ok((joined(&row, 0), joined(&row, 2)))
    }

    async fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> Result<Written, SqlxError> {
        let put = Put::Customer {
            org: org.as_str(),
            customer: customer.as_str(),
            expected,
            row: CustomerRow::new(record),
        };
        self.conditional_write(put, events).await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), SqlxError> {
        if events.is_empty() {
            return Ok(());
        }
        let events: Vec<EventRow> = events.iter().map(EventRow::new).collect();
        self.on_connection(async |connection| {
            let mut transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
            insert_events(&mut transaction, &events).await?;
            transaction.commit().await
        })
        .await
    }

    async fn audit(&self, org: &OrgId, query: &AuditQuery) -> Result<Vec<StoredEvent>, SqlxError> {
        let Some((last, limit)) = mfa_sql::audit_bounds(query) else {
            return Ok(Vec::new());
        };
        let statement = match &query.customer {
            Some(customer) => sqlx::query(AUDIT_CUSTOMER)
                .bind(org.as_str())
                .bind(customer.as_str()),
            None => sqlx::query(AUDIT_ORG).bind(org.as_str()),
        };
        stored_events(&self.fetch_all(statement.bind(last).bind(limit)).await?)
    }

    async fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> Result<Vec<StoredEvent>, SqlxError> {
        let Some((after, since, limit)) = mfa_sql::export_bounds(query) else {
            return Ok(Vec::new());
        };
        let statement = match &query.customer {
            Some(customer) => sqlx::query(EXPORT_CUSTOMER)
                .bind(org.as_str())
                .bind(customer.as_str()),
            None => sqlx::query(EXPORT_ORG).bind(org.as_str()),
        };
        let statement = statement.bind(after).bind(since).bind(limit);
        stored_events(&self.fetch_all(statement).await?)
    }

    async fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> Result<Vec<CustomerKey>, SqlxError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The empty pair sorts before every id (ids are never empty).
        let (after_org, after_customer) = after.map_or(("", ""), |(o, c)| (o.as_str(), c.as_str()));
        let rows = self
            .fetch_all(
                sqlx::query(SEALED_UNDER)
                    .bind(i64::from(key.get()))
                    .bind(after_org)
                    .bind(after_customer)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX)),
            )
            .await?;
        rows.iter()
            .map(|row| Ok(mfa_sql::customer_key(row.try_get(0)?, row.try_get(1)?)?))
            .collect()
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, SqlxError> {
        let rows = self.fetch_all(sqlx::query(COUNT_SEALED)).await?;
        rows.iter()
            .map(|row| Ok(mfa_sql::sealed_count(row.try_get(0)?, row.try_get(1)?)?))
            .collect()
    }
}
