//! `--database-url`: which database the portal keeps everything in, read as `mfa admin` reads it
//! (`mfa_ops::database`), so one URL works for both.

pub use mfa_ops::database::{DatabaseUrl as Database, DatabaseUrlError as DatabaseError};
/// Creates an empty SQLite file readable by its owner only, unless one is there: before SQLite
/// first writes it (it holds sealed secrets and password and backup-code hashes).
pub use mfa_ops::files::ensure_private as create_private;
