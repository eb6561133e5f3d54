//! The SQLite form: the migrations, how a file is told to be ours, and the statements, the same
//! for every driver (`mfa-sqlite` on rusqlite, `mfa-sqlx` on sqlx). Parameters are numbered
//! (`?1`), which both drivers bind by position.
//!
//! The schema version lives in the file header (`PRAGMA user_version`) and the file is marked as
//! ours (`PRAGMA application_id`). Both are read before anything is written ([`IDENTIFY`]), so a
//! file from a newer version, or another application's database, is refused untouched.

/// `PRAGMA application_id` of our files: "MFAs" in ASCII.
pub const APPLICATION_ID: i32 = 0x4D46_4173;

/// The migrations, in order: migration `i` takes the schema from version `i` to `i + 1`. Append
/// only; never edit one that has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: organisations, customers, the audit log.
    r"
    CREATE TABLE orgs (
        org TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL,
        policy BLOB NOT NULL
    );

    -- state and sealing_key_id repeat what the record says, for admin queries (who is configured,
    -- which records a retired key still seals); the record bytes are the truth.
    CREATE TABLE customers (
        org TEXT NOT NULL,
        customer TEXT NOT NULL,
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        sealing_key_id INTEGER NULL,
        record BLOB NOT NULL,
        PRIMARY KEY (org, customer)
    );

    -- AUTOINCREMENT: a sequence number is never handed out twice, even after the newest events
    -- are deleted.
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        org TEXT NOT NULL,
        customer TEXT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        event BLOB NOT NULL
    );
    CREATE INDEX events_by_customer ON events (org, customer, seq);
    CREATE INDEX events_by_org ON events (org, seq);

    -- The last version of each record deleted by hand, so a record created again under the same
    -- key starts above it: a version is never reused for a key, or a node still holding the old
    -- version could overwrite the new record.
    CREATE TABLE retired_orgs (
        org TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE TABLE retired_customers (
        org TEXT NOT NULL,
        customer TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (org, customer)
    );
    CREATE TRIGGER orgs_retire AFTER DELETE ON orgs BEGIN
        INSERT INTO retired_orgs (org, version) VALUES (OLD.org, OLD.version)
        ON CONFLICT (org) DO UPDATE SET version = max(version, excluded.version);
    END;
    CREATE TRIGGER customers_retire AFTER DELETE ON customers BEGIN
        INSERT INTO retired_customers (org, customer, version)
        VALUES (OLD.org, OLD.customer, OLD.version)
        ON CONFLICT (org, customer) DO UPDATE SET version = max(version, excluded.version);
    END;
    ",
    // 2: key rotation finds the records a key seals, and counts them, without a scan.
    r"
    CREATE INDEX customers_by_sealing_key ON customers (sealing_key_id, org, customer)
    WHERE sealing_key_id IS NOT NULL;
    ",
];

/// The schema version this crate writes: a database is migrated to it, and one with a higher
/// version is refused ([`Identified::Newer`]).
#[allow(
    clippy::cast_possible_wrap,
    reason = "a handful of migrations, far below i64::MAX"
)]
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The file's application id, schema version and number of objects, in one statement (so one
/// snapshot: read one at a time, the id could predate another process's migration and the object
/// count follow it). Read by [`identify`].
pub const IDENTIFY: &str = "SELECT (SELECT application_id FROM pragma_application_id),
        (SELECT user_version FROM pragma_user_version),
        (SELECT count(*) FROM sqlite_master)";

/// What [`identify`] makes of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Identified {
    /// Ours (or empty), at this schema version (0 for an empty file): migrate from there.
    At(i64),
    /// Ours, but at a version newer than this crate writes: leave it untouched.
    Newer {
        /// The file's version.
        found: i64,
    },
    /// Not ours: another application's id, or objects without our id. Leave it untouched.
    NotOurs {
        /// The file's application id (0 when none was set).
        application_id: i32,
    },
}

/// The file's state from what [`IDENTIFY`] read.
#[must_use]
pub const fn identify(application_id: i32, user_version: i64, objects: i64) -> Identified {
    if application_id != 0 && application_id != APPLICATION_ID {
        return Identified::NotOurs { application_id };
    }
    if user_version > SCHEMA_VERSION {
        return Identified::Newer {
            found: user_version,
        };
    }
    if application_id == APPLICATION_ID && user_version >= 1 {
        return Identified::At(user_version);
    }
    // Not marked as ours: only an empty database may become ours.
    if user_version != 0 || objects != 0 {
        return Identified::NotOurs { application_id };
    }
    Identified::At(0)
}

/// The statements a migration ends with, marking the file as ours at [`SCHEMA_VERSION`].
#[must_use]
pub fn mark_migrated() -> String {
    format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};")
}

/// A policy and its version.
pub const LOAD_ORG: &str = "SELECT version, policy FROM orgs WHERE org = ?1";
/// A record and its version.
pub const LOAD_CUSTOMER: &str =
    "SELECT version, record FROM customers WHERE org = ?1 AND customer = ?2";
/// A policy and a record with their versions in one row, NULLs for what was never written (`?1`
/// org, `?2` customer): one statement, so one snapshot, and one trip to a driver's connection.
pub const LOAD_ORG_AND_CUSTOMER: &str = "SELECT o.version, o.policy, c.version, c.record
     FROM (SELECT 1) AS one
     LEFT JOIN orgs o ON o.org = ?1
     LEFT JOIN customers c ON c.org = ?1 AND c.customer = ?2";
/// The last version of a policy deleted by hand.
pub const RETIRED_ORG: &str = "SELECT version FROM retired_orgs WHERE org = ?1";
/// A new policy (nothing if one exists).
pub const INSERT_ORG: &str = "INSERT INTO orgs (org, version, policy) VALUES (?1, ?2, ?3)
     ON CONFLICT (org) DO NOTHING";
/// A policy at its expected version.
pub const UPDATE_ORG: &str =
    "UPDATE orgs SET version = ?2, policy = ?3 WHERE org = ?1 AND version = ?4";
/// The last version of a record deleted by hand.
pub const RETIRED_CUSTOMER: &str =
    "SELECT version FROM retired_customers WHERE org = ?1 AND customer = ?2";
/// A new record (nothing if one exists).
pub const INSERT_CUSTOMER: &str =
    "INSERT INTO customers (org, customer, version, state, sealing_key_id, record)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT (org, customer) DO NOTHING";
/// A record at its expected version.
pub const UPDATE_CUSTOMER: &str =
    "UPDATE customers SET version = ?3, state = ?4, sealing_key_id = ?5, record = ?6
     WHERE org = ?1 AND customer = ?2 AND version = ?7";
/// One audit event.
pub const INSERT_EVENT: &str =
    "INSERT INTO events (org, customer, at, kind, event) VALUES (?1, ?2, ?3, ?4, ?5)";
// INDEXED BY turns a plan that would not use the index (after a schema change) into an error rather
// than a silent full scan.
/// A customer's events up to a sequence number, newest first.
pub const AUDIT_CUSTOMER: &str = "SELECT seq, event FROM events INDEXED BY events_by_customer
     WHERE org = ?1 AND customer = ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT ?4";
/// An organisation's events up to a sequence number, newest first.
pub const AUDIT_ORG: &str = "SELECT seq, event FROM events INDEXED BY events_by_org
     WHERE org = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT ?3";
// Exports walk the same indexes forwards; `at` is checked on the rows walked (events are appended
// in time order, so after the first page little is skipped).
/// A customer's events after a sequence number and from a time, oldest first.
pub const EXPORT_CUSTOMER: &str = "SELECT seq, event FROM events INDEXED BY events_by_customer
     WHERE org = ?1 AND customer = ?2 AND seq > ?3 AND at >= ?4 ORDER BY seq LIMIT ?5";
/// An organisation's events after a sequence number and from a time, oldest first.
pub const EXPORT_ORG: &str = "SELECT seq, event FROM events INDEXED BY events_by_org
     WHERE org = ?1 AND seq > ?2 AND at >= ?3 ORDER BY seq LIMIT ?4";
/// The customers whose secret a key seals, after an (organisation, customer) pair.
pub const SEALED_UNDER: &str =
    "SELECT org, customer FROM customers INDEXED BY customers_by_sealing_key
     WHERE sealing_key_id = ?1 AND (org, customer) > (?2, ?3) ORDER BY org, customer LIMIT ?4";
/// How many secrets each key seals.
pub const COUNT_SEALED: &str = "SELECT sealing_key_id, count(*) FROM customers
     INDEXED BY customers_by_sealing_key WHERE sealing_key_id IS NOT NULL
     GROUP BY sealing_key_id ORDER BY sealing_key_id";

/// Whether an extended result code is `SQLITE_BUSY` or `SQLITE_LOCKED` (any of their extended
/// forms): another connection held the lock past the busy timeout, and the transaction that met
/// it rolled back.
#[must_use]
pub const fn is_busy(extended_code: i32) -> bool {
    // The primary code is the low byte: SQLITE_BUSY = 5, SQLITE_LOCKED = 6.
    matches!(extended_code & 0xFF, 5 | 6)
}
