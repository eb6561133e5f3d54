//! `--database-url`: which database the portal keeps everything in.

use std::fmt;
use std::path::PathBuf;

use mfa_postgres::deadpool_postgres::tokio_postgres;
use tokio_postgres::config::Host;

/// The database named by `--database-url`.
#[derive(Clone)]
pub enum Database {
    /// `sqlite://PATH`: a SQLite file (created on first start), relative to the working directory
    /// unless absolute (`sqlite:///var/lib/portal.db`).
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`: a PostgreSQL database.
    Postgres(Box<tokio_postgres::Config>),
}

/// The URL is not one the portal can use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseError {
    /// Neither `sqlite://` nor `postgres://`.
    #[error("the database URL must start with sqlite:// or postgres://")]
    Scheme,
    /// `sqlite://` with no path, or an in-memory database (the portal's tables and MFA's must
    /// share one file).
    #[error("sqlite:// needs a file path, such as sqlite://portal.db")]
    SqlitePath,
    /// The PostgreSQL URL could not be read. (The URL is not repeated: it may hold a password.)
    #[error("the PostgreSQL URL could not be read: {0}")]
    Postgres(String),
}

impl Database {
    /// Reads a database URL.
    ///
    /// # Errors
    /// [`DatabaseError`] naming what is wrong.
    pub fn parse(url: &str) -> Result<Self, DatabaseError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() || path == ":memory:" || path.starts_with("file::memory:") {
                return Err(DatabaseError::SqlitePath);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return url
                .parse::<tokio_postgres::Config>()
                .map(|config| Self::Postgres(Box::new(config)))
                // tokio-postgres's messages name the part that is wrong, not the value.
                .map_err(|error| DatabaseError::Postgres(error.to_string()));
        }
        Err(DatabaseError::Scheme)
    }
}

/// Creates an empty SQLite file at `path`, readable by its owner only (mode 0600), unless a file is
/// there already. The database holds sealed secrets and password and backup-code hashes; SQLite
/// gives its `-wal` and `-shm` files the same permissions.
///
/// # Errors
/// Any I/O error but the file existing.
pub fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

impl fmt::Display for Database {
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

impl fmt::Debug for Database {
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
            matches!(Database::parse("sqlite://portal.db"), Ok(Database::Sqlite(p)) if p.as_path() == std::path::Path::new("portal.db"))
        );
        assert!(
            matches!(Database::parse("sqlite:///var/lib/p.db"), Ok(Database::Sqlite(p)) if p.as_path() == std::path::Path::new("/var/lib/p.db"))
        );
        for bad in ["sqlite://", "sqlite://:memory:", "sqlite::memory:"] {
            assert!(
                matches!(Database::parse(bad), Err(DatabaseError::SqlitePath)),
                "{bad}"
            );
        }
        assert!(matches!(
            Database::parse("mysql://x"),
            Err(DatabaseError::Scheme)
        ));
        let pg = Database::parse("postgres://me:hunter2@db.example:5433/billing").unwrap();
        assert_eq!(pg.to_string(), "postgres://me@db.example:5433/billing");
        assert!(!format!("{pg:?}").contains("hunter2"));
        let error = Database::parse("postgres://me:hunter2@db:notaport/x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
