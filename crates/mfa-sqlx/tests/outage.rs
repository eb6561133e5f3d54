//! The database goes away in the middle of a request, and comes back, through sqlx: the kit's
//! checks (a typed error within a deadline, nothing half-written, the next request works on the
//! same store and pool) while another connection holds SQLite's write lock (`BEGIN EXCLUSIVE`, as
//! an administrator's `sqlite3` shell might) past the pool's busy timeout, and while the network
//! to PostgreSQL is cut (the kit's proxy).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use mfa_core::ServiceError;
use mfa_sqlx::SqliteStore;
use mfa_sqlx::sqlx::sqlite::SqlitePoolOptions;
use mfa_sqlx::sqlx::{Connection as _, SqliteConnection};
use mfa_store_tests::{Outage, TempDb, requests_fail_cleanly_while_the_database_is_away};
use tokio::sync::Mutex;

/// How long a request may take while the database is away: far above the retries' worst case
/// (16 attempts, each waiting the busy timeout for the lock), far below forever.
const DEADLINE: Duration = Duration::from_secs(5);
const BUSY_TIMEOUT: Duration = Duration::from_millis(10);

/// Another connection holds the database's write lock while the outage lasts.
struct HeldLock {
    path: PathBuf,
    holder: Mutex<Option<SqliteConnection>>,
}

impl Outage for HeldLock {
    async fn begin(&self) {
        let mut connection =
            SqliteConnection::connect_with(&SqliteStore::connect_options(&self.path))
                .await
                .expect("open the locking connection");
        mfa_sqlx::sqlx::raw_sql("BEGIN EXCLUSIVE")
            .execute(&mut connection)
            .await
            .expect("take the write lock");
        *self.holder.lock().await = Some(connection);
    }

    async fn end(&self) {
        let mut connection = self.holder.lock().await.take().expect("the lock was taken");
        mfa_sqlx::sqlx::raw_sql("ROLLBACK")
            .execute(&mut connection)
            .await
            .expect("release the lock");
        connection
            .close()
            .await
            .expect("close the locking connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_past_the_busy_timeout_fails_requests_cleanly() {
    let db = TempDb::new("sqlx-held-lock");
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(SqliteStore::connect_options(db.path()).busy_timeout(BUSY_TIMEOUT))
        .await
        .unwrap();
    let store = SqliteStore::new(pool).await.unwrap();
    let outage = HeldLock {
        path: db.path().to_path_buf(),
        holder: Mutex::new(None),
    };
    let errors = requests_fail_cleanly_while_the_database_is_away(store, outage, DEADLINE).await;
    // Writes give up (a lost race, retried, then given up on); reads go on, as WAL lets them.
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|error| matches!(error, ServiceError::Contended)),
        "{errors:?}"
    );
}

/// The network to PostgreSQL cut (every connection closed, new ones refused) while the database is
/// "away", through a proxy of the kit's.
struct Cut(mfa_store_tests::proxy::Proxy);

impl Outage for Cut {
    async fn begin(&self) {
        self.0.down().await;
    }

    async fn end(&self) {
        self.0.up();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_cleanly_while_the_network_to_postgres_is_cut() {
    use mfa_sqlx::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use mfa_store_tests::proxy::{Proxy, Upstream};

    let Some(url) = mfa_store_tests::postgres_url() else {
        return;
    };
    let options: PgConnectOptions = url.parse().expect("the test database's URL");
    let upstream = match options.get_socket() {
        Some(dir) => Upstream::Unix(dir.join(format!(".s.PGSQL.{}", options.get_port()))),
        None => Upstream::Tcp(format!("{}:{}", options.get_host(), options.get_port())),
    };
    let proxy = Proxy::start(upstream).await;
    let schema = mfa_store_tests::fresh_schema("sqlx_cut");
    let _dropped = common::Schema {
        url: url.clone(),
        name: schema.clone(),
    };
    let through = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(proxy.port)
        .username(options.get_username())
        .database(options.get_database().unwrap_or("postgres"));
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(through)
        .await
        .unwrap();
    let store = mfa_sqlx::PgStore::with_options(
        pool,
        mfa_sqlx::PgOptions::default()
            .schema(&schema)
            .query_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let errors = requests_fail_cleanly_while_the_database_is_away(
        store,
        Cut(proxy),
        Duration::from_secs(10),
    )
    .await;
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|error| matches!(error, ServiceError::Store(_))),
        "{errors:?}"
    );
}
