//! The store on a `sqlx::PgPool`.

use std::sync::Arc;
use std::time::Duration;

use mfa_core::{
    CustomerId, KeyId, OrgId, OrgPolicy, Store,
    audit::{AuditExport, AuditQuery, Event, StoredEvent},
    machine::CustomerRecord,
    store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
};
use mfa_sql::postgres::{
    FIND_SCHEMA, Found, LOCK_CLASS, MIGRATION_LOCK, SCHEMA_VERSION, SET_MIGRATION_TIMEOUTS,
    Statements,
};
use mfa_sql::{CustomerRow, EventColumns, EventRow, expected_version};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, SqlSafeStr, SqlStr};

use crate::SqlxError;

/// How [`PgStore::with_options`] uses the host's pool.
#[derive(Clone, Debug)]
pub struct PgOptions {
    schema: String,
    query_timeout: Duration,
    migration_timeout: Duration,
}

impl Default for PgOptions {
    /// Schema `mfa`, 10 s per statement, 60 s to create or migrate the schema.
    fn default() -> Self {
        Self {
            schema: "mfa".to_owned(),
            query_timeout: Duration::from_secs(10),
            migration_timeout: Duration::from_secs(60),
        }
    }
}

impl PgOptions {
    /// The schema that holds the store's tables (created if missing; default `mfa`, the schema
    /// `mfa-postgres` and `mfa admin` use by default). A plain lower-case identifier; it must be
    /// the store's own.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How long one statement may take before the call fails with [`SqlxError::Timeout`]
    /// (default 10 s); its connection is then closed, not given back to the pool. Waiting for a
    /// connection is bounded by the pool's own `acquire_timeout`.
    #[must_use]
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// How long creating or migrating the schema may take, waiting for the migration lock that
    /// another node holds included (default 60 s); the server is given the same bound
    /// (`lock_timeout`, `statement_timeout` for the migration's transaction only).
    #[must_use]
    pub fn migration_timeout(mut self, timeout: Duration) -> Self {
        self.migration_timeout = timeout;
        self
    }
}

/// The statements, as sqlx takes them (each clone shares the text).
struct Sql {
    schema: String,
    load_org: SqlStr,
    load_customer: SqlStr,
    load_org_and_customer: SqlStr,
    insert_org: SqlStr,
    update_org: SqlStr,
    insert_customer: SqlStr,
    update_customer: SqlStr,
    update_customer_one_event: SqlStr,
    append_events: SqlStr,
    audit_org: SqlStr,
    audit_customer: SqlStr,
    export_org: SqlStr,
    export_customer: SqlStr,
    sealed_under: SqlStr,
    count_sealed: SqlStr,
}

/// Text made from `mfa-sql`'s statements: a checked schema name and fixed SQL, never input.
fn sql(text: &str) -> SqlStr {
    AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
}

impl Sql {
    fn new(s: &Statements) -> Self {
        Self {
            schema: s.schema.clone(),
            load_org: sql(&s.load_org),
            load_customer: sql(&s.load_customer),
            load_org_and_customer: sql(&s.load_org_and_customer),
            insert_org: sql(&s.insert_org),
            update_org: sql(&s.update_org),
            insert_customer: sql(&s.insert_customer),
            update_customer: sql(&s.update_customer),
            update_customer_one_event: sql(&s.update_customer_one_event),
            append_events: sql(&s.append_events),
            audit_org: sql(&s.audit_org),
            audit_customer: sql(&s.audit_customer),
            export_org: sql(&s.export_org),
            export_customer: sql(&s.export_customer),
            sealed_under: sql(&s.sealed_under),
            count_sealed: sql(&s.count_sealed),
        }
    }
}

/// A [`Store`] in a PostgreSQL database, on the host's own `sqlx::PgPool`: the same schema, the
/// same statements and the same guarantees as `mfa-postgres`'s `PostgresStore`, whose databases
/// it reads and writes (and the other way round).
///
/// # Atomicity
///
/// Each conditional write is **one statement**, so one transaction: a data-modifying `WITH` whose
/// first part inserts or updates the record (the update carries the expected version in its
/// `WHERE`, the insert is `ON CONFLICT DO NOTHING`) and whose second part inserts the audit events
/// only if that row was written. A second writer with the same expected version waits for the
/// first, no longer matches, and writes nothing: [`Written::Conflict`]. Serialization failures
/// and deadlocks are conflicts too, so the service retries them. Versions are never reused (a
/// trigger keeps the last version of a row deleted by hand; `TRUNCATE` is refused), and the audit
/// log is append-only (a trigger refuses updates, deletes and truncation).
///
/// # The host's pool
///
/// Every connection the pool hands out must be in autocommit state: the store relies on each of
/// its write statements committing on its own. (A `sqlx::Transaction` dropped unfinished is
/// rolled back before its connection goes back to the pool, so a host that uses only those is
/// safe.) The pool's `acquire_timeout` bounds the wait for a connection; [`PgOptions`] bound the
/// statements.
///
/// # Schema and migrations
///
/// The tables live in a schema of their own ([`PgOptions::schema`], default `mfa`), with their
/// own migrations table (`mfa.schema_migrations`), so they do not meet the host's tables or the
/// host's `sqlx::migrate!` (which keeps `_sqlx_migrations` in the host's schema). Opening creates
/// or migrates the schema in one transaction under an advisory lock, so nodes starting at once
/// take turns; a schema from a newer version ([`SqlxError::NewerSchema`]) or holding someone
/// else's tables ([`SqlxError::NotOurs`]) is refused and left untouched.
pub struct PgStore {
    pool: PgPool,
    sql: Arc<Sql>,
    query_timeout: Duration,
}

impl core::fmt::Debug for PgStore {
    // The schema and the pool's counts only: the rows hold sealed secrets and backup-code hashes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.sql.schema)
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// The store on `pool`, in schema `mfa`, created or migrated first.
    ///
    /// # Errors
    /// As [`with_options`](Self::with_options).
    pub async fn new(pool: PgPool) -> Result<Self, SqlxError> {
        Self::with_options(pool, PgOptions::default()).await
    }

    /// The store on `pool`, with `options`; its schema is created or migrated first.
    ///
    /// # Errors
    /// [`SqlxError::InvalidSchema`] for a schema name that is not a plain identifier;
    /// [`SqlxError::NewerSchema`] and [`SqlxError::NotOurs`] for a schema it must not touch;
    /// [`SqlxError::Timeout`] when the migration does not finish within
    /// [`PgOptions::migration_timeout`]; [`SqlxError::Sqlx`] when the server refuses it (no right
    /// to create the schema, say) or no connection comes.
    pub async fn with_options(pool: PgPool, options: PgOptions) -> Result<Self, SqlxError> {
        let statements = Statements::new(&options.schema)
            .ok_or_else(|| SqlxError::InvalidSchema(options.schema.clone()))?;
        let deadline = tokio::time::Instant::now() + options.migration_timeout;
        let mut connection = tokio::time::timeout_at(deadline, pool.acquire()).await??;
        let migrated = tokio::time::timeout_at(
            deadline,
            Box::pin(migrate(
                &mut connection,
                &statements,
                options.migration_timeout,
            )),
        )
        .await;
        match migrated {
            Ok(Ok(())) => {}
            // The server stopped waiting at the bound it was given; the transaction rolled back.
            Ok(Err(SqlxError::Sqlx(sqlx::Error::Database(error))))
                if error
                    .code()
                    .is_some_and(|code| mfa_sql::postgres::gave_up_waiting(&code)) =>
            {
                return Err(SqlxError::Timeout);
            }
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                // A statement may still run on it: not given back to the pool.
                connection.close_on_drop();
                return Err(SqlxError::Timeout);
            }
        }
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(&statements)),
            query_timeout: options.query_timeout,
        })
    }

    /// The schema that holds the store's tables.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }

    /// The pool the store uses.
    #[must_use]
    pub const fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn fetch_optional(
        &self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<Option<PgRow>, SqlxError> {
        let mut connection = Box::pin(self.pool.acquire()).await?;
        let answer = tokio::time::timeout(
            self.query_timeout,
            Box::pin(query.fetch_optional(&mut *connection)),
        )
        .await;
        finish(connection, answer)
    }

    async fn fetch_one(&self, query: Query<'_, Postgres, PgArguments>) -> Result<PgRow, SqlxError> {
        let mut connection = Box::pin(self.pool.acquire()).await?;
        let answer = tokio::time::timeout(
            self.query_timeout,
            Box::pin(query.fetch_one(&mut *connection)),
        )
        .await;
        finish(connection, answer)
    }

    async fn fetch_all(
        &self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<Vec<PgRow>, SqlxError> {
        let mut connection = Box::pin(self.pool.acquire()).await?;
        let answer = tokio::time::timeout(
            self.query_timeout,
            Box::pin(query.fetch_all(&mut *connection)),
        )
        .await;
        finish(connection, answer)
    }

    /// Runs a conditional write and reads the new version it returns, if any.
    async fn write(&self, query: Query<'_, Postgres, PgArguments>) -> Result<Written, SqlxError> {
        match self.fetch_optional(query).await {
            Ok(Some(row)) => Ok(Written::Stored(mfa_sql::stored_version(row.try_get(0)?)?)),
            Ok(None) => Ok(Written::Conflict),
            // The transaction rolled back: nothing of this write is stored.
            Err(SqlxError::Sqlx(sqlx::Error::Database(error)))
                if error
                    .code()
                    .is_some_and(|code| mfa_sql::postgres::lost_race(&code)) =>
            {
                Ok(Written::Conflict)
            }
            Err(error) => Err(error),
        }
    }
}

// sqlx's futures are large; each is boxed so that a caller's future (a sign-in through the
// service, say) stays small enough for a thread's stack in unoptimised builds.

/// Gives `answer` back, first making sure `connection` is closed rather than given back to the
/// pool when it cannot be trusted again: the statement outlived the query timeout (its answer may
/// still come, on a connection nobody reads), or the failure says the session is over.
fn finish<T>(
    mut connection: PoolConnection<Postgres>,
    answer: Result<Result<T, sqlx::Error>, tokio::time::error::Elapsed>,
) -> Result<T, SqlxError> {
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            if crate::is_broken(&error, mfa_sql::postgres::session_over) {
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

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, under the advisory lock every
/// driver of this schema takes, with the server's own waits bounded by `timeout`.
async fn migrate(
    connection: &mut PoolConnection<Postgres>,
    sql: &Statements,
    timeout: Duration,
) -> Result<(), SqlxError> {
    use sqlx::Connection as _;

    let mut transaction = connection.begin().await?;
    let millis = timeout.as_millis().clamp(1, 2_147_483_647).to_string();
    sqlx::query(SET_MIGRATION_TIMEOUTS)
        .bind(millis)
        .execute(&mut *transaction)
        .await?;
    sqlx::query(MIGRATION_LOCK)
        .bind(LOCK_CLASS)
        .bind(&sql.schema)
        .execute(&mut *transaction)
        .await?;
    let row = sqlx::query(FIND_SCHEMA)
        .bind(&sql.schema)
        .fetch_one(&mut *transaction)
        .await?;
    let found: i32 = match mfa_sql::postgres::found(row.try_get(0)?, row.try_get(1)?) {
        Found::Empty => 0,
        Found::Ours => sqlx::query(AssertSqlSafe(sql.applied_version()))
            .fetch_one(&mut *transaction)
            .await?
            .try_get(0)?,
        _ => {
            return Err(SqlxError::NotOurs {
                what: format!("the schema {:?}", sql.schema),
            });
        }
    };
    if found > SCHEMA_VERSION {
        return Err(SqlxError::NewerSchema {
            found: i64::from(found),
            supported: i64::from(SCHEMA_VERSION),
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    if found == 0 {
        sqlx::raw_sql(AssertSqlSafe(sql.create_schema()))
            .execute(&mut *transaction)
            .await?;
    }
    let done =
        usize::try_from(found).map_err(|_| SqlxError::Corrupt("a negative schema version"))?;
    let record = sql.record_migration();
    for (index, version) in (done..).zip(found + 1..=SCHEMA_VERSION) {
        let Some(migration) = sql.migration(index) else {
            break;
        };
        sqlx::raw_sql(AssertSqlSafe(migration))
            .execute(&mut *transaction)
            .await?;
        sqlx::query(AssertSqlSafe(record.as_str()))
            .bind(version)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// The version in column `at` and the bytes after it, left for `mfa-core` to read; `None` where
/// the version is NULL (an outer join found no row).
fn versioned<T>(row: &PgRow, at: usize) -> Result<Option<Versioned<Encoded<T>>>, SqlxError> {
    // NULL (no row joined) only where the column reads as a nullable bigint; a value of another
    // type leaves the version unread, and the record unreadable.
    let version = match row.try_get::<Option<i64>, _>(at) {
        Ok(None) => return Ok(None),
        Ok(Some(version)) => Some(version),
        Err(_) => None,
    };
    Ok(Some(mfa_sql::read_row(version, row.try_get(at + 1).ok())))
}

/// Binds the five event arrays.
fn bind_events<'q>(
    query: Query<'q, Postgres, PgArguments>,
    events: EventColumns,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(events.org)
        .bind(events.customer)
        .bind(events.at)
        .bind(events.kind)
        .bind(events.bytes)
}

/// Events as stored, checked and decoded.
fn stored_events(rows: &[PgRow]) -> Result<Vec<StoredEvent>, SqlxError> {
    rows.iter()
        .map(|row| {
            Ok(StoredEvent {
                seq: mfa_sql::stored_seq(row.try_get(0)?)?,
                event: Event::from_bytes(row.try_get(1)?)?,
            })
        })
        .collect()
}

impl Store for PgStore {
    type Error = SqlxError;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, SqlxError> {
        let query = sqlx::query(self.sql.load_org.clone()).bind(org.as_str());
        match self.fetch_optional(query).await? {
            Some(row) => versioned(&row, 0),
            None => Ok(None),
        }
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, SqlxError> {
        let (policy, events) = (policy.to_bytes(), EventColumns::new(events));
        let query = match expected {
            None => sqlx::query(self.sql.insert_org.clone())
                .bind(org.as_str())
                .bind(policy),
            Some(expected) => {
                let Some(expected) = expected_version(expected) else {
                    return Ok(Written::Conflict);
                };
                sqlx::query(self.sql.update_org.clone())
                    .bind(org.as_str())
                    .bind(policy)
                    .bind(expected)
            }
        };
        self.write(bind_events(query, events)).await
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, SqlxError> {
        let query = sqlx::query(self.sql.load_customer.clone())
            .bind(org.as_str())
            .bind(customer.as_str());
        match self.fetch_optional(query).await? {
            Some(row) => versioned(&row, 0),
            None => Ok(None),
        }
    }

    async fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<OrgAndCustomer, SqlxError> {
        let query = sqlx::query(self.sql.load_org_and_customer.clone())
            .bind(org.as_str())
            .bind(customer.as_str());
        let row = self.fetch_one(query).await?;
        Ok((versioned(&row, 0)?, versioned(&row, 2)?))
    }

    async fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> Result<Written, SqlxError> {
        let row = CustomerRow::new(record);
        let Some(expected) = expected else {
            let query = sqlx::query(self.sql.insert_customer.clone())
                .bind(org.as_str())
                .bind(customer.as_str())
                .bind(row.state)
                .bind(row.sealing_key_id)
                .bind(row.bytes);
            return self
                .write(bind_events(query, EventColumns::new(events)))
                .await;
        };
        let Some(expected) = expected_version(expected) else {
            return Ok(Written::Conflict);
        };
        let (statement, one) = match events {
            // A sign-in's write: one event, as plain parameters.
            [event] => (&self.sql.update_customer_one_event, Some(event)),
            _ => (&self.sql.update_customer, None),
        };
        let query = sqlx::query(statement.clone())
            .bind(org.as_str())
            .bind(customer.as_str())
            .bind(row.state)
            .bind(row.sealing_key_id)
            .bind(row.bytes)
            .bind(expected);
        let query = match one {
            Some(event) => {
                let event = EventRow::new(event);
                query
                    .bind(event.org)
                    .bind(event.customer)
                    .bind(event.at)
                    .bind(event.kind)
                    .bind(event.bytes)
            }
            None => bind_events(query, EventColumns::new(events)),
        };
        self.write(query).await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), SqlxError> {
        if events.is_empty() {
            return Ok(());
        }
        let query = bind_events(
            sqlx::query(self.sql.append_events.clone()),
            EventColumns::new(events),
        );
        let mut connection = Box::pin(self.pool.acquire()).await?;
        let answer =
            tokio::time::timeout(self.query_timeout, query.execute(&mut *connection)).await;
        finish(connection, answer).map(|_| ())
    }

    async fn audit(&self, org: &OrgId, query: &AuditQuery) -> Result<Vec<StoredEvent>, SqlxError> {
        let Some((last, limit)) = mfa_sql::audit_bounds(query) else {
            return Ok(Vec::new());
        };
        let statement = match &query.customer {
            Some(customer) => sqlx::query(self.sql.audit_customer.clone())
                .bind(org.as_str())
                .bind(customer.as_str()),
            None => sqlx::query(self.sql.audit_org.clone()).bind(org.as_str()),
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
            Some(customer) => sqlx::query(self.sql.export_customer.clone())
                .bind(org.as_str())
                .bind(customer.as_str()),
            None => sqlx::query(self.sql.export_org.clone()).bind(org.as_str()),
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
        let query = sqlx::query(self.sql.sealed_under.clone())
            .bind(i64::from(key.get()))
            .bind(after_org)
            .bind(after_customer)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.fetch_all(query)
            .await?
            .iter()
            .map(|row| Ok(mfa_sql::customer_key(row.try_get(0)?, row.try_get(1)?)?))
            .collect()
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, SqlxError> {
        self.fetch_all(sqlx::query(self.sql.count_sealed.clone()))
            .await?
            .iter()
            .map(|row| Ok(mfa_sql::sealed_count(row.try_get(0)?, row.try_get(1)?)?))
            .collect()
    }
}
