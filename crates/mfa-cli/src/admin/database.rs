//! `--database-url`: the store a service uses, read by the same rules as the portal's flag, so one
//! URL works for both.

use std::fmt;
use std::path::PathBuf;

use mfa_postgres::deadpool_postgres::tokio_postgres;
use tokio_postgres::config::Host;

/// The database named by `--database-url`.
pub(crate) enum Database {
    /// `sqlite://PATH` (or `sqlite:PATH`): a SQLite file, relative to the working directory unless
    /// absolute (`sqlite:///var/lib/portal.db`).
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`.
    Postgres(Box<tokio_postgres::Config>),
}

impl Database {
    /// Reads a database URL. Errors never repeat the URL, which may hold a password.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() || path == ":memory:" || path.starts_with("file::memory:") {
                return Err("sqlite:// needs a file path, such as sqlite://portal.db".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return url
                .parse::<tokio_postgres::Config>()
                .map(|config| Self::Postgres(Box::new(config)))
                // tokio-postgres's messages name the part that is wrong, not the value.
                .map_err(|error| format!("the PostgreSQL URL could not be read: {error}"));
        }
        Err("the database URL must start with sqlite:// or postgres://".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portals_urls() {
        assert!(
            matches!(Database::parse("sqlite://portal.db"), Ok(Database::Sqlite(p)) if p.as_path() == std::path::Path::new("portal.db"))
        );
        assert!(
            matches!(Database::parse("sqlite:///var/lib/p.db"), Ok(Database::Sqlite(p)) if p.as_path() == std::path::Path::new("/var/lib/p.db"))
        );
        for bad in [
            "sqlite://",
            "sqlite://:memory:",
            "mysql://x",
            "portal.db",
            "postgres://me:hunter2@db:notaport/x",
        ] {
            let error = Database::parse(bad).err().unwrap();
            assert!(!error.contains("hunter2"), "{error}");
        }
        let pg = Database::parse("postgres://me:hunter2@db.example:5433/billing").unwrap();
        assert_eq!(pg.to_string(), "postgres://me@db.example:5433/billing");
    }
}
