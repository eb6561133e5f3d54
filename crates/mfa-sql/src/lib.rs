//! The SQL form of the mfa stores, shared by every driver: the migrations, the statements and the
//! columns, for PostgreSQL ([`postgres`]) and SQLite ([`sqlite`]).
//!
//! `mfa-postgres` (tokio-postgres), `mfa-sqlite` (rusqlite) and `mfa-sqlx` (the host's sqlx pool)
//! all run these statements on these tables, so a database one of them wrote is the database the
//! others read and write: a host can change driver without migrating data, and `mfa admin` works
//! on a database whatever driver the service uses. This crate does no I/O; it is not meant to be
//! used directly (use a store crate), and it changes with the schema.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod postgres;
pub mod sqlite;

use mfa_core::{
    CustomerId, KeyId, OrgId, UnixTime,
    audit::{AuditExport, AuditQuery, Event},
    machine::CustomerRecord,
    store::{CustomerKey, Encoded, Version, Versioned},
};

/// A value in a row that no version of the stores writes (the database was edited by hand or is
/// damaged); what it is, for the store's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

/// An audit event in the columns it is stored in.
#[derive(Clone, Debug)]
pub struct EventRow {
    /// `org`.
    pub org: String,
    /// `customer`, for customer events.
    pub customer: Option<String>,
    /// `at`, in seconds since the epoch ([`at_column`]).
    pub at: i64,
    /// `kind`: [`Event::kind_name`].
    pub kind: &'static str,
    /// `event`: [`Event::to_bytes`].
    pub bytes: Vec<u8>,
}

impl EventRow {
    /// The columns of `event`.
    #[must_use]
    pub fn new(event: &Event) -> Self {
        Self {
            org: event.org.as_str().to_owned(),
            customer: event.customer.as_ref().map(|c| c.as_str().to_owned()),
            at: at_column(event),
            kind: event.kind_name(),
            bytes: event.to_bytes(),
        }
    }
}

/// Audit events as parallel columns, for PostgreSQL's `unnest` of five arrays.
#[derive(Clone, Debug, Default)]
pub struct EventColumns {
    /// `org` of each event.
    pub org: Vec<String>,
    /// `customer` of each event.
    pub customer: Vec<Option<String>>,
    /// `at` of each event.
    pub at: Vec<i64>,
    /// `kind` of each event.
    pub kind: Vec<&'static str>,
    /// `event` of each event.
    pub bytes: Vec<Vec<u8>>,
}

impl EventColumns {
    /// The columns of `events`, in order.
    #[must_use]
    pub fn new(events: &[Event]) -> Self {
        let mut columns = Self::default();
        for row in events.iter().map(EventRow::new) {
            columns.org.push(row.org);
            columns.customer.push(row.customer);
            columns.at.push(row.at);
            columns.kind.push(row.kind);
            columns.bytes.push(row.bytes);
        }
        columns
    }
}

/// A customer record in the columns it is stored in. `state` and `sealing_key_id` repeat what the
/// record says, for operators' queries and key rotation; the bytes are the truth.
#[derive(Clone, Debug)]
pub struct CustomerRow {
    /// `state`: the state's name.
    pub state: &'static str,
    /// `sealing_key_id`: the key that seals the secret, if there is one.
    pub sealing_key_id: Option<i64>,
    /// `record`: [`CustomerRecord::to_bytes`].
    pub bytes: Vec<u8>,
}

impl CustomerRow {
    /// The columns of `record`.
    #[must_use]
    pub fn new(record: &CustomerRecord) -> Self {
        Self {
            state: record.state().as_str(),
            sealing_key_id: record
                .sealed_secret()
                .map(|sealed| i64::from(sealed.key_id().get())),
            bytes: record.to_bytes(),
        }
    }
}

/// An event's time as its column holds it. A time past 2^63 s is kept whole in the bytes; the
/// column, only an index, saturates.
#[must_use]
pub fn at_column(event: &Event) -> i64 {
    i64::try_from(event.at.as_secs()).unwrap_or(i64::MAX)
}

/// The version a new record starts at: 1, or one above the version of a record deleted by hand
/// under the same key. `None` when that cannot be represented (the write is then a conflict).
#[must_use]
pub fn first_version(retired: Option<i64>) -> Option<i64> {
    retired.unwrap_or(0).max(0).checked_add(1)
}

/// The expected version as a `bigint` holds it; `None` for one no row can hold (beyond
/// `i64::MAX`), which is a conflict.
#[must_use]
pub fn expected_version(expected: Version) -> Option<i64> {
    i64::try_from(expected.0).ok()
}

/// The expected version as a `bigint` holds it and the next one; `None` when either cannot be
/// held, which is a conflict.
#[must_use]
pub fn next_version(expected: Version) -> Option<(i64, i64)> {
    let current = expected_version(expected)?;
    Some((current, current.checked_add(1)?))
}

/// A stored version, checked: writes never store one below 1, nor the largest a `bigint` holds
/// (no write could follow it, so the record could never change again).
///
/// # Errors
/// [`Corrupt`] for a version below 1 or at `i64::MAX`.
pub fn stored_version(stored: i64) -> Result<Version, Corrupt> {
    if stored == i64::MAX {
        return Err(Corrupt("a version no write can follow"));
    }
    u64::try_from(stored)
        .ok()
        .filter(|&version| version >= 1)
        .map(Version)
        .ok_or(Corrupt("a version below 1"))
}

/// A stored policy or record as `mfa-core` takes it, from the version and bytes a driver read
/// from its row (`None` for a value the driver could not read as the type the store writes).
/// A row that is not as the stores write it (a version below 1, a value of another type) comes
/// back [`Encoded::unreadable`], which `mfa-core` reports as that record's corruption, not as a
/// store outage.
#[must_use]
pub fn read_row<T>(version: Option<i64>, bytes: Option<Vec<u8>>) -> Versioned<Encoded<T>> {
    let version = version.and_then(|stored| stored_version(stored).ok());
    match (version, bytes) {
        (Some(version), Some(bytes)) => Versioned {
            version,
            value: Encoded::new(bytes),
        },
        (version, _) => Versioned {
            version: version.unwrap_or(Version(0)),
            value: Encoded::unreadable(),
        },
    }
}

/// A stored sequence number, checked: the log never hands out one below 1.
///
/// # Errors
/// [`Corrupt`] for a sequence number below 1.
pub fn stored_seq(stored: i64) -> Result<u64, Corrupt> {
    u64::try_from(stored)
        .ok()
        .filter(|&seq| seq >= 1)
        .ok_or(Corrupt("a sequence number below 1"))
}

/// A stored key id, checked: key ids are 32 bits.
///
/// # Errors
/// [`Corrupt`] for a key id beyond 32 bits.
pub fn stored_key_id(stored: i64) -> Result<u32, Corrupt> {
    u32::try_from(stored).map_err(|_| Corrupt("a key id beyond 32 bits"))
}

/// A (organisation, customer) pair as stored, checked.
///
/// # Errors
/// [`Corrupt`] for an id that is not valid.
pub fn customer_key(org: String, customer: String) -> Result<CustomerKey, Corrupt> {
    Ok((
        OrgId::new(org).map_err(|_| Corrupt("an invalid organisation id"))?,
        CustomerId::new(customer).map_err(|_| Corrupt("an invalid customer id"))?,
    ))
}

/// A key id and how many secrets it seals, as counted, checked.
///
/// # Errors
/// [`Corrupt`] for a key id beyond 32 bits.
pub fn sealed_count(key: i64, count: i64) -> Result<(KeyId, u64), Corrupt> {
    Ok((
        KeyId::new(stored_key_id(key)?),
        u64::try_from(count).unwrap_or(0),
    ))
}

/// The bounds of an audit page as `bigint`s: the last sequence number wanted (`seq < before` as
/// `seq <= before - 1`, so no bound is needed when paging is off) and the limit, both clamped to
/// what a `bigint` holds (the `Store` trait allows clamping the limit). `None` when the page is
/// empty by its limit.
#[must_use]
pub fn audit_bounds(query: &AuditQuery) -> Option<(i64, i64)> {
    if query.limit == 0 {
        return None;
    }
    let last = query.before_seq.map_or(i64::MAX, |before| {
        i64::try_from(before.saturating_sub(1)).unwrap_or(i64::MAX)
    });
    Some((last, i64::try_from(query.limit).unwrap_or(i64::MAX)))
}

/// The bounds of an export page as `bigint`s: after this sequence number, from this time, at most
/// this many. `None` when no row can match (a zero limit, or bounds past what a `bigint` holds).
#[must_use]
pub fn export_bounds(query: &AuditExport) -> Option<(i64, i64, i64)> {
    if query.limit == 0 {
        return None;
    }
    let after = i64::try_from(query.after_seq.unwrap_or(0)).ok()?;
    let since = i64::try_from(query.since.map_or(0, UnixTime::as_secs)).ok()?;
    Some((after, since, i64::try_from(query.limit).unwrap_or(i64::MAX)))
}

/// Whether a write changed exactly one row: stored at `next`, or not at all.
#[must_use]
pub fn stored(next: i64, changed: u64) -> Option<Version> {
    u64::try_from(next)
        .ok()
        .filter(|_| changed == 1)
        .map(Version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_stop_before_overflow() {
        assert_eq!(first_version(None), Some(1));
        assert_eq!(first_version(Some(7)), Some(8));
        assert_eq!(first_version(Some(-3)), Some(1));
        assert_eq!(first_version(Some(i64::MAX)), None);
        assert_eq!(next_version(Version(1)), Some((1, 2)));
        assert_eq!(next_version(Version(u64::MAX)), None);
        assert_eq!(next_version(Version(i64::MAX as u64)), None);
        assert_eq!(expected_version(Version(7)), Some(7));
        assert_eq!(expected_version(Version(u64::MAX)), None);
        assert_eq!(stored(3, 1), Some(Version(3)));
        assert_eq!(stored(3, 0), None);
    }

    #[test]
    fn rows_not_as_written_are_unreadable_records() {
        use mfa_core::machine::CustomerRecord;
        let good = read_row::<CustomerRecord>(Some(3), Some(vec![1, 2]));
        assert_eq!(good.version, Version(3));
        assert_eq!(good.value.as_bytes(), [1, 2]);
        for (version, bytes) in [
            (Some(0), Some(vec![1])),
            (None, Some(vec![1])),
            (Some(3), None),
        ] {
            let row = read_row::<CustomerRecord>(version, bytes);
            assert_eq!(
                row.value.decode(),
                Err(mfa_core::store::DecodeError::Corrupt)
            );
        }
    }

    #[test]
    fn stored_values_are_checked() {
        assert_eq!(stored_version(1), Ok(Version(1)));
        assert!(stored_version(0).is_err());
        assert!(stored_version(-5).is_err());
        assert!(stored_version(i64::MAX).is_err());
        assert_eq!(stored_seq(1), Ok(1));
        assert!(
            stored_seq(0).is_err(),
            "SQLite and PostgreSQL agree: no event 0"
        );
        assert_eq!(stored_key_id(7), Ok(7));
        assert!(stored_key_id(1 << 40).is_err());
    }

    #[test]
    fn paging_bounds_clamp_to_a_bigint() {
        let page = AuditQuery {
            customer: None,
            before_seq: Some(u64::MAX),
            limit: usize::MAX,
        };
        assert_eq!(audit_bounds(&page), Some((i64::MAX, i64::MAX)));
        assert_eq!(
            audit_bounds(&AuditQuery {
                before_seq: Some(10),
                limit: 5,
                ..AuditQuery::default()
            }),
            Some((9, 5))
        );
        assert_eq!(
            audit_bounds(&AuditQuery {
                limit: 0,
                ..AuditQuery::default()
            }),
            None
        );
        let export = AuditExport {
            after_seq: Some(u64::MAX),
            ..AuditExport::default()
        };
        assert_eq!(export_bounds(&export), None);
        assert_eq!(export_bounds(&AuditExport::default()), Some((0, 0, 1000)));
    }
}
