//! Opening a connection: settings, then the migrations of `mfa-sql` (the same for every driver, so
//! a file this crate wrote is one `mfa-sqlx` reads, and the other way round).
//!
//! The schema version lives in the file header (`PRAGMA user_version`) and the file is marked as
//! ours (`PRAGMA application_id`). Both are read before anything is written, so a file from a newer
//! version of this crate, or another application's database, is refused untouched.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

use crate::{SqliteError, SqliteOptions};

/// How long a statement waits by default for a lock held by another connection (another process on
/// the same file) before giving up; [`SqliteOptions::busy_timeout`] changes it. A conditional write
/// that gives up reports [`Written::Conflict`](mfa_core::store::Written::Conflict) and the service retries
/// it.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most pages `PRAGMA max_page_count` takes.
const MAX_PAGE_COUNT: u64 = 4_294_967_294;

/// The longest busy timeout SQLite takes: it counts milliseconds in a C `int` (about 24.8 days).
const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(0x7FFF_FFFF);

pub use mfa_sql::sqlite::SCHEMA_VERSION;
use mfa_sql::sqlite::{APPLICATION_ID, IDENTIFY, Identified, MIGRATIONS};

/// Opens (creating if needed) and migrates the database at `path`, or a private in-memory database
/// for `None`.
pub(crate) fn open(
    path: Option<&Path>,
    options: &SqliteOptions,
) -> Result<Connection, SqliteError> {
    let mut connection = match path {
        Some(path) => Connection::open(path)?,
        None => Connection::open_in_memory()?,
    };
    // Nothing is written before `identify` has said the file is ours (or empty) and not newer.
    let busy_timeout = options.busy_timeout.min(MAX_BUSY_TIMEOUT);
    connection.busy_timeout(busy_timeout)?;
    connection.pragma_update(None, "foreign_keys", true)?;
    if let Some(max_size) = options.max_size {
        // Per connection, not stored in the file: every process sets its own ceiling.
        let page_size: i64 = connection.pragma_query_value(None, "page_size", |row| row.get(0))?;
        let pages = max_size / u64::try_from(page_size).unwrap_or(1).max(1);
        let pages = i64::try_from(pages.clamp(1, MAX_PAGE_COUNT)).unwrap_or(i64::MAX);
        connection.pragma_update(None, "max_page_count", pages)?;
    }
    let found = identify(&connection)?;
    if path.is_some() {
        // WAL: readers never block the writer, and a commit is one append to the log. A file system
        // without shared memory keeps the rollback journal, which is just as safe, only slower.
        let mode: String = connection.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Switching needs the file to itself, and SQLite answers "busy" at once rather than
            // wait for its busy handler (several processes opening a new file at once): wait here.
            retry_while_busy(busy_timeout, || {
                connection.pragma_update_and_check(None, "journal_mode", "wal", |row| {
                    row.get::<_, String>(0)
                })
            })?;
        }
    }
    // FULL syncs the log at every commit: an accepted code stays accepted across a power cut, so it
    // cannot be replayed afterwards. (WAL's usual NORMAL may lose the last commits.)
    connection.pragma_update(None, "synchronous", "FULL")?;
    if found < SCHEMA_VERSION {
        migrate(&mut connection)?;
    }
    Ok(connection)
}

/// Runs `statement` again while SQLite says the database is busy, for up to `timeout`.
fn retry_while_busy<T>(
    timeout: Duration,
    mut statement: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match statement() {
            Err(error)
                if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            outcome => return outcome,
        }
    }
}

/// The file's schema version, or why it is not ours to migrate. Reads only.
fn identify(connection: &Connection) -> Result<i64, SqliteError> {
    let (application_id, found, objects): (i32, i64, i64) =
        connection.query_row(IDENTIFY, [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    match mfa_sql::sqlite::identify(application_id, found, objects) {
        Identified::At(version) => Ok(version),
        Identified::Newer { found } => Err(SqliteError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        }),
        Identified::NotOurs { application_id } => Err(SqliteError::NotOurs { application_id }),
        _ => Err(SqliteError::Corrupt("a schema this version cannot tell")),
    }
}

/// Applies the missing migrations in one `BEGIN IMMEDIATE` transaction: several processes opening a
/// new file at once take turns, and all but the first find nothing left to do.
fn migrate(connection: &mut Connection) -> Result<(), SqliteError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = identify(&transaction)?;
    let done =
        usize::try_from(found).map_err(|_| SqliteError::Corrupt("a negative schema version"))?;
    for migration in MIGRATIONS.iter().skip(done) {
        transaction.execute_batch(migration)?;
    }
    transaction.pragma_update(None, "application_id", APPLICATION_ID)?;
    transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    transaction.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(connection: &Connection, name: &str) -> i64 {
        connection
            .pragma_query_value(None, name, |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_new_database_is_marked_and_at_the_current_version() {
        let connection = open(None, &SqliteOptions::default()).unwrap();
        assert_eq!(pragma(&connection, "user_version"), SCHEMA_VERSION);
        assert_eq!(
            pragma(&connection, "application_id"),
            i64::from(APPLICATION_ID)
        );
        assert_eq!(pragma(&connection, "foreign_keys"), 1);
        assert_eq!(identify(&connection).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn options_reach_the_connection() {
        let options = SqliteOptions {
            busy_timeout: Duration::from_millis(1234),
            max_size: Some(64 * 4096 + 17),
        };
        let connection = open(None, &options).unwrap();
        assert_eq!(pragma(&connection, "busy_timeout"), 1234);
        assert_eq!(pragma(&connection, "max_page_count"), 64);
        let connection = open(None, &SqliteOptions::default()).unwrap();
        assert_eq!(pragma(&connection, "busy_timeout"), 5000);
    }

    #[test]
    fn options_beyond_what_sqlite_takes_are_clamped() {
        let mut options = SqliteOptions {
            busy_timeout: Duration::MAX,
            max_size: Some(u64::MAX),
        };
        let connection = open(None, &options).unwrap();
        assert_eq!(pragma(&connection, "busy_timeout"), i64::from(i32::MAX));
        assert_eq!(pragma(&connection, "max_page_count"), 4_294_967_294);
        options.max_size = Some(0);
        let error = open(None, &options).unwrap_err();
        assert!(
            matches!(&error, SqliteError::Sqlite(sqlite)
                if sqlite.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)),
            "{error:?}"
        );
    }

    #[test]
    fn tables_without_our_mark_are_not_ours() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch("CREATE TABLE t (x)").unwrap();
        assert!(matches!(
            identify(&connection),
            Err(SqliteError::NotOurs { application_id: 0 })
        ));
    }
}
