//! The PostgreSQL form: the migrations and the statements, written for one schema, the same for
//! every driver (`mfa-postgres` on tokio-postgres, `mfa-sqlx` on sqlx).
//!
//! Everything lives in a schema of its own (`mfa` unless the host picks another name), so the
//! tables sit beside the host's without clashing, and several stores (tests, tenants) can share one
//! database. The schema name is checked to be a plain identifier and then quoted into the SQL; no
//! other text reaches a statement except as a bound parameter. The migrations are recorded in the
//! schema's own `schema_migrations` table, apart from any migrations table of the host's (sqlx
//! keeps its own in `_sqlx_migrations`, in the host's schema).
//!
//! A migration runs in one transaction: [`SET_MIGRATION_TIMEOUTS`] (`$1`: the bound in
//! milliseconds, as text), then [`MIGRATION_LOCK`] (`$1`: [`LOCK_CLASS`], `$2`: the schema name) so
//! nodes starting at once take turns, then [`FIND_SCHEMA`] and [`found`] to learn the version,
//! then the missing [`Statements::migration`]s, each recorded with
//! [`Statements::record_migration`].

/// The migrations, in order: migration `i` takes the schema from version `i` to `i + 1`. `{s}`
/// stands for the quoted schema name. Append only; never edit one that has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: organisations, customers, the audit log.
    r#"
    CREATE TABLE {s}.orgs (
        org text PRIMARY KEY,
        version bigint NOT NULL CHECK (version >= 1),
        policy bytea NOT NULL
    );

    -- state and sealing_key_id repeat what the record says, for admin queries (who is configured,
    -- which records a retired key still seals); the record bytes are the truth.
    CREATE TABLE {s}.customers (
        org text NOT NULL,
        customer text NOT NULL,
        version bigint NOT NULL CHECK (version >= 1),
        state text NOT NULL,
        sealing_key_id bigint NULL,
        record bytea NOT NULL,
        PRIMARY KEY (org, customer)
    );

    -- An identity never hands a sequence number out twice, even after a rollback.
    CREATE TABLE {s}.events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        org text NOT NULL,
        customer text NULL,
        at bigint NOT NULL,
        kind text NOT NULL,
        event bytea NOT NULL
    );
    CREATE INDEX events_by_org ON {s}.events (org, seq);
    CREATE INDEX events_by_customer ON {s}.events (org, customer, seq);
    CREATE INDEX events_by_time ON {s}.events (org, at);

    -- The audit log is append-only: rows are never changed or removed through this schema's
    -- tables. (An owner who must purge old events disables the trigger on purpose, in the open.)
    CREATE FUNCTION {s}.events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the MFA audit log is append-only' USING ERRCODE = 'insufficient_privilege';
    END
    $$;
    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {s}.events
        FOR EACH ROW EXECUTE FUNCTION {s}.events_append_only();
    CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {s}.events
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.events_append_only();

    -- The last version of each record deleted by hand, so a record created again under the same
    -- key starts above it: a version is never reused for a key, or a node still holding the old
    -- version could overwrite the new record.
    CREATE TABLE {s}.retired_orgs (
        org text PRIMARY KEY,
        version bigint NOT NULL
    );
    CREATE TABLE {s}.retired_customers (
        org text NOT NULL,
        customer text NOT NULL,
        version bigint NOT NULL,
        PRIMARY KEY (org, customer)
    );
    CREATE FUNCTION {s}.retire_org() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {s}.retired_orgs AS r (org, version) VALUES (OLD.org, OLD.version)
        ON CONFLICT (org) DO UPDATE SET version = greatest(r.version, excluded.version);
        RETURN OLD;
    END
    $$;
    CREATE TRIGGER orgs_retire AFTER DELETE ON {s}.orgs
        FOR EACH ROW EXECUTE FUNCTION {s}.retire_org();
    CREATE FUNCTION {s}.retire_customer() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {s}.retired_customers AS r (org, customer, version)
        VALUES (OLD.org, OLD.customer, OLD.version)
        ON CONFLICT (org, customer) DO UPDATE SET version = greatest(r.version, excluded.version);
        RETURN OLD;
    END
    $$;
    CREATE TRIGGER customers_retire AFTER DELETE ON {s}.customers
        FOR EACH ROW EXECUTE FUNCTION {s}.retire_customer();
    "#,
    // 2: TRUNCATE fires no row triggers, so it would empty the records without retiring their
    // versions, and a record created again would reuse them. Refused, as for the audit log.
    r#"
    CREATE FUNCTION {s}.records_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'TRUNCATE of %.% is refused: MFA record versions would be reused',
                TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'DELETE the rows instead: that keeps their last versions.';
    END
    $$;
    CREATE TRIGGER orgs_no_truncate BEFORE TRUNCATE ON {s}.orgs
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.records_no_truncate();
    CREATE TRIGGER customers_no_truncate BEFORE TRUNCATE ON {s}.customers
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.records_no_truncate();
    "#,
];

/// The schema version this crate writes: a schema is migrated to it, and one with a higher version
/// is refused untouched.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "a handful of migrations, far below i32::MAX"
)]
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The first key of the advisory lock migrations take (with a hash of the schema name as the
/// second): "MFAs" in ASCII, as the SQLite store's application id.
pub const LOCK_CLASS: i32 = 0x4D46_4173;

/// Bounds the migration's transaction: no wait for a lock and no statement longer than `$1`
/// milliseconds (as text); the server then fails it with SQLSTATE `55P03` or `57014`.
pub const SET_MIGRATION_TIMEOUTS: &str = "SELECT set_config('lock_timeout', $1, true), \
     set_config('statement_timeout', $1, true)";

/// Takes the migration lock of a schema (`$1`: [`LOCK_CLASS`], `$2`: the schema's name) until the
/// transaction ends.
pub const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/// How many migrations tables of ours (0 or 1) schema `$1` has, and how many objects.
pub const FIND_SCHEMA: &str = "SELECT
        (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = 'schema_migrations' AND c.relkind = 'r'),
        (SELECT count(*) FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1)";

/// What a migration finds in a schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Found {
    /// Nothing there: create it.
    Empty,
    /// Ours: read its version ([`Statements::applied_version`]).
    Ours,
    /// Someone else's objects, and no migrations table of ours: leave it untouched.
    NotOurs,
}

/// What [`FIND_SCHEMA`] read: how many migrations tables of ours, and how many objects.
#[must_use]
pub const fn found(migrations_tables: i64, objects: i64) -> Found {
    match (migrations_tables, objects) {
        (1.., _) => Found::Ours,
        (_, 0) => Found::Empty,
        _ => Found::NotOurs,
    }
}

/// Whether a SQLSTATE is a serialization failure or a deadlock: the server rolled the transaction
/// back, and trying again with fresh data is the remedy ([`Written::Conflict`]).
///
/// [`Written::Conflict`]: mfa_core::store::Written::Conflict
#[must_use]
pub fn lost_race(sqlstate: &str) -> bool {
    matches!(sqlstate, "40001" | "40P01")
}

/// Whether a SQLSTATE says the server gave up waiting: `lock_timeout` (`55P03`) or
/// `statement_timeout` (`57014`, also an administrator's `pg_cancel_backend`).
#[must_use]
pub fn gave_up_waiting(sqlstate: &str) -> bool {
    matches!(sqlstate, "55P03" | "57014")
}

/// Whether a SQLSTATE says the session is over: class 08 (connection exception) or 57 (operator
/// intervention: shutdown, crash, terminated backend). The connection must not be reused.
#[must_use]
pub fn session_over(sqlstate: &str) -> bool {
    matches!(sqlstate.get(..2), Some("08" | "57"))
}

/// A schema name known to be a plain lower-case identifier, and the statements written for it.
#[derive(Debug)]
pub struct Statements {
    /// The schema's name.
    pub schema: String,
    /// The schema name, quoted for SQL.
    pub quoted: String,
    /// A policy and its version (`$1` org).
    pub load_org: String,
    /// A record and its version (`$1` org, `$2` customer).
    pub load_customer: String,
    /// Both in one row, NULLs for what was never written (`$1`, `$2`).
    pub load_org_and_customer: String,
    /// A new policy with its events (`$1` org, `$2` policy, `$3`..`$7` event arrays); returns the version, or no row.
    pub insert_org: String,
    /// A policy at its expected version with its events (`$1` org, `$2` policy, `$3` expected, `$4`..`$8` event arrays).
    pub update_org: String,
    /// A new record with its events (`$1` org, `$2` customer, `$3` state, `$4` key id, `$5` record, `$6`..`$10` event arrays).
    pub insert_customer: String,
    /// A record at its expected version with its events (`$1`..`$5` as the insert, `$6` expected, `$7`..`$11` event arrays).
    pub update_customer: String,
    /// The same with exactly one event, its columns as plain parameters (`$7`..`$11`).
    pub update_customer_one_event: String,
    /// Events alone (`$1`..`$5` event arrays).
    pub append_events: String,
    /// An organisation's events up to a sequence number, newest first (`$1` org, `$2` last, `$3` limit).
    pub audit_org: String,
    /// A customer's events up to a sequence number, newest first (`$1` org, `$2` customer, `$3` last, `$4` limit).
    pub audit_customer: String,
    /// An organisation's events after a sequence number, from a time, oldest first (`$1` org, `$2` after, `$3` since, `$4` limit).
    pub export_org: String,
    /// A customer's events after a sequence number, from a time, oldest first (`$1` org, `$2` customer, `$3` after, `$4` since, `$5` limit).
    pub export_customer: String,
    /// Customers whose secret key `$1` seals, after (`$2`, `$3`), at most `$4`.
    pub sealed_under: String,
    /// How many secrets each key seals.
    pub count_sealed: String,
}

/// The events of a write, bound as five parallel arrays and unnested in order.
const EVENTS_FROM: &str = "unnest($E1::text[], $E2::text[], $E3::int8[], $E4::text[], $E5::bytea[])
         WITH ORDINALITY AS e(org, customer, at, kind, event, n)";

impl Statements {
    /// The statements for `schema`, or `None` for a name that is not a plain identifier.
    #[must_use]
    pub fn new(schema: &str) -> Option<Self> {
        if !is_plain_identifier(schema) {
            return None;
        }
        let quoted = format!("\"{schema}\"");
        let s = &quoted;
        // The events insert, numbering its parameters from `first`.
        let events = |first: usize| {
            let from = (1..=5).fold(EVENTS_FROM.to_owned(), |sql, i| {
                sql.replace(&format!("$E{i}"), &format!("${}", first + i - 1))
            });
            format!(
                "INSERT INTO {s}.events (org, customer, at, kind, event)
                 SELECT e.org, e.customer, e.at, e.kind, e.event FROM written, {from} ORDER BY e.n"
            )
        };
        // A conditional write is one statement, so one transaction: the record's insert or
        // update, which carries the expected version, and the events, inserted only if that row
        // was written (`FROM written`). No row back means the version did not hold.
        let write = |put: String, first_event_parameter: usize| {
            format!(
                "WITH written AS ({put}), logged AS ({}) SELECT version FROM written",
                events(first_event_parameter)
            )
        };
        let update_customer = format!(
            "UPDATE {s}.customers
             SET version = version + 1, state = $3::text, sealing_key_id = $4::int8,
                 record = $5::bytea
             WHERE org = $1 AND customer = $2 AND version = $6
               AND version < 9223372036854775807
             RETURNING version"
        );
        Some(Self {
            load_org: format!("SELECT version, policy FROM {s}.orgs WHERE org = $1"),
            load_customer: format!(
                "SELECT version, record FROM {s}.customers WHERE org = $1 AND customer = $2"
            ),
            // Exactly one row, with NULLs for what was never written: two primary-key lookups in
            // one round trip.
            load_org_and_customer: format!(
                "SELECT o.version, o.policy, c.version, c.record
                 FROM (SELECT) AS one
                 LEFT JOIN {s}.orgs o ON o.org = $1
                 LEFT JOIN {s}.customers c ON c.org = $1 AND c.customer = $2"
            ),
            // A new record starts one above the version of a record deleted by hand under the same
            // key, and not at all when that would overflow.
            insert_org: write(
                format!(
                    "INSERT INTO {s}.orgs (org, version, policy)
                     SELECT $1::text, coalesce(r.version, 0) + 1, $2::bytea
                     FROM (SELECT max(version) AS version FROM {s}.retired_orgs WHERE org = $1) r
                     WHERE coalesce(r.version, 0) < 9223372036854775807
                     ON CONFLICT (org) DO NOTHING
                     RETURNING version"
                ),
                3,
            ),
            update_org: write(
                format!(
                    "UPDATE {s}.orgs SET version = version + 1, policy = $2::bytea
                     WHERE org = $1 AND version = $3 AND version < 9223372036854775807
                     RETURNING version"
                ),
                4,
            ),
            insert_customer: write(
                format!(
                    "INSERT INTO {s}.customers (org, customer, version, state, sealing_key_id, record)
                     SELECT $1::text, $2::text, coalesce(r.version, 0) + 1, $3::text, $4::int8,
                            $5::bytea
                     FROM (SELECT max(version) AS version FROM {s}.retired_customers
                           WHERE org = $1 AND customer = $2) r
                     WHERE coalesce(r.version, 0) < 9223372036854775807
                     ON CONFLICT (org, customer) DO NOTHING
                     RETURNING version"
                ),
                6,
            ),
            update_customer: write(update_customer.clone(), 7),
            // The same with exactly one event, its columns as plain parameters: a sign-in's write,
            // without five arrays to build and unnest.
            update_customer_one_event: format!(
                "WITH written AS ({update_customer}),
                 logged AS (
                     INSERT INTO {s}.events (org, customer, at, kind, event)
                     SELECT $7::text, $8::text, $9::int8, $10::text, $11::bytea FROM written)
                 SELECT version FROM written"
            ),
            append_events: format!(
                "INSERT INTO {s}.events (org, customer, at, kind, event)
                 SELECT e.org, e.customer, e.at, e.kind, e.event FROM {} ORDER BY e.n",
                (1..=5).fold(EVENTS_FROM.to_owned(), |sql, i| sql
                    .replace(&format!("$E{i}"), &format!("${i}")))
            ),
            // Two statements rather than one with `customer = $2 OR $2 IS NULL`, so each walks its
            // index backwards from `seq <= last` and stops after `limit` rows.
            audit_org: format!(
                "SELECT seq, event FROM {s}.events WHERE org = $1 AND seq <= $2
                 ORDER BY seq DESC LIMIT $3"
            ),
            audit_customer: format!(
                "SELECT seq, event FROM {s}.events WHERE org = $1 AND customer = $2 AND seq <= $3
                 ORDER BY seq DESC LIMIT $4"
            ),
            // Exports walk the same indexes forwards; `at` is checked on the rows walked (events
            // are appended in time order, so after the first page little is skipped).
            export_org: format!(
                "SELECT seq, event FROM {s}.events WHERE org = $1 AND seq > $2 AND at >= $3
                 ORDER BY seq LIMIT $4"
            ),
            export_customer: format!(
                "SELECT seq, event FROM {s}.events
                 WHERE org = $1 AND customer = $2 AND seq > $3 AND at >= $4
                 ORDER BY seq LIMIT $5"
            ),
            // Walks the primary key: a rotation reads each record once over all its pages, and
            // needs no index of its own (which would lock the table for writes while a migration
            // built it). The order is the primary key's (the database's collation), the same in
            // the comparison and the ORDER BY, so pages neither skip nor repeat.
            sealed_under: format!(
                "SELECT org, customer FROM {s}.customers
                 WHERE (org, customer) > ($2::text, $3::text) AND sealing_key_id = $1
                 ORDER BY org, customer LIMIT $4"
            ),
            count_sealed: format!(
                "SELECT sealing_key_id, count(*) FROM {s}.customers
                 WHERE sealing_key_id IS NOT NULL GROUP BY sealing_key_id ORDER BY sealing_key_id"
            ),
            schema: schema.to_owned(),
            quoted,
        })
    }

    /// The migration `index` (0-based) of [`MIGRATIONS`], written for this schema.
    #[must_use]
    pub fn migration(&self, index: usize) -> Option<String> {
        MIGRATIONS
            .get(index)
            .map(|migration| migration.replace("{s}", &self.quoted))
    }

    /// Creates the schema (if missing) and its migrations table: the first step of a migration
    /// from version 0.
    #[must_use]
    pub fn create_schema(&self) -> String {
        let s = &self.quoted;
        format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE {s}.schema_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        )
    }

    /// Records that migration `$1` was applied.
    #[must_use]
    pub fn record_migration(&self) -> String {
        format!(
            "INSERT INTO {}.schema_migrations (version) VALUES ($1)",
            self.quoted
        )
    }

    /// The newest migration applied (0 if none): read once [`FIND_SCHEMA`] found the table.
    #[must_use]
    pub fn applied_version(&self) -> String {
        format!(
            "SELECT coalesce(max(version), 0) FROM {}.schema_migrations",
            self.quoted
        )
    }
}

/// A name that needs no quoting and cannot be confused with another: a lower-case letter or `_`,
/// then lower-case letters, digits and `_`, at most 63 bytes (PostgreSQL's limit), and not starting
/// with `pg_` (reserved for the system).
fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    first_ok
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with("pg_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["mfa", "_x", "mfa_test_12", &"a".repeat(63)] {
            assert!(Statements::new(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "MFA",
            "1mfa",
            "mfa-x",
            "mfa\"; DROP TABLE x; --",
            "pg_catalog",
            "mfa.x",
            "é",
            &"a".repeat(64),
        ] {
            assert!(Statements::new(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn event_parameters_follow_the_record_parameters() {
        let sql = Statements::new("mfa").unwrap();
        assert!(sql.update_customer.contains("unnest($7::text[]"));
        assert!(sql.update_customer.contains("$11::bytea[]"));
        assert!(sql.insert_customer.contains("unnest($6::text[]"));
        assert!(sql.insert_org.contains("unnest($3::text[]"));
        assert!(sql.update_org.contains("unnest($4::text[]"));
        assert!(sql.append_events.contains("unnest($1::text[]"));
        assert!(!sql.update_customer.contains("$E"));
    }
}
