//! The embedded, versioned migrations and the statements, written for one PostgreSQL schema.
//!
//! Everything lives in a schema of its own (`mfa` unless the host picks another name), so the
//! tables sit beside the host's without clashing, and several stores (tests, tenants) can share one
//! database. The schema name is checked to be a plain identifier and then quoted into the SQL; no
//! other text reaches a statement except as a bound parameter.

use std::time::Duration;

use deadpool_postgres::tokio_postgres::Transaction;

use crate::PostgresError;

/// The migrations, in order: migration `i` takes the schema from version `i` to `i + 1`. `{s}`
/// stands for the quoted schema name. Append only; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
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

/// The schema version this crate writes: a database opened by this crate is migrated to it, and
/// one with a higher version is refused with [`PostgresError::NewerSchema`].
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "a handful of migrations, far below i32::MAX"
)]
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The first key of the advisory lock migrations take (with a hash of the schema name as the
/// second): "MFAs" in ASCII, as the SQLite store's application id.
const LOCK_CLASS: i32 = 0x4D46_4173;

/// A schema name known to be a plain lower-case identifier, and the statements written for it.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) schema: String,
    quoted: String,
    pub(crate) load_org: String,
    pub(crate) load_customer: String,
    pub(crate) load_org_and_customer: String,
    pub(crate) insert_org: String,
    pub(crate) update_org: String,
    pub(crate) insert_customer: String,
    pub(crate) update_customer: String,
    pub(crate) update_customer_one_event: String,
    pub(crate) append_events: String,
    pub(crate) audit_org: String,
    pub(crate) audit_customer: String,
    pub(crate) export_org: String,
    pub(crate) export_customer: String,
    pub(crate) sealed_under: String,
    pub(crate) count_sealed: String,
}

/// The events of a write, bound as five parallel arrays and unnested in order.
const EVENTS_FROM: &str = "unnest($E1::text[], $E2::text[], $E3::int8[], $E4::text[], $E5::bytea[])
         WITH ORDINALITY AS e(org, customer, at, kind, event, n)";

impl Sql {
    /// The statements for `schema`, or why the name is refused.
    pub(crate) fn new(schema: &str) -> Result<Self, PostgresError> {
        if !is_plain_identifier(schema) {
            return Err(PostgresError::InvalidSchema(schema.to_owned()));
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
        Ok(Self {
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

    /// Brings the schema to [`SCHEMA_VERSION`] in one transaction, under an advisory lock, so
    /// nodes starting at once take turns and only the first migrates. Nothing is changed when the
    /// schema is newer than this crate or holds tables that are not ours.
    ///
    /// No wait for a lock (the advisory lock another node's migration holds, or a table lock of a
    /// long transaction) and no statement of the migration lasts longer than `timeout` in the
    /// server; it then fails with SQLSTATE `55P03` or `57014`, and the transaction rolls back.
    pub(crate) async fn migrate(
        &self,
        transaction: &Transaction<'_>,
        timeout: Duration,
    ) -> Result<(), PostgresError> {
        // In milliseconds, as both settings count: at least 1, since 0 means no limit, and at
        // most i32::MAX, the most they hold.
        let millis = timeout.as_millis().clamp(1, 2_147_483_647).to_string();
        transaction
            .execute(
                "SELECT set_config('lock_timeout', $1, true), \
                        set_config('statement_timeout', $1, true)",
                &[&millis],
            )
            .await?;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &self.schema],
            )
            .await?;
        let found = self.found_version(transaction).await?;
        if found > SCHEMA_VERSION {
            return Err(PostgresError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let s = &self.quoted;
        if found == 0 {
            transaction
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {s};
                     CREATE TABLE {s}.schema_migrations (
                         version integer PRIMARY KEY,
                         applied_at timestamptz NOT NULL DEFAULT now()
                     );"
                ))
                .await?;
        }
        let done = usize::try_from(found)
            .map_err(|_| PostgresError::Corrupt("a negative schema version"))?;
        for (migration, version) in MIGRATIONS.iter().zip(1..).skip(done) {
            transaction
                .batch_execute(&migration.replace("{s}", s))
                .await?;
            transaction
                .execute(
                    &format!("INSERT INTO {s}.schema_migrations (version) VALUES ($1)"),
                    &[&version],
                )
                .await?;
        }
        Ok(())
    }

    /// The schema's version: 0 for a schema that does not exist or is empty; an error for one
    /// holding tables that are not ours.
    async fn found_version(&self, transaction: &Transaction<'_>) -> Result<i32, PostgresError> {
        let row = transaction
            .query_one(
                "SELECT to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL,
                        (SELECT count(*) FROM pg_class c
                         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1)",
                &[&self.schema],
            )
            .await?;
        let (ours, objects): (bool, i64) = (row.try_get(0)?, row.try_get(1)?);
        if !ours {
            return if objects == 0 {
                Ok(0)
            } else {
                Err(PostgresError::NotOurs {
                    schema: self.schema.clone(),
                })
            };
        }
        let row = transaction
            .query_one(
                &format!(
                    "SELECT coalesce(max(version), 0) FROM {}.schema_migrations",
                    self.quoted
                ),
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
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
            assert!(Sql::new(good).is_ok(), "{good}");
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
            assert!(
                matches!(Sql::new(bad), Err(PostgresError::InvalidSchema(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn event_parameters_follow_the_record_parameters() {
        let sql = Sql::new("mfa").unwrap();
        assert!(sql.update_customer.contains("unnest($7::text[]"));
        assert!(sql.update_customer.contains("$11::bytea[]"));
        assert!(sql.insert_customer.contains("unnest($6::text[]"));
        assert!(sql.insert_org.contains("unnest($3::text[]"));
        assert!(sql.update_org.contains("unnest($4::text[]"));
        assert!(sql.append_events.contains("unnest($1::text[]"));
        assert!(!sql.update_customer.contains("$E"));
    }
}
