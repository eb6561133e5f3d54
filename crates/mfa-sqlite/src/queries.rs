//! The statements, run on the connection's thread. Every lookup goes through a primary key or an
//! index (the tests below check the query plans); no statement scans a whole table.

use mfa_core::store::{Version, Written};
use mfa_sql::sqlite::{
    AUDIT_CUSTOMER, AUDIT_ORG, COUNT_SEALED, EXPORT_CUSTOMER, EXPORT_ORG, INSERT_CUSTOMER,
    INSERT_EVENT, INSERT_ORG, LOAD_CUSTOMER, LOAD_ORG, RETIRED_CUSTOMER, RETIRED_ORG, SEALED_UNDER,
    UPDATE_CUSTOMER, UPDATE_ORG,
};
use mfa_sql::{first_version, next_version};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::SqliteError;

pub(crate) use mfa_sql::{CustomerRow, EventRow};

/// A stored row: its version or sequence number as SQLite holds it, and its bytes.
pub(crate) type Row = (i64, Vec<u8>);

/// A stored policy or record: its version and bytes, each `None` where the row holds a value of
/// another type (the table is not `STRICT`, so a hand edit can put one there).
pub(crate) type RecordRow = (Option<i64>, Option<Vec<u8>>);

fn record_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok((row.get(0).ok(), row.get(1).ok()))
}

pub(crate) fn load_org(
    connection: &Connection,
    org: &str,
) -> Result<Option<RecordRow>, SqliteError> {
    Ok(connection
        .prepare_cached(LOAD_ORG)?
        .query_row([org], record_row)
        .optional()?)
}

pub(crate) fn load_customer(
    connection: &Connection,
    org: &str,
    customer: &str,
) -> Result<Option<RecordRow>, SqliteError> {
    Ok(connection
        .prepare_cached(LOAD_CUSTOMER)?
        .query_row([org, customer], record_row)
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
                    .prepare_cached(RETIRED_ORG)?
                    .query_row([org], |row| row.get(0))
                    .optional()?;
                let Some(next) = first_version(retired) else {
                    return Ok(None);
                };
                let changed = transaction
                    .prepare_cached(INSERT_ORG)?
                    .execute(params![org, next, policy])?;
                (next, changed)
            }
            Some(expected) => {
                let Some((current, next)) = next_version(expected) else {
                    return Ok(None);
                };
                let changed = transaction
                    .prepare_cached(UPDATE_ORG)?
                    .execute(params![org, next, policy, current])?;
                (next, changed)
            }
        };
        Ok(mfa_sql::stored(next, u64::try_from(changed).unwrap_or(0)))
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
                    .prepare_cached(RETIRED_CUSTOMER)?
                    .query_row([org, customer], |row| row.get(0))
                    .optional()?;
                let Some(next) = first_version(retired) else {
                    return Ok(None);
                };
                let changed = transaction
                    .prepare_cached(INSERT_CUSTOMER)?
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
                    .prepare_cached(UPDATE_CUSTOMER)?
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
        Ok(mfa_sql::stored(next, u64::try_from(changed).unwrap_or(0)))
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
    let mut insert = transaction.prepare_cached(INSERT_EVENT)?;
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

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _)
        if mfa_sql::sqlite::is_busy(failure.extended_code))
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
}
