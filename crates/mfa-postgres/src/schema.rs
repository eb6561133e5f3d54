//! Creating and migrating the schema, with the migrations and statements of `mfa-sql` (the same
//! for every driver, so a database this crate wrote is one `mfa-sqlx` reads, and the other way
//! round).

use std::time::Duration;

use deadpool_postgres::tokio_postgres::Transaction;
use mfa_sql::postgres::{
    FIND_SCHEMA, Found, LOCK_CLASS, MIGRATION_LOCK, SET_MIGRATION_TIMEOUTS, Statements, found,
};

use crate::PostgresError;

pub use mfa_sql::postgres::SCHEMA_VERSION;

/// The statements for `schema`, or why the name is refused.
pub(crate) fn statements(schema: &str) -> Result<Statements, PostgresError> {
    Statements::new(schema).ok_or_else(|| PostgresError::InvalidSchema(schema.to_owned()))
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, under an advisory lock, so nodes
/// starting at once take turns and only the first migrates. Nothing is changed when the schema is
/// newer than this crate or holds tables that are not ours.
///
/// No wait for a lock (the advisory lock another node's migration holds, or a table lock of a long
/// transaction) and no statement of the migration lasts longer than `timeout` in the server; it
/// then fails with SQLSTATE `55P03` or `57014`, and the transaction rolls back.
pub(crate) async fn migrate(
    sql: &Statements,
    transaction: &Transaction<'_>,
    timeout: Duration,
) -> Result<(), PostgresError> {
    // In milliseconds, as both settings count: at least 1, since 0 means no limit, and at most
    // i32::MAX, the most they hold.
    let millis = timeout.as_millis().clamp(1, 2_147_483_647).to_string();
    transaction
        .execute(SET_MIGRATION_TIMEOUTS, &[&millis])
        .await?;
    transaction
        .execute(MIGRATION_LOCK, &[&LOCK_CLASS, &sql.schema])
        .await?;
    let row = transaction.query_one(FIND_SCHEMA, &[&sql.schema]).await?;
    let found_version = match found(row.try_get(0)?, row.try_get(1)?) {
        Found::Empty => 0,
        Found::Ours => transaction
            .query_one(&sql.applied_version(), &[])
            .await?
            .try_get(0)?,
        _ => {
            return Err(PostgresError::NotOurs {
                schema: sql.schema.clone(),
            });
        }
    };
    if found_version > SCHEMA_VERSION {
        return Err(PostgresError::NewerSchema {
            found: found_version,
            supported: SCHEMA_VERSION,
        });
    }
    if found_version == SCHEMA_VERSION {
        return Ok(());
    }
    if found_version == 0 {
        transaction.batch_execute(&sql.create_schema()).await?;
    }
    let done = usize::try_from(found_version)
        .map_err(|_| PostgresError::Corrupt("a negative schema version"))?;
    let record = sql.record_migration();
    for (index, version) in (done..).zip(found_version + 1..=SCHEMA_VERSION) {
        let Some(migration) = sql.migration(index) else {
            break;
        };
        transaction.batch_execute(&migration).await?;
        transaction.execute(&record, &[&version]).await?;
    }
    Ok(())
}
