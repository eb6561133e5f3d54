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

use deadpool_postgres::tokio_postgres::error::SqlState;
use deadpool_postgres::tokio_postgres::types::ToSql;
use deadpool_postgres::tokio_postgres::{self, NoTls, Socket};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use mfa_core::{
    AuditQuery, CustomerId, CustomerRecord, Event, OrgId, OrgPolicy, Store, StoredEvent, Version,
    Versioned, Written,
};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

pub use deadpool_postgres;
pub use error::PostgresError;
pub use schema::SCHEMA_VERSION;

use schema::Sql;

/// How [`PostgresStore::connect_with`] sets up its pool and where it keeps its tables.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    schema: String,
    max_connections: usize,
    timeout: Duration,
    query_timeout: Duration,
}

impl Default for PostgresOptions {
    /// Schema `mfa`, at most 16 connections, 5 s to connect or get a connection, 10 s per
    /// statement.
    fn default() -> Self {
        Self {
            schema: "mfa".to_owned(),
            max_connections: 16,
            timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
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
/// behind (a trigger keeps it), so a key never reuses a version. The audit log is append-only: a
/// trigger refuses updates, deletes and truncation.
///
/// # Schema
///
/// The tables live in a schema of their own ([`PostgresOptions::schema`], default `mfa`). Opening
/// the store creates or migrates it in one transaction under an advisory lock, so several nodes
/// starting at once take turns; a schema written by a newer version of this crate
/// ([`PostgresError::NewerSchema`]) or holding someone else's tables ([`PostgresError::NotOurs`])
/// is refused and left untouched.
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
    /// touch.
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
        let sql = Sql::new(&options.schema)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("mfa-postgres");
        }
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
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .build()?;
        Self::open(pool, sql, options.query_timeout).await
    }

    /// Uses the host's own pool and creates or migrates the schema `options` names in its
    /// database; of the other options only [`PostgresOptions::query_timeout`] applies. Give the
    /// pool timeouts (and a runtime for them), or a call waits for a connection as long as the
    /// pool lets it.
    ///
    /// # Errors
    /// As [`connect_with`](Self::connect_with).
    pub async fn from_pool(pool: Pool, options: PostgresOptions) -> Result<Self, PostgresError> {
        let sql = Sql::new(&options.schema)?;
        Self::open(pool, sql, options.query_timeout).await
    }

    async fn open(pool: Pool, sql: Sql, query_timeout: Duration) -> Result<Self, PostgresError> {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        sql.migrate(&transaction).await?;
        transaction.commit().await?;
        drop(client);
        Ok(Self {
            pool,
            sql: Arc::new(sql),
            query_timeout,
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
            Ok(Some(row)) => Ok(Written::Stored(version(row.try_get(0)?)?)),
            Ok(None) => Ok(Written::Conflict),
            // The transaction rolled back: nothing of this write is stored.
            Err(PostgresError::Postgres(error)) if lost_race(&error) => Ok(Written::Conflict),
            Err(error) => Err(error),
        }
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
                || error.code().is_some_and(|code| {
                    // Class 08: connection exception; class 57: operator intervention (shutdown,
                    // crash, terminated backend).
                    let class = code.code().get(..2);
                    class == Some("08") || class == Some("57")
                });
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
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// A version as stored, checked: writes never store one below 1.
fn version(stored: i64) -> Result<Version, PostgresError> {
    u64::try_from(stored)
        .ok()
        .filter(|&version| version >= 1)
        .map(Version)
        .ok_or(PostgresError::Corrupt("a version below 1"))
}

/// The expected version as PostgreSQL holds it; `None` for one no row can hold (beyond
/// `i64::MAX`), which is a conflict.
fn expected_version(expected: Version) -> Option<i64> {
    i64::try_from(expected.0).ok()
}

/// Events as the five arrays the statements unnest.
struct EventColumns {
    org: Vec<String>,
    customer: Vec<Option<String>>,
    at: Vec<i64>,
    kind: Vec<&'static str>,
    bytes: Vec<Vec<u8>>,
}

impl EventColumns {
    fn new(events: &[Event]) -> Self {
        Self {
            org: events.iter().map(|e| e.org.as_str().to_owned()).collect(),
            customer: events
                .iter()
                .map(|e| e.customer.as_ref().map(|c| c.as_str().to_owned()))
                .collect(),
            // A time past 2^63 s is kept whole in the bytes; the column, only an index, saturates.
            at: events
                .iter()
                .map(|e| i64::try_from(e.at.as_secs()).unwrap_or(i64::MAX))
                .collect(),
            kind: events.iter().map(Event::kind_name).collect(),
            bytes: events.iter().map(Event::to_bytes).collect(),
        }
    }
}

impl Store for PostgresStore {
    type Error = PostgresError;

    async fn load_org(&self, org: &OrgId) -> Result<Option<Versioned<OrgPolicy>>, PostgresError> {
        let client = self.pool.get().await?;
        let answer = tokio::time::timeout(self.query_timeout, async {
            let statement = client.prepare_cached(&self.sql.load_org).await?;
            client.query_opt(&statement, &[&org.as_str()]).await
        })
        .await;
        let Some(row) = discard_if_broken(client, answer)? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            version: version(row.try_get(0)?)?,
            value: OrgPolicy::from_bytes(row.try_get(1)?)?,
        }))
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
    ) -> Result<Option<Versioned<CustomerRecord>>, PostgresError> {
        let client = self.pool.get().await?;
        let answer = tokio::time::timeout(self.query_timeout, async {
            let statement = client.prepare_cached(&self.sql.load_customer).await?;
            client
                .query_opt(&statement, &[&org.as_str(), &customer.as_str()])
                .await
        })
        .await;
        let Some(row) = discard_if_broken(client, answer)? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            version: version(row.try_get(0)?)?,
            value: CustomerRecord::from_bytes(row.try_get(1)?)?,
        }))
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
        let e = EventColumns::new(events);
        match expected {
            None => {
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
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        // `seq < before` as `seq <= before - 1`, so no bound is needed when paging is off; values
        // beyond a bigint are clamped (the trait allows clamping the limit).
        let last = query.before_seq.map_or(i64::MAX, |before| {
            i64::try_from(before.saturating_sub(1)).unwrap_or(i64::MAX)
        });
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
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
        let rows = discard_if_broken(client, answer)?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0)?;
                Ok(StoredEvent {
                    seq: u64::try_from(seq)
                        .ok()
                        .filter(|&seq| seq >= 1)
                        .ok_or(PostgresError::Corrupt("a sequence number below 1"))?,
                    event: Event::from_bytes(row.try_get(1)?)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked_both_ways() {
        assert_eq!(version(1).unwrap(), Version(1));
        assert!(matches!(version(0), Err(PostgresError::Corrupt(_))));
        assert!(matches!(version(-5), Err(PostgresError::Corrupt(_))));
        assert_eq!(expected_version(Version(7)), Some(7));
        assert_eq!(expected_version(Version(u64::MAX)), None);
    }

    #[test]
    fn options_keep_at_least_one_connection() {
        let options = PostgresOptions::default().max_connections(0);
        assert_eq!(options.max_connections, 1);
    }
}
