//! The portal's own accounts: who may sign in, with which password, as a customer or an
//! administrator.
//!
//! This is the host application's data, not MFA's: it lives in a small table of the portal's own
//! beside the MFA store's tables (`portal_accounts` in the SQLite file; `accounts` in a schema of its
//! own, `portal` by default, in PostgreSQL), with SQL of its own. Passwords rest as argon2id hashes
//! (PHC strings, a random salt each), computed off the async runtime.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use mfa_core::{CustomerId, OrgId};
use mfa_postgres::deadpool_postgres::{Pool, PoolError, tokio_postgres};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// What an account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A customer of the organisation: signs in to the portal, and to MFA when it is on.
    Customer,
    /// An administrator of the organisation's portal: switches MFA and resets customers.
    Admin,
}

impl Role {
    /// `customer` or `admin`, as stored.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Result<Self, AccountsError> {
        match text {
            "customer" => Ok(Self::Customer),
            "admin" => Ok(Self::Admin),
            _ => Err(AccountsError::Corrupt("an unknown role")),
        }
    }
}

/// One account, as stored.
#[derive(Clone)]
pub struct Account {
    /// The email address, lower case: the customer's id in MFA too.
    pub email: CustomerId,
    /// The organisation the account belongs to.
    pub org: OrgId,
    /// Customer or administrator.
    pub role: Role,
    /// The argon2id PHC string of the password.
    pub password_hash: String,
}

impl fmt::Debug for Account {
    // The hash is not a secret in the strict sense, but an offline guess starts from it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("email", &self.email)
            .field("org", &self.org)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The accounts table failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    /// SQLite failed.
    #[error("an SQLite statement on the accounts table failed")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("a PostgreSQL statement on the accounts table failed")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had.
    #[error("no PostgreSQL connection could be had for the accounts table")]
    Pool(#[from] PoolError),
    /// The schema name is not a plain lower-case identifier.
    #[error("the schema name must be a plain lower-case identifier")]
    InvalidSchema,
    /// A stored row could not be read.
    #[error("stored account: {0}")]
    Corrupt(&'static str),
    /// The blocking task running the query died.
    #[error("the database task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// The accounts table, in the same database as the MFA store.
///
/// An enum rather than a trait: the portal has exactly these two, and a trait with async methods
/// would only move the `match` into generics.
#[derive(Clone, Debug)]
pub enum Accounts {
    /// In the SQLite file.
    Sqlite(SqliteAccounts),
    /// In a PostgreSQL schema of the portal's own.
    Postgres(PostgresAccounts),
}

/// The accounts in a SQLite file: one connection of the portal's own, used from blocking tasks.
#[derive(Clone)]
pub struct SqliteAccounts {
    connection: Arc<Mutex<rusqlite::Connection>>,
}

impl fmt::Debug for SqliteAccounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteAccounts").finish_non_exhaustive()
    }
}

/// The accounts in PostgreSQL: the MFA store's connection pool, and a schema of the portal's own.
#[derive(Clone)]
pub struct PostgresAccounts {
    pool: Pool,
    /// `"schema".accounts`, quoted.
    table: String,
}

impl fmt::Debug for PostgresAccounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresAccounts")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a plain lower-case SQL identifier (so it can be quoted into statements).
fn plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

const SQLITE_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS portal_accounts (
        email TEXT PRIMARY KEY NOT NULL,
        org TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
        password_hash TEXT NOT NULL
    ) STRICT;
";

impl Accounts {
    /// The accounts table in the SQLite file at `path`, created if missing.
    ///
    /// Open the MFA store on the file first: it takes only an empty file or one of its own, and
    /// leaves other tables in its file alone.
    ///
    /// # Errors
    /// [`AccountsError::Sqlite`] when the file cannot be opened or the table created.
    pub async fn sqlite(path: &Path) -> Result<Self, AccountsError> {
        let path = path.to_path_buf();
        let connection = tokio::task::spawn_blocking(move || {
            let connection = rusqlite::Connection::open(path)?;
            // The MFA store's thread holds the same file; wait for its locks rather than fail.
            connection.busy_timeout(mfa_sqlite::BUSY_TIMEOUT)?;
            connection.execute_batch(SQLITE_SCHEMA)?;
            Ok::<_, AccountsError>(connection)
        })
        .await??;
        Ok(Self::Sqlite(SqliteAccounts {
            connection: Arc::new(Mutex::new(connection)),
        }))
    }

    /// The accounts table in `schema` of the database `pool` connects to, created if missing
    /// (under an advisory lock, so that several nodes starting at once take turns).
    ///
    /// # Errors
    /// [`AccountsError::InvalidSchema`] for a schema name that is not a plain lower-case
    /// identifier; database errors.
    pub async fn postgres(pool: Pool, schema: &str) -> Result<Self, AccountsError> {
        if !plain_identifier(schema) {
            return Err(AccountsError::InvalidSchema);
        }
        let table = format!("\"{schema}\".accounts");
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext('portal accounts ' || $1::text))",
                &[&schema],
            )
            .await?;
        transaction
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
                 CREATE TABLE IF NOT EXISTS {table} (
                     email text PRIMARY KEY,
                     org text NOT NULL,
                     role text NOT NULL CHECK (role IN ('customer', 'admin')),
                     password_hash text NOT NULL
                 );"
            ))
            .await?;
        transaction.commit().await?;
        drop(client);
        Ok(Self::Postgres(PostgresAccounts { pool, table }))
    }

    /// The account with this email (compared as stored: lower case), if any.
    ///
    /// # Errors
    /// Database errors; [`AccountsError::Corrupt`] for a row that does not read back.
    pub async fn find(&self, email: &str) -> Result<Option<Account>, AccountsError> {
        let rows = match self {
            Self::Sqlite(db) => {
                let email = email.to_owned();
                db.run(move |connection| {
                    let mut statement = connection.prepare_cached(
                        "SELECT email, org, role, password_hash FROM portal_accounts WHERE email = ?1",
                    )?;
                    let rows = statement
                        .query_map([email], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(rows)
                })
                .await?
            }
            Self::Postgres(db) => {
                let client = db.pool.get().await?;
                client
                    .query(
                        &format!(
                            "SELECT email, org, role, password_hash FROM {} WHERE email = $1",
                            db.table
                        ),
                        &[&email],
                    )
                    .await?
                    .iter()
                    .map(|row| {
                        Ok((
                            row.try_get(0)?,
                            row.try_get(1)?,
                            row.try_get(2)?,
                            row.try_get(3)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, tokio_postgres::Error>>()?
            }
        };
        rows.into_iter().next().map(account).transpose()
    }

    /// The emails of the organisation's accounts with `role`, sorted.
    ///
    /// # Errors
    /// Database errors; [`AccountsError::Corrupt`] for an email that is not an id.
    pub async fn list(&self, org: &OrgId, role: Role) -> Result<Vec<CustomerId>, AccountsError> {
        let emails: Vec<String> = match self {
            Self::Sqlite(db) => {
                let org = org.as_str().to_owned();
                db.run(move |connection| {
                    let mut statement = connection.prepare_cached(
                        "SELECT email FROM portal_accounts WHERE org = ?1 AND role = ?2 ORDER BY email",
                    )?;
                    let rows = statement
                        .query_map([org.as_str(), role.as_str()], |row| row.get(0))?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(rows)
                })
                .await?
            }
            Self::Postgres(db) => {
                let client = db.pool.get().await?;
                client
                    .query(
                        &format!(
                            "SELECT email FROM {} WHERE org = $1 AND role = $2 ORDER BY email",
                            db.table
                        ),
                        &[&org.as_str(), &role.as_str()],
                    )
                    .await?
                    .iter()
                    .map(|row| row.try_get(0))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        emails
            .into_iter()
            .map(|email| {
                CustomerId::new(email)
                    .map_err(|_| AccountsError::Corrupt("an email that is not an id"))
            })
            .collect()
    }

    /// Stores `account` unless an account with its email exists; whether it was stored.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_if_missing(&self, account: &Account) -> Result<bool, AccountsError> {
        let (email, org, role, hash) = (
            account.email.as_str().to_owned(),
            account.org.as_str().to_owned(),
            account.role.as_str(),
            account.password_hash.clone(),
        );
        let inserted = match self {
            Self::Sqlite(db) => {
                db.run(move |connection| {
                    Ok(connection.execute(
                        "INSERT INTO portal_accounts (email, org, role, password_hash)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (email) DO NOTHING",
                        [email.as_str(), org.as_str(), role, hash.as_str()],
                    )?)
                })
                .await?
            }
            Self::Postgres(db) => {
                let client = db.pool.get().await?;
                let count = client
                    .execute(
                        &format!(
                            "INSERT INTO {} (email, org, role, password_hash) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (email) DO NOTHING",
                            db.table
                        ),
                        &[&email, &org, &role, &hash],
                    )
                    .await?;
                usize::try_from(count).unwrap_or(usize::MAX)
            }
        };
        Ok(inserted > 0)
    }

    /// How many accounts there are.
    ///
    /// # Errors
    /// Database errors.
    pub async fn count(&self) -> Result<u64, AccountsError> {
        let count: i64 = match self {
            Self::Sqlite(db) => {
                db.run(|connection| {
                    Ok(connection
                        .query_row("SELECT count(*) FROM portal_accounts", [], |row| row.get(0))?)
                })
                .await?
            }
            Self::Postgres(db) => {
                let client = db.pool.get().await?;
                client
                    .query_one(&format!("SELECT count(*) FROM {}", db.table), &[])
                    .await?
                    .try_get(0)?
            }
        };
        u64::try_from(count).map_err(|_| AccountsError::Corrupt("a negative count"))
    }
}

impl SqliteAccounts {
    /// Runs `query` on the connection, off the async runtime.
    async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&rusqlite::Connection) -> Result<T, AccountsError> + Send + 'static,
    ) -> Result<T, AccountsError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a connection half-changed: every statement
            // is its own transaction.
            let connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            query(&connection)
        })
        .await?
    }
}

fn account(
    (email, org, role, password_hash): (String, String, String, String),
) -> Result<Account, AccountsError> {
    Ok(Account {
        email: CustomerId::new(email)
            .map_err(|_| AccountsError::Corrupt("an email that is not an id"))?,
        org: OrgId::new(org)
            .map_err(|_| AccountsError::Corrupt("an organisation that is not an id"))?,
        role: Role::parse(&role)?,
        password_hash,
    })
}

/// Password hashing: argon2id with a random salt per password, off the async runtime, a few at a
/// time.
pub struct Passwords {
    params: Params,
    /// A hash of a random password, checked when the email is unknown so that a sign-in takes as
    /// long whether or not the account exists.
    dummy: Arc<str>,
    /// At most this many hashes at once: each takes its memory cost (19 MiB by default) on a
    /// blocking thread, and a flood of sign-ins must not take hundreds of them.
    permits: Arc<Semaphore>,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("m_cost_kib", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .finish_non_exhaustive()
    }
}

/// A password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// argon2 refused (it does not for the parameters used here).
    #[error("argon2: {0}")]
    Argon2(String),
    /// The blocking task died.
    #[error("the hashing task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The semaphore was closed (never: it is not closed).
    #[error("hashing is shut down")]
    Closed,
}

impl Passwords {
    /// argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane), argon2's default.
    ///
    /// # Errors
    /// [`PasswordError`] if the dummy hash cannot be made.
    pub fn new() -> Result<Self, PasswordError> {
        Self::with_params(Params::DEFAULT)
    }

    /// argon2id at its cheapest (8 KiB, 1 pass): for tests only, never for real passwords, where it
    /// would make an offline guess almost free.
    ///
    /// # Errors
    /// [`PasswordError`] if the dummy hash cannot be made.
    pub fn danger_insecure_fast() -> Result<Self, PasswordError> {
        let params = Params::new(Params::MIN_M_COST, Params::MIN_T_COST, 1, None)
            .map_err(|error| PasswordError::Argon2(error.to_string()))?;
        Self::with_params(params)
    }

    fn with_params(params: Params) -> Result<Self, PasswordError> {
        let mut random = Zeroizing::new([0u8; 32]);
        rand::fill(&mut random[..]);
        let dummy = hash_now(&params, &random[..])?;
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Ok(Self {
            params,
            dummy: dummy.into(),
            permits: Arc::new(Semaphore::new(cores.saturating_mul(2))),
        })
    }

    /// The PHC string of `password`, with a fresh salt.
    ///
    /// # Errors
    /// [`PasswordError`] when argon2 or the blocking task fails.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = Zeroizing::new(password.to_owned());
        let params = self.params.clone();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        tokio::task::spawn_blocking(move || hash_now(&params, password.as_bytes())).await?
    }

    /// Whether `password` matches `hash`; with no hash (an unknown email), a check against a dummy
    /// hash that takes as long, and `false`. An unreadable hash is `false` too.
    ///
    /// # Errors
    /// [`PasswordError`] when the blocking task fails.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, PasswordError> {
        let password = Zeroizing::new(password.to_owned());
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| Arc::clone(&self.dummy), Arc::from);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await?;
        Ok(known && matches)
    }
}

fn hash_now(params: &Params, password: &[u8]) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt[..]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_with_salt(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError::Argon2(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for good in ["portal", "_p", "portal_test_1"] {
            assert!(plain_identifier(good), "{good}");
        }
        for bad in ["", "Portal", "1p", "p-q", "p\"; DROP", &"p".repeat(64)] {
            assert!(!plain_identifier(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let passwords = Passwords::danger_insecure_fast().unwrap();
        let hash = passwords.hash("alice-pass").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{hash}");
        assert_ne!(hash, passwords.hash("alice-pass").await.unwrap(), "salted");
        assert!(passwords.verify("alice-pass", Some(&hash)).await.unwrap());
        assert!(!passwords.verify("alice-pasS", Some(&hash)).await.unwrap());
        assert!(!passwords.verify("alice-pass", None).await.unwrap());
        assert!(!passwords.verify("x", Some("not a hash")).await.unwrap());
    }

    #[test]
    fn debug_leaves_the_hash_out() {
        let account = Account {
            email: CustomerId::new("a@b.test").unwrap(),
            org: OrgId::new("acme").unwrap(),
            role: Role::Customer,
            password_hash: "$argon2id$secret".into(),
        };
        assert!(!format!("{account:?}").contains("argon2"));
    }
}
