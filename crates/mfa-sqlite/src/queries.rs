//! The statements, run on the connection's thread. Every lookup goes through a primary key or an
//! index (the tests below check the query plans); no statement scans a whole table.

use mfa_core::{
    audit::Event,
    machine::CustomerRecord,
    store::{Version, Written},
};
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
};

use crate::SqliteError;

/// An event in the columns it is stored in, made on the caller's task so the thread only writes.
pub(crate) struct EventRow {
    org: String,
    customer: Option<String>,
    at: i64,
    kind: &'static str,
    bytes: Vec<u8>,
}

impl EventRow {
    pub(crate) fn new(event: &Event) -> Self {
        Self {
            org: event.org.as_str().to_owned(),
            customer: event.customer.as_ref().map(|c| c.as_str().to_owned()),
            // A time past 2^63 s is kept whole in the bytes; the column, only an index, saturates.
            at: i64::try_from(event.at.as_secs()).unwrap_or(i64::MAX),
            kind: event.kind_name(),
            bytes: event.to_bytes(),
        }
    }
}

/// A customer record in the columns it is stored in.
pub(crate) struct CustomerRow {
    state: &'static str,
    sealing_key_id: Option<i64>,
    bytes: Vec<u8>,
}

impl CustomerRow {
    pub(crate) fn new(record: &CustomerRecord) -> Self {
        Self {
            state: record.state().as_str(),
            sealing_key_id: record
                .sealed_secret()
                .map(|sealed| i64::from(sealed.key_id().get())),
            bytes: record.to_bytes(),
        }
    }
}

/// A stored row: its version or sequence number as SQLite holds it, and its bytes.
pub(crate) type Row = (i64, Vec<u8>);

pub(crate) fn load_org(connection: &Connection, org: &str) -> Result<Option<Row>, SqliteError> {
    Ok(connection
        .prepare_cached("SELECT version, policy FROM orgs WHERE org = ?1")?
        .query_row([org], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

pub(crate) fn load_customer(
    connection: &Connection,
    org: &str,
    customer: &str,
) -> Result<Option<Row>, SqliteError> {
    Ok(connection
        .prepare_cached("SELECT version, record FROM customers WHERE org = ?1 AND customer = ?2")?
        .query_row([org, customer], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

pub(crate) fn write_org(
    connection: &mut Connection,
    org: &str,
    expected: Option<Version>,
    policy: &[u8],
    events: &[EventRow],
) -> Result<Written, SqliteError> {
    conditional_write(connection, events, |transaction| {
        let (next, changed) = match expected {
            None => {
                let retired: Option<i64> = transaction
                    .prepare_cached("SELECT version FROM retired_orgs WHERE org = ?1")?
                    .query_row([org], |row| row.get(0))
                    .optional()?;
                let Some(next) = first_version(retired) else {
                    return Ok(None);
                };
                let changed = transaction
                    .prepare_cached(
                        "INSERT INTO orgs (org, version, policy) VALUES (?1, ?2, ?3)
                         ON CONFLICT (org) DO NOTHING",
                    )?
                    .execute(params![org, next, policy])?;
                (next, changed)
            }
            Some(expected) => {
                let Some((current, next)) = next_version(expected) else {
                    return Ok(None);
                };
                let changed = transaction
                    .prepare_cached(
                        "UPDATE orgs SET version = ?2, policy = ?3 WHERE org = ?1 AND version = ?4",
                    )?
                    .execute(params![org, next, policy, current])?;
                (next, changed)
            }
        };
        Ok(stored(next, changed))
    })
}

pub(crate) fn write_customer(
    connection: &mut Connection,
    org: &str,
    customer: &str,
    expected: Option<Version>,
    record: &CustomerRow,
    events: &[EventRow],
) -> Result<Written, SqliteError> {
    conditional_write(connection, events, |transaction| {
        let (next, changed) = match expected {
            None => {
                let retired: Option<i64> = transaction
                    .prepare_cached(
                        "SELECT version FROM retired_customers WHERE org = ?1 AND customer = ?2",
                    )?
                    .query_row([org, customer], |row| row.get(0))
                    .optional()?;
                let Some(next) = first_version(retired) else {
                    return Ok(None);
                };
                let changed = transaction
                    .prepare_cached(
                        "INSERT INTO customers (org, customer, version, state, sealing_key_id, record)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (org, customer) DO NOTHING",
                    )?
                    .execute(params![
                        org,
                        customer,
                        next,
                        record.state,
                        record.sealing_key_id,
                        record.bytes
                    ])?;
                (next, changed)
            }
            Some(expected) => {
                let Some((current, next)) = next_version(expected) else {
                    return Ok(None);
                };
                let changed = transaction
                    .prepare_cached(
                        "UPDATE customers SET version = ?3, state = ?4, sealing_key_id = ?5, record = ?6
                         WHERE org = ?1 AND customer = ?2 AND version = ?7",
                    )?
                    .execute(params![
                        org,
                        customer,
                        next,
                        record.state,
                        record.sealing_key_id,
                        record.bytes,
                        current
                    ])?;
                (next, changed)
            }
        };
        Ok(stored(next, changed))
    })
}

pub(crate) fn append_events(
    connection: &mut Connection,
    events: &[EventRow],
) -> Result<(), SqliteError> {
    if events.is_empty() {
        return Ok(());
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    insert_events(&transaction, events)?;
    transaction.commit()?;
    Ok(())
}

/// The organisation's events (only `customer`'s, if given) with `seq <= last`, newest first, at most
/// `limit`. Two statements rather than one with `customer = ?2 OR ?2 IS NULL`, so each can walk its
/// index backwards from `last` and stop after `limit` rows.
pub(crate) fn audit(
    connection: &Connection,
    org: &str,
    customer: Option<&str>,
    last: i64,
    limit: i64,
) -> Result<Vec<Row>, SqliteError> {
    let row = |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(1)?));
    let rows = match customer {
        Some(customer) => connection
            .prepare_cached(AUDIT_CUSTOMER)?
            .query_map(params![org, customer, last, limit], row)?
            .collect::<Result<Vec<Row>, _>>()?,
        None => connection
            .prepare_cached(AUDIT_ORG)?
            .query_map(params![org, last, limit], row)?
            .collect::<Result<Vec<Row>, _>>()?,
    };
    Ok(rows)
}

/// The organisation's (or one customer's) events after `after` and at or after `since`, oldest
/// first.
pub(crate) fn export_audit(
    connection: &Connection,
    org: &str,
    customer: Option<&str>,
    after: i64,
    since: i64,
    limit: i64,
) -> Result<Vec<Row>, SqliteError> {
    let row = |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(1)?));
    let rows = match customer {
        Some(customer) => connection
            .prepare_cached(EXPORT_CUSTOMER)?
            .query_map(params![org, customer, after, since, limit], row)?
            .collect::<Result<Vec<Row>, _>>()?,
        None => connection
            .prepare_cached(EXPORT_ORG)?
            .query_map(params![org, after, since, limit], row)?
            .collect::<Result<Vec<Row>, _>>()?,
    };
    Ok(rows)
}

/// Up to `limit` (organisation, customer) pairs whose secret `key` seals, after `after` (the empty
/// pair, below every id, for the first page).
pub(crate) fn sealed_under(
    connection: &Connection,
    key: i64,
    after: (&str, &str),
    limit: i64,
) -> Result<Vec<(String, String)>, SqliteError> {
    Ok(connection
        .prepare_cached(SEALED_UNDER)?
        .query_map(params![key, after.0, after.1, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?)
}

/// How many records each key id seals.
pub(crate) fn count_sealed(connection: &Connection) -> Result<Vec<(i64, i64)>, SqliteError> {
    Ok(connection
        .prepare_cached(COUNT_SEALED)?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

// INDEXED BY turns a plan that would not use the index (after a schema change) into an error rather
// than a silent full scan.
const AUDIT_CUSTOMER: &str = "SELECT seq, event FROM events INDEXED BY events_by_customer
     WHERE org = ?1 AND customer = ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT ?4";
const AUDIT_ORG: &str = "SELECT seq, event FROM events INDEXED BY events_by_org
     WHERE org = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT ?3";
// Exports walk the same indexes forwards; `at` is checked on the rows walked (events are appended
// in time order, so after the first page little is skipped).
const EXPORT_CUSTOMER: &str = "SELECT seq, event FROM events INDEXED BY events_by_customer
     WHERE org = ?1 AND customer = ?2 AND seq > ?3 AND at >= ?4 ORDER BY seq LIMIT ?5";
const EXPORT_ORG: &str = "SELECT seq, event FROM events INDEXED BY events_by_org
     WHERE org = ?1 AND seq > ?2 AND at >= ?3 ORDER BY seq LIMIT ?4";
const SEALED_UNDER: &str = "SELECT org, customer FROM customers INDEXED BY customers_by_sealing_key
     WHERE sealing_key_id = ?1 AND (org, customer) > (?2, ?3) ORDER BY org, customer LIMIT ?4";
const COUNT_SEALED: &str = "SELECT sealing_key_id, count(*) FROM customers
     INDEXED BY customers_by_sealing_key WHERE sealing_key_id IS NOT NULL
     GROUP BY sealing_key_id ORDER BY sealing_key_id";

/// Runs `put` (which stores the record and gives its new version, or `None` when the expected
/// version does not hold) and inserts the events, in one `BEGIN IMMEDIATE` transaction.
///
/// `IMMEDIATE` takes the database's write lock before the version is read, so the check and the
/// write cannot interleave with another connection's, in this process or another. A lock that stays
/// busy past the timeout means another writer kept the database: the transaction rolled back and
/// the write is a [`Written::Conflict`], which the service retries with fresh data.
fn conditional_write(
    connection: &mut Connection,
    events: &[EventRow],
    put: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<Option<Version>>,
) -> Result<Written, SqliteError> {
    let attempt = || -> rusqlite::Result<Option<Version>> {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // On `None` or `Err` the transaction is dropped, which rolls it back.
        let Some(version) = put(&transaction)? else {
            return Ok(None);
        };
        insert_events(&transaction, events)?;
        transaction.commit()?;
        Ok(Some(version))
    };
    match attempt() {
        Ok(Some(version)) => Ok(Written::Stored(version)),
        Ok(None) => Ok(Written::Conflict),
        Err(error) if is_busy(&error) => Ok(Written::Conflict),
        Err(error) => Err(error.into()),
    }
}

fn insert_events(transaction: &Transaction<'_>, events: &[EventRow]) -> rusqlite::Result<()> {
    let mut insert = transaction.prepare_cached(
        "INSERT INTO events (org, customer, at, kind, event) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for event in events {
        insert.execute(params![
            event.org,
            event.customer,
            event.at,
            event.kind,
            event.bytes
        ])?;
    }
    Ok(())
}

/// The version a new record starts at: 1, or one above the version of a record deleted by hand
/// under the same key. `None` when that cannot be represented (the write is then a conflict).
fn first_version(retired: Option<i64>) -> Option<i64> {
    retired.unwrap_or(0).max(0).checked_add(1)
}

/// The expected version as SQLite holds it and the next one; `None` for a version no row can hold
/// (beyond `i64::MAX`), which is a conflict.
fn next_version(expected: Version) -> Option<(i64, i64)> {
    let current = i64::try_from(expected.0).ok()?;
    Some((current, current.checked_add(1)?))
}

/// The outcome of `put`: stored at `next` if a row changed.
fn stored(next: i64, changed: usize) -> Option<Version> {
    // `next` is at least 1 (from `first_version` or a successor), so it always converts.
    u64::try_from(next)
        .ok()
        .filter(|_| changed == 1)
        .map(Version)
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(connection: &Connection, sql: &str, arguments: impl rusqlite::Params) -> String {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let details: Vec<String> = statement
            .query_map(arguments, |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        details.join("; ")
    }

    /// Index searches only: no full scan, and no sort (the index gives the order, so `LIMIT` stops
    /// the walk early).
    fn assert_searches(plan: &str, index: &str) {
        assert!(plan.contains("SEARCH"), "{plan}");
        assert!(plan.contains(index), "{plan}");
        assert!(!plan.contains("SCAN"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn audit_queries_walk_their_index() {
        let connection = crate::schema::open(None, &crate::SqliteOptions::default()).unwrap();
        assert_searches(
            &plan(
                &connection,
                AUDIT_CUSTOMER,
                params!["acme", "alice", 10, 10],
            ),
            "events_by_customer",
        );
        assert_searches(
            &plan(&connection, AUDIT_ORG, params!["acme", 10, 10]),
            "events_by_org",
        );
        assert_searches(
            &plan(
                &connection,
                EXPORT_CUSTOMER,
                params!["acme", "alice", 10, 0, 10],
            ),
            "events_by_customer",
        );
        assert_searches(
            &plan(&connection, EXPORT_ORG, params!["acme", 10, 0, 10]),
            "events_by_org",
        );
    }

    #[test]
    fn key_rotation_queries_walk_their_index() {
        let connection = crate::schema::open(None, &crate::SqliteOptions::default()).unwrap();
        assert_searches(
            &plan(&connection, SEALED_UNDER, params![1, "acme", "alice", 10]),
            "customers_by_sealing_key",
        );
        // Counting reads the whole index (every key's entries), never the table.
        let counting = plan(&connection, COUNT_SEALED, []);
        assert!(
            counting.contains("USING COVERING INDEX customers_by_sealing_key"),
            "{counting}"
        );
        assert!(!counting.contains("TEMP B-TREE"), "{counting}");
    }

    #[test]
    fn record_lookups_use_the_primary_key() {
        let connection = crate::schema::open(None, &crate::SqliteOptions::default()).unwrap();
        for (sql, index) in [
            (
                "SELECT version, record FROM customers WHERE org = 'a' AND customer = 'b'",
                "sqlite_autoindex_customers_1",
            ),
            (
                "SELECT version FROM retired_customers WHERE org = 'a' AND customer = 'b'",
                "sqlite_autoindex_retired_customers_1",
            ),
            (
                "UPDATE customers SET version = 2 WHERE org = 'a' AND customer = 'b' AND version = 1",
                "sqlite_autoindex_customers_1",
            ),
            (
                "SELECT version, policy FROM orgs WHERE org = 'a'",
                "sqlite_autoindex_orgs_1",
            ),
            (
                "UPDATE orgs SET version = 2 WHERE org = 'a' AND version = 1",
                "sqlite_autoindex_orgs_1",
            ),
        ] {
            assert_searches(&plan(&connection, sql, []), index);
        }
    }

    #[test]
    fn versions_start_at_one_and_stop_before_overflow() {
        assert_eq!(first_version(None), Some(1));
        assert_eq!(first_version(Some(7)), Some(8));
        assert_eq!(first_version(Some(-3)), Some(1));
        assert_eq!(first_version(Some(i64::MAX)), None);
        assert_eq!(next_version(Version(1)), Some((1, 2)));
        assert_eq!(next_version(Version(u64::MAX)), None);
        assert_eq!(next_version(Version(i64::MAX as u64)), None);
        assert_eq!(stored(3, 1), Some(Version(3)));
        assert_eq!(stored(3, 0), None);
    }
}
