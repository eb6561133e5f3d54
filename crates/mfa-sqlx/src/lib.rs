#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Panic policy (as in mfa-core): an error means bad input, a panic means a broken invariant, and no
// input may cause one.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod error;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use error::SqlxError;
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PgStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{BUSY_TIMEOUT, SqliteStore};
pub use sqlx;

/// Whether `error` leaves its connection unfit to reuse: the connection broke, or the database
/// said the session is over (`session_over` reads a database's own code).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn is_broken(error: &sqlx::Error, session_over: fn(&str) -> bool) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| session_over(&code)),
        _ => false,
    }
}
