//! The PostgreSQL side: which server, a fresh schema per run (dropped afterwards), the reference
//! transaction written directly with tokio-postgres, the counts the agreement check reads, and the
//! filler rows.

use std::sync::atomic::{AtomicU64, Ordering};

use mfa_postgres::{PostgresOptions, PostgresStore};
use tokio_postgres::{Client, NoTls, Statement};

use crate::sign_in::{ORG, T0};

/// The variable naming the server the benches use, and the one they fall back to.
const URL: &str = "MFA_BENCH_POSTGRES_URL";
const TEST_URL: &str = "MFA_TEST_POSTGRES_URL";

/// The server's connection string, or `None` (after saying so) when the PostgreSQL benches skip.
pub(crate) fn url() -> Option<String> {
    let url = [URL, TEST_URL]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|url| !url.is_empty()));
    if url.is_none() {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            eprintln!(
                "skipped: neither {URL} nor {TEST_URL} is set, so the PostgreSQL benches did not run \
                 (for example {URL}=postgres://root@127.0.0.1:5432/mfa_ci)"
            );
        });
    }
    url
}

/// A store in a schema of its own, `mfa_bench_<pid>_<n>`, dropped (with everything in it) when
/// this is dropped.
pub(crate) struct BenchSchema {
    url: String,
    name: String,
}

impl BenchSchema {
    pub(crate) fn new(url: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self {
            url: url.to_owned(),
            name: format!("mfa_bench_{}_{n}", std::process::id()),
        }
    }

    /// Connects the store the way a user does (default pool of 16) and lets it create the schema.
    pub(crate) async fn open_store(&self) -> PostgresStore {
        PostgresStore::connect_with(
            self.url.parse().expect("a connection string"),
            PostgresOptions::default().schema(&self.name),
        )
        .await
        .expect("the store connects and migrates")
    }

    /// The schema's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The schema, quoted for SQL.
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.name)
    }
}

impl Drop for BenchSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.quoted());
        // A thread and a runtime of its own: this may run inside or outside a runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let client = connect(&url).await;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .expect("the bench schema drops");
            });
        })
        .join();
    }
}

/// A plain tokio-postgres connection to `url`, without TLS as the store's, its connection task on
/// the current runtime.
pub(crate) async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("the server accepts the connection");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The customer's version and the number of events stored for the customer.
pub(crate) async fn counts(client: &Client, schema: &str, customer: &str) -> (i64, i64) {
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT version FROM {schema}.customers WHERE org = $1 AND customer = $2),
                        (SELECT count(*) FROM {schema}.events WHERE org = $1 AND customer = $2)"
            ),
            &[&ORG, &customer],
        )
        .await
        .expect("counts");
    (row.get(0), row.get(1))
}

/// The customer's stored record and the newest event's bytes and kind, as the store wrote them.
pub(crate) async fn last_write(
    client: &Client,
    schema: &str,
    customer: &str,
) -> (Vec<u8>, Vec<u8>, String) {
    let row = client
        .query_one(
            &format!(
                "SELECT c.record, e.event, e.kind FROM {schema}.customers c, {schema}.events e
                 WHERE c.org = $1 AND c.customer = $2 AND e.org = $1 AND e.customer = $2
                 ORDER BY e.seq DESC LIMIT 1"
            ),
            &[&ORG, &customer],
        )
        .await
        .expect("the customer and an event");
    (row.get(0), row.get(1), row.get(2))
}

/// The policy bytes of [`ORG`].
pub(crate) async fn policy(client: &Client, schema: &str) -> Vec<u8> {
    client
        .query_one(
            &format!("SELECT policy FROM {schema}.orgs WHERE org = $1"),
            &[&ORG],
        )
        .await
        .expect("the organisation")
        .get(0)
}

/// How the reference talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// One statement, so one round trip and one transaction: a data-modifying `WITH` that updates
    /// the row with the expected version and inserts the event only if it did (the form the store
    /// uses, with plain parameters instead of its arrays). The cheapest honest form.
    OneStatement,
    /// The least work including the read a verification needs: one `SELECT` of the policy and the
    /// record (which the application must see to check the code), then [`Form::OneStatement`]
    /// with the version it read as the expected one, on the same connection: two round trips.
    ReadThenOneStatement,
    /// `BEGIN`, `UPDATE`, `INSERT`, `COMMIT`: what most code writes, four round trips.
    FourRoundTrips,
}

/// The least work a sign-in's write needs, written directly with tokio-postgres on a connection of
/// the same kind as the store's (same server, same URL, no TLS): update one customer row (the same
/// bytes as the store writes, conditional on its version) and insert one event row (the same bytes
/// and indexed columns), through prepared statements, in one transaction whose commit the server
/// flushes to its log as it does the store's. Apart from [`Form::ReadThenOneStatement`] it reads
/// nothing, and it never decodes or verifies anything.
///
/// It works in the store's own tables, on a customer row of its own.
pub(crate) struct Reference {
    client: Client,
    customer: String,
    version: i64,
    at: i64,
    record: Vec<u8>,
    event: Vec<u8>,
    kind: String,
    read: Statement,
    one_statement: Statement,
    update: Statement,
    insert: Statement,
}

impl Reference {
    /// The reference in `schema` with one customer whose row holds `record`, writing `event` of
    /// `kind` each time; `customer` names the row (one per concurrent writer).
    pub(crate) async fn new(
        url: &str,
        schema: &str,
        customer: &str,
        record: Vec<u8>,
        event: Vec<u8>,
        kind: String,
    ) -> Self {
        let client = connect(url).await;
        client
            .execute(
                &format!(
                    "INSERT INTO {schema}.customers (org, customer, version, state, sealing_key_id, record)
                     VALUES ($1, $2, 1, 'configured', 1, $3)"
                ),
                &[&ORG, &customer, &record],
            )
            .await
            .expect("the reference row");
        let read = client
            .prepare(&format!(
                "SELECT (SELECT policy FROM {schema}.orgs WHERE org = $1), version, record
                 FROM {schema}.customers WHERE org = $1 AND customer = $2"
            ))
            .await
            .expect("the read prepares");
        let one_statement = client
            .prepare(&format!(
                "WITH updated AS (
                     UPDATE {schema}.customers SET version = version + 1, record = $3
                     WHERE org = $1 AND customer = $2 AND version = $4 RETURNING version),
                 logged AS (
                     INSERT INTO {schema}.events (org, customer, at, kind, event)
                     SELECT $1, $2, $5, $6, $7 FROM updated)
                 SELECT version FROM updated"
            ))
            .await
            .expect("the statement prepares");
        let update = client
            .prepare(&format!(
                "UPDATE {schema}.customers SET version = version + 1, record = $3
                 WHERE org = $1 AND customer = $2 AND version = $4"
            ))
            .await
            .expect("the update prepares");
        let insert = client
            .prepare(&format!(
                "INSERT INTO {schema}.events (org, customer, at, kind, event)
                 VALUES ($1, $2, $3, $4, $5)"
            ))
            .await
            .expect("the insert prepares");
        Self {
            client,
            customer: customer.to_owned(),
            version: 1,
            at: i64::try_from(T0).expect("T0 fits"),
            record,
            event,
            kind,
            read,
            one_statement,
            update,
            insert,
        }
    }

    /// One write in the given form.
    pub(crate) async fn write(&mut self, form: Form) {
        self.at += 30;
        match form {
            Form::ReadThenOneStatement => {
                let row = self
                    .client
                    .query_one(&self.read, &[&ORG, &self.customer])
                    .await
                    .expect("the read");
                let (policy, version, record): (Option<Vec<u8>>, i64, Vec<u8>) =
                    (row.get(0), row.get(1), row.get(2));
                assert!(policy.is_some() && !record.is_empty(), "both rows read");
                assert_eq!(version, self.version, "nobody else writes the row");
                self.one_statement().await;
            }
            Form::OneStatement => self.one_statement().await,
            Form::FourRoundTrips => {
                let transaction = self.client.transaction().await.expect("begin");
                let updated = transaction
                    .execute(
                        &self.update,
                        &[&ORG, &self.customer, &self.record, &self.version],
                    )
                    .await
                    .expect("update");
                assert_eq!(updated, 1, "the version held");
                transaction
                    .execute(
                        &self.insert,
                        &[&ORG, &self.customer, &self.at, &self.kind, &self.event],
                    )
                    .await
                    .expect("insert");
                transaction.commit().await.expect("commit");
            }
        }
        self.version += 1;
    }

    /// The one-statement write.
    async fn one_statement(&self) {
        let row = self
            .client
            .query_opt(
                &self.one_statement,
                &[
                    &ORG,
                    &self.customer,
                    &self.record,
                    &self.version,
                    &self.at,
                    &self.kind,
                    &self.event,
                ],
            )
            .await
            .expect("the write");
        assert!(row.is_some(), "the version held");
    }

    /// The reference customer's id.
    pub(crate) fn customer(&self) -> &str {
        &self.customer
    }

    /// The connection, for the agreement check.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}

/// Fills `schema` up to `customers` customers in all (one is the benchmarked one, already there)
/// and as many events, with `generate_series`: filler customers hold a copy of `record` (never
/// read; a sealed secret only opens for the customer it was sealed for, which is why the
/// benchmarked customer is a real enrollment), 1,000 to an organisation holding a copy of
/// `policy`, each with one event holding a copy of `event`. Then `VACUUM ANALYZE`, as autovacuum
/// would do soon after such a load (and would otherwise do in the middle of the timing).
pub(crate) async fn seed(
    client: &Client,
    schema: &str,
    customers: u64,
    record: &[u8],
    policy: &[u8],
    event: &[u8],
) {
    let filler = i64::try_from(customers.saturating_sub(1)).expect("fits");
    let t0 = i64::try_from(T0).expect("fits");
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.orgs (org, version, policy)
                 SELECT 'org' || lpad(o::text, 6, '0'), 1, $2
                 FROM generate_series(0, ($1::int8 + 999) / 1000 - 1) o"
            ),
            &[&filler, &policy],
        )
        .await
        .expect("filler organisations");
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.customers (org, customer, version, state, sealing_key_id, record)
                 SELECT 'org' || lpad((i / 1000)::text, 6, '0'),
                        'customer' || lpad(i::text, 7, '0') || '@example.test', 1, 'configured', 1, $2
                 FROM generate_series(0, $1::int8 - 1) i"
            ),
            &[&filler, &record],
        )
        .await
        .expect("filler customers");
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.events (org, customer, at, kind, event)
                 SELECT 'org' || lpad((i / 1000)::text, 6, '0'),
                        'customer' || lpad(i::text, 7, '0') || '@example.test',
                        $2::int8 - $1::int8 + i, 'totp_accepted', $3
                 FROM generate_series(0, $1::int8 - 1) i"
            ),
            &[&filler, &t0, &event],
        )
        .await
        .expect("filler events");
    for table in ["orgs", "customers", "events"] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {schema}.{table}"))
            .await
            .expect("vacuum");
    }
    let stored: i64 = client
        .query_one(&format!("SELECT count(*) FROM {schema}.customers"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        u64::try_from(stored).expect("a count"),
        customers,
        "the filler and the benchmarked customer"
    );
}
