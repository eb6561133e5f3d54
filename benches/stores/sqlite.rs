//! The SQLite side: where the files go, the reference transaction written directly with rusqlite,
//! the counts the agreement check reads, and the filler rows.

use std::path::{Path, PathBuf};

use mfa_sqlite::{BUSY_TIMEOUT, SqliteStore};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::sign_in::{ORG, T0};

/// The directory for this run's database files: `$MFA_BENCH_DIR`, or cargo's temporary directory
/// inside `target/`, so the files sit on the file system a real user's database would (a disk, not
/// `/dev/shm`). Removed when dropped.
pub(crate) struct BenchDir {
    path: PathBuf,
}

impl BenchDir {
    pub(crate) fn new() -> Self {
        let root = std::env::var_os("MFA_BENCH_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
        let path = root.join(format!("mfa-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("the bench directory can be created");
        Self { path }
    }

    /// A database file in this directory.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// What `df -T` says about the directory (device, file system type, sizes): an fsync costs
    /// what the file system and the disk under it make it cost.
    pub(crate) fn file_system(&self) -> String {
        std::process::Command::new("df")
            .arg("-T")
            .arg(&self.path)
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.lines().nth(1).map(str::to_owned))
            .unwrap_or_else(|| "unknown (df -T failed)".to_owned())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A new store file at `path`, created and migrated by the store itself.
pub(crate) async fn open_store(path: &Path) -> SqliteStore {
    SqliteStore::open(path).await.expect("the store opens")
}

/// A direct connection with the settings the store gives its own: WAL (kept in the file), full
/// sync at every commit, the same busy timeout, foreign keys on.
pub(crate) fn connect(path: &Path) -> Connection {
    let connection = Connection::open(path).expect("the file opens");
    connection.busy_timeout(BUSY_TIMEOUT).expect("busy timeout");
    connection
        .pragma_update(None, "foreign_keys", true)
        .expect("foreign keys");
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .expect("journal mode");
    assert!(mode.eq_ignore_ascii_case("wal"), "WAL, as the store");
    connection
        .pragma_update(None, "synchronous", "FULL")
        .expect("synchronous");
    let synchronous: i64 = connection
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .expect("synchronous");
    assert_eq!(synchronous, 2, "synchronous = FULL, as the store");
    connection
}

/// The customer's version and the number of events stored for the customer.
pub(crate) fn counts(connection: &Connection, customer: &str) -> (i64, i64) {
    connection
        .query_row(
            "SELECT (SELECT version FROM customers WHERE org = ?1 AND customer = ?2),
                    (SELECT count(*) FROM events WHERE org = ?1 AND customer = ?2)",
            params![ORG, customer],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("counts")
}

/// The customer's stored record and the newest event's bytes and kind, as the store wrote them.
pub(crate) fn last_write(connection: &Connection, customer: &str) -> (Vec<u8>, Vec<u8>, String) {
    connection
        .query_row(
            "SELECT c.record, e.event, e.kind FROM customers c, events e
             WHERE c.org = ?1 AND c.customer = ?2 AND e.org = ?1 AND e.customer = ?2
             ORDER BY e.seq DESC LIMIT 1",
            params![ORG, customer],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("the customer and an event")
}

/// The policy bytes of [`ORG`].
pub(crate) fn policy(connection: &Connection) -> Vec<u8> {
    connection
        .query_row("SELECT policy FROM orgs WHERE org = ?1", [ORG], |row| {
            row.get(0)
        })
        .expect("the organisation")
}

/// The least work a sign-in's write needs, written directly with rusqlite on a connection with the
/// store's settings: one `BEGIN IMMEDIATE` transaction that updates one customer row (the same
/// bytes as the store writes, conditional on its version) and inserts one event row (the same bytes
/// and indexed columns), through statements prepared once. [`write`](Self::write) reads nothing,
/// decodes nothing and verifies nothing; [`read_then_write`](Self::read_then_write) first reads
/// what a verification needs. Both run on the calling thread.
///
/// It works on a file of its own, made by the store (same schema, same indexes, same pragmas), so
/// its fsyncs and checkpoints are its own.
pub(crate) struct Reference {
    connection: Connection,
    customer: String,
    version: i64,
    at: i64,
    record: Vec<u8>,
    event: Vec<u8>,
    kind: String,
}

/// The reference's read (the policy and the record, in one statement), update and insert, prepared
/// once (the connection's statement cache).
const READ: &str = "SELECT (SELECT policy FROM orgs WHERE org = ?1), version, record FROM customers
     WHERE org = ?1 AND customer = ?2";
const UPDATE: &str = "UPDATE customers SET version = ?3, record = ?4
     WHERE org = ?1 AND customer = ?2 AND version = ?5";
const INSERT: &str =
    "INSERT INTO events (org, customer, at, kind, event) VALUES (?1, ?2, ?3, ?4, ?5)";

impl Reference {
    /// The reference on the store file at `path` (made by [`open_store`] and closed), with
    /// [`ORG`] holding `policy` and one customer whose row holds `record`, writing `event` of `kind`
    /// each time.
    pub(crate) fn new(
        path: &Path,
        policy: &[u8],
        record: Vec<u8>,
        event: Vec<u8>,
        kind: String,
    ) -> Self {
        let connection = connect(path);
        let customer = "reference@acme.test".to_owned();
        connection
            .execute(
                "INSERT INTO orgs (org, version, policy) VALUES (?1, 1, ?2)",
                params![ORG, policy],
            )
            .expect("the reference organisation");
        connection
            .execute(
                "INSERT INTO customers (org, customer, version, state, sealing_key_id, record)
                 VALUES (?1, ?2, 1, 'configured', 1, ?3)",
                params![ORG, customer, record],
            )
            .expect("the reference row");
        for sql in [READ, UPDATE, INSERT] {
            connection
                .prepare_cached(sql)
                .expect("the statement prepares");
        }
        Self {
            connection,
            customer,
            version: 1,
            at: i64::try_from(T0).expect("T0 fits"),
            record,
            event,
            kind,
        }
    }

    /// One write: `BEGIN IMMEDIATE`, `UPDATE`, `INSERT`, `COMMIT` (which syncs the log).
    pub(crate) fn write(&mut self) {
        self.at += 30;
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        let updated = transaction
            .prepare_cached(UPDATE)
            .expect("cached")
            .execute(params![
                ORG,
                self.customer,
                self.version + 1,
                self.record,
                self.version
            ])
            .expect("update");
        assert_eq!(updated, 1, "the version held");
        transaction
            .prepare_cached(INSERT)
            .expect("cached")
            .execute(params![ORG, self.customer, self.at, self.kind, self.event])
            .expect("insert");
        transaction.commit().expect("commit");
        self.version += 1;
    }

    /// The least work including the read a verification needs (the policy and the record, which
    /// the application must see to check the code): one `SELECT`, then [`write`](Self::write)
    /// with the version it read as the expected one.
    pub(crate) fn read_then_write(&mut self) {
        let (policy, version, record): (Vec<u8>, i64, Vec<u8>) = self
            .connection
            .prepare_cached(READ)
            .expect("cached")
            .query_row(params![ORG, self.customer], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .expect("read");
        assert!(!policy.is_empty() && !record.is_empty(), "both rows read");
        assert_eq!(version, self.version, "nobody else writes the row");
        self.write();
    }

    /// The reference customer's id.
    pub(crate) fn customer(&self) -> &str {
        &self.customer
    }

    /// The connection, for the agreement check.
    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }
}

/// The numbers `0 .. ?1` as the rows of `n(i)` (none when `?1` is 0).
const NUMBERS: &str =
    "WITH RECURSIVE n(i) AS (SELECT 0 WHERE ?1 > 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)";

/// Fills the store file at `path` up to `customers` customers in all (one is the benchmarked one,
/// already there) and as many events, in one transaction of set-based inserts: filler customers
/// hold a copy of `record` (they are never read, and a sealed secret only opens for the customer it
/// was sealed for, which is why the benchmarked customer is a real enrollment), 1,000 to an
/// organisation holding a copy of `policy`, and each has one event holding a copy of `event`. The
/// log is then checkpointed into the file and emptied, so timing starts from a short log.
///
/// The filler goes in with `synchronous = OFF` on this connection only: how fast the rows arrive
/// does not matter, and the store's own connection still syncs every commit.
pub(crate) fn seed(path: &Path, customers: u64, record: &[u8], policy: &[u8], event: &[u8]) {
    let filler = i64::try_from(customers.saturating_sub(1)).expect("fits");
    let connection = Connection::open(path).expect("the file opens");
    connection.busy_timeout(BUSY_TIMEOUT).expect("busy timeout");
    connection
        .pragma_update(None, "synchronous", "OFF")
        .expect("synchronous");
    connection.execute_batch("BEGIN IMMEDIATE").expect("begin");
    // Keys in index order, so each insert appends to its B-tree.
    connection
        .execute(
            &format!(
                "{NUMBERS} INSERT INTO orgs (org, version, policy) SELECT printf('org%06d', i), 1, ?2 FROM n"
            ),
            params![(filler + 999) / 1000, policy],
        )
        .expect("filler organisations");
    connection
        .execute(
            &format!(
                "{NUMBERS} INSERT INTO customers (org, customer, version, state, sealing_key_id, record)
                 SELECT printf('org%06d', i / 1000), printf('customer%07d@example.test', i), 1,
                        'configured', 1, ?2
                 FROM n"
            ),
            params![filler, record],
        )
        .expect("filler customers");
    connection
        .execute(
            &format!(
                "{NUMBERS} INSERT INTO events (org, customer, at, kind, event)
                 SELECT printf('org%06d', i / 1000), printf('customer%07d@example.test', i),
                        ?2 - ?1 + i, 'totp_accepted', ?3
                 FROM n"
            ),
            params![filler, i64::try_from(T0).expect("fits"), event],
        )
        .expect("filler events");
    connection.execute_batch("COMMIT").expect("commit");
    let stored: i64 = connection
        .query_row("SELECT count(*) FROM customers", [], |row| row.get(0))
        .expect("count");
    assert_eq!(
        u64::try_from(stored).expect("a count"),
        customers,
        "the filler and the benchmarked customer"
    );
    connection
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
}
