//! Database URLs as the tools and hosts take them (`--database-url`, `MFA_DATABASE_URL`):
//! `sqlite://PATH` or `postgres://...`, one reading for all of them, shown without a password.

use std::fmt;
use std::path::PathBuf;

use mfa_postgres::deadpool_postgres::tokio_postgres;

mod open;
pub use open::{AnyStore, AnyStoreError, Missing, OpenError, OpenOptions, open};

/// The PostgreSQL connection settings a `postgres://` URL reads as.
pub use tokio_postgres::Config as PostgresConfig;
use tokio_postgres::config::Host;

/// A database named by a URL.
#[derive(Clone)]
#[non_exhaustive]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: a SQLite file (created on first start), relative to the working directory
    /// unless absolute (`sqlite:///var/lib/portal.db`).
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`: a PostgreSQL database.
    Postgres(Box<tokio_postgres::Config>),
}

/// The URL is not one the tools can use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseUrlError {
    /// Neither `sqlite://` nor `postgres://`.
    #[error("the database URL must start with sqlite:// or postgres://")]
    Scheme,
    /// `sqlite://` with no path, or an in-memory database (which no other process, nor a restart,
    /// could find again).
    #[error("sqlite:// needs a file path, such as sqlite://portal.db")]
    SqlitePath,
    /// The PostgreSQL URL could not be read. (The URL is not repeated: it may hold a password.)
    #[error("the PostgreSQL URL could not be read: {0}")]
    Postgres(String),
}

impl DatabaseUrl {
    /// Reads a database URL.
    ///
    /// # Errors
    /// [`DatabaseUrlError`] naming what is wrong; never the URL, which may hold a password.
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() || path == ":memory:" || path.starts_with("file::memory:") {
                return Err(DatabaseUrlError::SqlitePath);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return url
                .parse::<tokio_postgres::Config>()
                .map(|config| Self::Postgres(Box::new(config)))
                // tokio-postgres's messages name the part that is wrong, not the value.
                .map_err(|error| DatabaseUrlError::Postgres(error.to_string()));
        }
        Err(DatabaseUrlError::Scheme)
    }
}

impl fmt::Display for DatabaseUrl {
    /// The database without its password: `sqlite://portal.db`, `postgres://user@host:5432/db`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(config) => {
                f.write_str("postgres://")?;
                if let Some(user) = config.get_user() {
                    write!(f, "{user}@")?;
                }
                let ports = config.get_ports();
                for (i, host) in config.get_hosts().iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    match host {
                        Host::Tcp(name) => f.write_str(name)?,
                        #[cfg(unix)]
                        Host::Unix(path) => write!(f, "[{}]", path.display())?,
                    }
                    if let Some(port) = ports.get(i).or_else(|| ports.first()) {
                        write!(f, ":{port}")?;
                    }
                }
                if let Some(name) = config.get_dbname() {
                    write!(f, "/{name}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(
            matches!(DatabaseUrl::parse("sqlite://portal.db"), Ok(DatabaseUrl::Sqlite(p)) if p.as_path() == std::path::Path::new("portal.db"))
        );
        assert!(
            matches!(DatabaseUrl::parse("sqlite:///var/lib/p.db"), Ok(DatabaseUrl::Sqlite(p)) if p.as_path() == std::path::Path::new("/var/lib/p.db"))
        );
        for bad in ["sqlite://", "sqlite://:memory:", "sqlite::memory:"] {
            assert!(
                matches!(DatabaseUrl::parse(bad), Err(DatabaseUrlError::SqlitePath)),
                "{bad}"
            );
        }
        assert!(matches!(
            DatabaseUrl::parse("mysql://x"),
            Err(DatabaseUrlError::Scheme)
        ));
        let pg = DatabaseUrl::parse("postgres://me:hunter2@db.example:5433/billing").unwrap();
        assert_eq!(pg.to_string(), "postgres://me@db.example:5433/billing");
        assert!(!format!("{pg:?}").contains("hunter2"));
        let error = DatabaseUrl::parse("postgres://me:hunter2@db:notaport/x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
