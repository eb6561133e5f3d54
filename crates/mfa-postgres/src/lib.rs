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
mod schema;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::tokio_postgres::types::ToSql;
use deadpool_postgres::tokio_postgres::{self, NoTls, Socket};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use mfa_core::{
    CustomerId, KeyId, OrgId, OrgPolicy, Store,
    audit::{AuditExport, AuditQuery, Event, StoredEvent},
    machine::CustomerRecord,
    store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

pub use deadpool_postgres;
pub use error::PostgresError;
pub use schema::SCHEMA_VERSION;

use mfa_sql::postgres::Statements as Sql;
use mfa_sql::{EventColumns, at_column, expected_version, stored_version};

/// How [`PostgresStore::connect_with`] sets up its pool and where it keeps its tables.
///
/// # Dead peers
///
/// Besides these options, the store turns on TCP keepalives tighter than tokio-postgres's (a
/// first probe after 2 hours idle), so that a server that vanished without closing its
/// connections (a crashed host, a failover, a dropped NAT or firewall entry) is noticed within
/// about a minute and its connections leave the pool, rather than each costing a later request
/// its query timeout: a probe after 30 s idle (`keepalives_idle`), then every 10 s
/// (`keepalives_interval`), 3 times (`keepalives_retries`); and, on Linux, data left
/// unacknowledged for 30 s ends the connection (`tcp_user_timeout`). Each applies only where the
/// connection string (or the [`tokio_postgres::Config`]) leaves it unset; `keepalives=0` turns
/// keepalives off. They do not apply to Unix sockets, nor to a pool of the host's own
/// ([`PostgresStore::from_pool`]).
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    schema: String,
    max_connections: usize,
    timeout: Duration,
    query_timeout: Duration,
    migration_timeout: Duration,
}

impl Default for PostgresOptions {
    /// Schema `mfa`, at most 16 connections, 5 s to connect or get a connection, 10 s per
    /// statement, 60 s to create or migrate the schema.
    fn default() -> Self {
        Self {
            schema: "mfa".to_owned(),
            max_connections: 16,
            timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
            migration_timeout: Duration::from_secs(60),
        }
    }
}

impl PostgresOptions {
    /// The schema that holds the store's tables (created if missing; default `mfa`). A plain
    /// lower-case identifier; it must be the store's own.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the pool opens (default 16, at least 1).
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits to connect, or for a free connection, before it fails with
    /// [`PostgresError::Pool`] (default 5 s). Unless the connection string sets its own
    /// `connect_timeout`, this is also the connect timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one statement may take before the call fails with [`PostgresError::Timeout`]
    /// (default 10 s): a server or network that stops answering without closing the connection
    /// (a partition, a frozen host) gives an error instead of a request that hangs. The
    /// connection is then closed, not reused. Every statement of the store is an index lookup of
    /// milliseconds; only a row lock held for long by another transaction comes near this.
    #[must_use]
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// How long opening the store may take to get a connection and create or migrate the schema
    /// before it fails with [`PostgresError::Timeout`] (default 60 s). That includes waiting for
    /// the migration lock, which another node holds while it migrates, and for table locks a long
    /// transaction holds: without a bound, a session stuck holding one would hang every node's
    /// start. The server is given the same bound (`lock_timeout` and `statement_timeout`, set
    /// for the migration's transaction only), so it stops waiting too and the migration rolls
    /// back whole. Generous by default, as a migration may have to rewrite a large table while
    /// the nodes starting beside it wait their turn.
    #[must_use]
    pub fn migration_timeout(mut self, timeout: Duration) -> Self {
        self.migration_timeout = timeout;
        self
    }
}

/// A [`Store`] in a PostgreSQL database, shared by every service node that connects to it.
///
/// # Atomicity
///
/// Each conditional write is **one statement**, and so one transaction: a data-modifying `WITH`
/// whose first part inserts or updates the record (the update carries the expected version in its
/// `WHERE`, the insert is `ON CONFLICT DO NOTHING`) and whose second part inserts the audit events
/// only if that row was written. Under PostgreSQL's default isolation (read committed), a second
/// writer with the same expected version waits for the first to commit, re-reads the row, no
/// longer matches, and writes nothing: [`Written::Conflict`]. Serialization failures and
/// deadlocks (possible when a host makes its sessions serializable) are reported as
/// [`Written::Conflict`] too, so the service retries them with fresh data; they never surface as
/// an answer. One statement is also one round trip to the server.
///
/// Versions start at 1 and grow by one per write; a record deleted by hand leaves its last version
/// behind (a trigger keeps it), and truncating the records (which fires no such trigger) is
/// refused, so a key never reuses a version. The audit log is append-only: a trigger refuses
/// updates, deletes and truncation.
///
/// # Schema
///
/// The tables live in a schema of their own ([`PostgresOptions::schema`], default `mfa`). Opening
/// the store creates or migrates it in one transaction under an advisory lock, so several nodes
/// starting at once take turns, within [`PostgresOptions::migration_timeout`]; a schema written
/// by a newer version of this crate ([`PostgresError::NewerSchema`]) or holding someone else's
/// tables ([`PostgresError::NotOurs`]) is refused and left untouched.
pub struct PostgresStore {
    pool: Pool,
    sql: Arc<Sql>,
    query_timeout: Duration,
}

impl core::fmt::Debug for PostgresStore {
    // The schema and the pool's counts only: the connection string may hold a password, and the
    // rows hold sealed secrets and backup-code hashes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("schema", &self.sql.schema)
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects without TLS to the database named by `url` (`postgres://user@host/db`, or
    /// key-value form such as `host=/var/run/postgresql dbname=mfa`) with the default
    /// [`PostgresOptions`], and creates or migrates the schema.
    ///
    /// # Errors
    /// [`PostgresError::Config`] for a connection string that cannot be read, and whatever
    /// [`connect_with`](Self::connect_with) returns.
    pub async fn connect(url: &str) -> Result<Self, PostgresError> {
        let config = url.parse().map_err(PostgresError::Config)?;
        Self::connect_with(config, PostgresOptions::default()).await
    }

    /// Connects without TLS (a local socket, or a network the host trusts) and creates or
    /// migrates the schema.
    ///
    /// # Errors
    /// [`PostgresError::InvalidSchema`] for a schema name that is not a plain identifier;
    /// [`PostgresError::Pool`] when no connection can be made in time; [`PostgresError::Postgres`]
    /// when the server refuses the migration (no right to create the schema, say);
    /// [`PostgresError::NewerSchema`] and [`PostgresError::NotOurs`] for a schema it must not
    /// touch; [`PostgresError::Timeout`] when the migration does not finish within
    /// [`PostgresOptions::migration_timeout`] (another session holds its lock, say).
    pub async fn connect_with(
        config: tokio_postgres::Config,
        options: PostgresOptions,
    ) -> Result<Self, PostgresError> {
        Self::connect_via(config, options, NoTls).await
    }

    /// Connects over TLS with `tls` (rustls; the connection string's `sslmode` says whether TLS is
    /// required or only preferred), and creates or migrates the schema.
    ///
    /// # Errors
    /// As [`connect_with`](Self::connect_with).
    #[cfg(feature = "tls")]
    pub async fn connect_tls(
        config: tokio_postgres::Config,
        options: PostgresOptions,
        tls: rustls::ClientConfig,
    ) -> Result<Self, PostgresError> {
        Self::connect_via(
            config,
            options,
            tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        )
        .await
    }

    async fn connect_via<T>(
        mut config: tokio_postgres::Config,
        options: PostgresOptions,
        tls: T,
    ) -> Result<Self, PostgresError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        // Checked before anything connects.
        let sql = schema::statements(&options.schema)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("mfa-postgres");
        }
        tcp_defaults(&mut config);
        // `Fast` recycling checks only that the connection is still open: a connection the server
        // dropped fails its next statement with an error (never a wrong answer) and is discarded,
        // and the next call gets a fresh one.
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections)
            .runtime(Runtime::Tokio1)
            // The connection used last is taken first: a sign-in's read and write then run on a
            // backend that is awake and whose caches are warm, and idle ones stay idle.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .build()?;
        Self::open(pool, sql, &options).await
    }

    /// Uses the host's own pool and creates or migrates the schema `options` names in its
    /// database; of the other options only [`PostgresOptions::query_timeout`] and
    /// [`PostgresOptions::migration_timeout`] apply (TCP keepalives are the pool's own
    /// configuration). Give the pool timeouts (and a runtime for them), or a call waits for a
    /// connection as long as the pool lets it.
    ///
    /// Every connection the pool hands out must be in autocommit state, not inside an open
    /// transaction: the store relies on each of its write statements committing on its own. A
    /// host that sends `BEGIN` by hand and gives the connection back to the pool before `COMMIT`
    /// or `ROLLBACK` breaks that: a write the store then reports as stored commits or rolls back
    /// with the host's transaction, later, and a code could be accepted twice. (A
    /// [`Transaction`](tokio_postgres::Transaction) dropped unfinished is rolled back, so a host
    /// that uses only those is safe.) Opening the store runs its migration in a transaction of
    /// its own on one of the pool's connections.
    ///
    /// # Errors
    /// As [`connect_with`](Self::connect_with).
    pub async fn from_pool(pool: Pool, options: PostgresOptions) -> Result<Self, PostgresError> {
        let sql = schema::statements(&options.schema)?;
        Self::open(pool, sql, &options).await
    }

    /// Gets a connection and migrates, all within the migration timeout.
    async fn open(pool: Pool, sql: Sql, options: &PostgresOptions) -> Result<Self, PostgresError> {
        let limit = options.migration_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let mut client = tokio::time::timeout_at(deadline, pool.get())
            .await
            .map_err(|_| PostgresError::Timeout)??;
        let migrated = tokio::time::timeout_at(deadline, async {
            let transaction = client.transaction().await?;
            schema::migrate(&sql, &transaction, limit).await?;
            transaction.commit().await?;
            Ok(())
        })
        .await;
        match migrated {
            Ok(Ok(())) => {}
            // The server stopped waiting for a lock, or cancelled a statement, at the bound it
            // was given; the transaction rolled back and the connection is sound.
            Ok(Err(PostgresError::Postgres(error))) if gave_up_waiting(&error) => {
                return Err(PostgresError::Timeout);
            }
            Ok(Err(error)) => return Err(error),
            // No answer in time: the connection is not reused (a statement may still run on it).
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                return Err(PostgresError::Timeout);
            }
        }
        drop(client);
        Ok(Self {
            pool,
            sql: Arc::new(sql),
            query_timeout: options.query_timeout,
        })
    }

    /// The schema that holds the store's tables.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }

    /// The connection pool, for the host's own health checks and metrics.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Closes the pool: connections in use are closed when returned, and later calls fail.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Runs the conditional write `sql` and reads the new version it returns, if any.
    async fn write(
        &self,
        sql: &str,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<Written, PostgresError> {
        let client = self.pool.get().await?;
        let answer = tokio::time::timeout(self.query_timeout, async {
            let statement = client.prepare_cached(sql).await?;
            client.query_opt(&statement, parameters).await
        })
        .await;
        match discard_if_broken(client, answer) {
            Ok(Some(row)) => Ok(Written::Stored(stored_version(row.try_get(0)?)?)),
            Ok(None) => Ok(Written::Conflict),
            // The transaction rolled back: nothing of this write is stored.
            Err(PostgresError::Postgres(error)) if lost_race(&error) => Ok(Written::Conflict),
            Err(error) => Err(error),
        }
    }
}

/// Fills in the TCP settings the configuration leaves at tokio-postgres's defaults, so a dead
/// peer is noticed within about a minute (see [`PostgresOptions`]). A `keepalives_idle` of
/// exactly 2 hours cannot be told from the default, and is taken as unset.
fn tcp_defaults(config: &mut tokio_postgres::Config) {
    if config.get_keepalives_idle() == tokio_postgres::Config::new().get_keepalives_idle() {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(10));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
}

/// Gives `answer` back, first taking `client` out of the pool if its connection cannot be trusted
/// again: the statement took longer than the query timeout (its answer may still come, on a
/// connection nobody reads), or the failure says the session is over (closed, or the server ended
/// it: a restart, a failover, an administrator's `pg_terminate_backend`). Without this such a
/// connection could go back to the pool before its task has noticed the end, and fail the next
/// call too.
fn discard_if_broken<T>(
    client: deadpool_postgres::Client,
    answer: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
) -> Result<T, PostgresError> {
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            let session_over = error.is_closed()
                || error
                    .code()
                    .is_some_and(|code| mfa_sql::postgres::session_over(code.code()));
            if session_over {
                drop(deadpool_postgres::Object::take(client));
            }
            Err(error.into())
        }
        Err(_) => {
            drop(deadpool_postgres::Object::take(client));
            Err(PostgresError::Timeout)
        }
    }
}

/// A serialization failure or a deadlock: the server rolled the transaction back, and trying again
/// with fresh data is the remedy.
fn lost_race(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| mfa_sql::postgres::lost_race(code.code()))
}

/// The server gave up: `lock_timeout` (a lock not had in time) or `statement_timeout` (a statement
/// cancelled; also an administrator's `pg_cancel_backend`).
fn gave_up_waiting(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| mfa_sql::postgres::gave_up_waiting(code.code()))
}

/// The version in column `at` and the bytes after it, left for `mfa-core` to read; `None` where the version is NULL
/// (an outer join found no row).
fn versioned<T>(
    row: &tokio_postgres::Row,
    at: usize,
) -> Result<Option<Versioned<Encoded<T>>>, PostgresError> {
    // NULL (no row joined) only where the column reads as a nullable bigint; a value of another
    // type leaves the version unread, and the record unreadable.
    let version = match row.try_get::<_, Option<i64>>(at) {
        Ok(None) => return Ok(None),
        Ok(Some(version)) => Some(version),
        Err(_) => None,
    };
    Ok(Some(mfa_sql::read_row(version, row.try_get(at + 1).ok())))
}

impl Store for PostgresStore {
    type Error = PostgresError;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, PostgresError> {
        let client = self.pool.get().await?;
        let answer = tokio::time::timeout(self.query_timeout, async {
            let statement = client.prepare_cached(&self.sql.load_org).await?;
            client.query_opt(&statement, &[&org.as_str()]).await
        })
        .await;
        match discard_if_broken(client, answer)? {
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
    ) -> Result<Written, PostgresError> {
        let policy = policy.to_bytes();
        let e = EventColumns::new(events);
        let org = org.as_str();
        match expected {
            None => {
                self.write(
                    &self.sql.insert_org,
                    &[&org, &policy, &e.org, &e.customer, &e.at, &e.kind, &e.bytes],
                )
                .await
            }
            Some(expected) => {
                let Some(expected) = expected_version(expected) else {
                    return Ok(Written::Conflict);
                };
                self.write(
                    &self.sql.update_org,
                    &[
                        &org,
                        &policy,
                        &expected,
                        &e.org,
                        &e.customer,
                        &e.at,
                        &e.kind,
                        &e.bytes,
                    ],
                )
                .await
            }
        }
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, PostgresError> {
        let client = self.pool.get().await?;
        let answer = tokio::time::timeout(self.query_timeout, async {
            let statement = client.prepare_cached(&self.sql.load_customer).await?;
            client
                .query_opt(&statement, &[&org.as_str(), &customer.as_str()])
                .await
        })
        .await;
        match discard_if_broken(client, answer)? {
            Some(row) => versioned(&row, 0),
            None => Ok(None),
        }
    }

    async fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<OrgAndCustomer, PostgresError> {
        let client = self.pool.get().await?;
        let answer = tokio::time::timeout(self.query_timeout, async {
            let statement = client
                .prepare_cached(&self.sql.load_org_and_customer)
                .await?;
            client
                .query_one(&statement, &[&org.as_str(), &customer.as_str()])
                .await
        })
        .await;
        let row = discard_if_broken(client, answer)?;
        Ok((versioned(&row, 0)?, versioned(&row, 2)?))
    }

    async fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> Result<Written, PostgresError> {
        let (org, customer) = (org.as_str(), customer.as_str());
        let state = record.state().as_str();
        let key_id = record
            .sealed_secret()
            .map(|sealed| i64::from(sealed.key_id().get()));
        let bytes = record.to_bytes();
        match expected {
            None => {
                let e = EventColumns::new(events);
                self.write(
                    &self.sql.insert_customer,
                    &[
                        &org,
                        &customer,
                        &state,
                        &key_id,
                        &bytes,
                        &e.org,
                        &e.customer,
                        &e.at,
                        &e.kind,
                        &e.bytes,
                    ],
                )
                .await
            }
            Some(expected) => {
                let Some(expected) = expected_version(expected) else {
                    return Ok(Written::Conflict);
                };
                if let [event] = events {
                    // A sign-in's write: one event, as plain parameters.
                    return self
                        .write(
                            &self.sql.update_customer_one_event,
                            &[
                                &org,
                                &customer,
                                &state,
                                &key_id,
                                &bytes,
                                &expected,
                                &event.org.as_str(),
                                &event.customer.as_ref().map(CustomerId::as_str),
                                &at_column(event),
                                &event.kind_name(),
                                &event.to_bytes(),
                            ],
                        )
                        .await;
                }
                let e = EventColumns::new(events);
                self.write(
                    &self.sql.update_customer,
                    &[
                        &org,
                        &customer,
                        &state,
                        &key_id,
                        &bytes,
                        &expected,
                        &e.org,
                        &e.customer,
                        &e.at,
                        &e.kind,
                        &e.bytes,
                    ],
                )
                .await
            }
        }
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), PostgresError> {
        if events.is_empty() {
            return Ok(());
        }
        let e = EventColumns::new(events);
        let client = self.pool.get().await?;
        let answer = tokio::time::timeout(self.query_timeout, async {
            let statement = client.prepare_cached(&self.sql.append_events).await?;
            client
                .execute(&statement, &[&e.org, &e.customer, &e.at, &e.kind, &e.bytes])
                .await
        })
        .await;
        discard_if_broken(client, answer)?;
        Ok(())
    }

    async fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<StoredEvent>, PostgresError> {
        let Some((last, limit)) = mfa_sql::audit_bounds(query) else {
            return Ok(Vec::new());
        };
        let client = self.pool.get().await?;
        let answer = tokio::time::timeout(self.query_timeout, async {
            match &query.customer {
                Some(customer) => {
                    let statement = client.prepare_cached(&self.sql.audit_customer).await?;
                    client
                        .query(
                            &statement,
                            &[&org.as_str(), &customer.as_str(), &last, &limit],
                        )
                        .await
                }
                None => {
                    let statement = client.prepare_cached(&self.sql.audit_org).await?;
                    client
                        .query(&statement, &[&org.as_str(), &last, &limit])
                        .await
                }
            }
        })
        .await;
        stored_events(&discard_if_broken(client, answer)?)
    }

    async fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> Result<Vec<StoredEvent>, PostgresError> {
        let Some((after, since, limit)) = mfa_sql::export_bounds(query) else {
            return Ok(Vec::new());
        };
        let org = org.as_str();
        let rows = match &query.customer {
            Some(customer) => {
                self.query(
                    &self.sql.export_customer,
                    &[&org, &customer.as_str(), &after, &since, &limit],
                )
                .await?
            }
            None => {
                self.query(&self.sql.export_org, &[&org, &after, &since, &limit])
                    .await?
            }
        };
        stored_events(&rows)
    }

    async fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> Result<Vec<CustomerKey>, PostgresError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The empty pair sorts before every id (ids are never empty).
        let (after_org, after_customer) = after.map_or(("", ""), |(o, c)| (o.as_str(), c.as_str()));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                &self.sql.sealed_under,
                &[&i64::from(key.get()), &after_org, &after_customer, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| Ok(mfa_sql::customer_key(row.try_get(0)?, row.try_get(1)?)?))
            .collect()
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, PostgresError> {
        let rows = self.query(&self.sql.count_sealed, &[]).await?;
        rows.iter()
            .map(|row| Ok(mfa_sql::sealed_count(row.try_get(0)?, row.try_get(1)?)?))
            .collect()
    }
}

impl PostgresStore {
    /// Runs the read-only statement `sql` on a pooled connection, within the query timeout.
    async fn query(
        &self,
        sql: &str,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PostgresError> {
        let client = self.pool.get().await?;
        let answer = tokio::time::timeout(self.query_timeout, async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, parameters).await
        })
        .await;
        discard_if_broken(client, answer)
    }
}

/// Events as stored, checked and decoded.
fn stored_events(rows: &[tokio_postgres::Row]) -> Result<Vec<StoredEvent>, PostgresError> {
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get(0)?;
            Ok(StoredEvent {
                seq: mfa_sql::stored_seq(seq)?,
                event: Event::from_bytes(row.try_get(1)?)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_at_least_one_connection() {
        let options = PostgresOptions::default().max_connections(0);
        assert_eq!(options.max_connections, 1);
    }

    #[test]
    fn tcp_keepalives_are_tightened_only_where_unset() {
        let secs = Duration::from_secs;
        let mut config: tokio_postgres::Config = "host=db user=mfa".parse().unwrap();
        tcp_defaults(&mut config);
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), secs(30));
        assert_eq!(config.get_keepalives_interval(), Some(secs(10)));
        assert_eq!(config.get_keepalives_retries(), Some(3));
        assert_eq!(config.get_tcp_user_timeout(), Some(&secs(30)));

        let mut config: tokio_postgres::Config = "host=db user=mfa keepalives_idle=600 \
             keepalives_interval=60 keepalives_retries=9 tcp_user_timeout=120"
            .parse()
            .unwrap();
        tcp_defaults(&mut config);
        assert_eq!(config.get_keepalives_idle(), secs(600));
        assert_eq!(config.get_keepalives_interval(), Some(secs(60)));
        assert_eq!(config.get_keepalives_retries(), Some(9));
        assert_eq!(config.get_tcp_user_timeout(), Some(&secs(120)));

        let mut config: tokio_postgres::Config = "host=db user=mfa keepalives=0".parse().unwrap();
        tcp_defaults(&mut config);
        assert!(!config.get_keepalives());
    }
}
