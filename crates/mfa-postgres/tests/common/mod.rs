//! The database the tests use, and a store in a schema of its own per test.
//!
//! The tests read `MFA_TEST_POSTGRES_URL`. Without it each test prints that it was skipped and
//! passes, unless `MFA_REQUIRE_POSTGRES=1` (set by `.ci/run`) makes that a failure.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test file uses part of this module"
)]
#![allow(unreachable_pub, reason = "a module shared by test crates")]

use mfa_postgres::{PostgresOptions, PostgresStore};
use mfa_store_tests::{Hooked, Hooks};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

pub use mfa_store_tests::{fresh_schema, postgres_url as url};

/// A plain connection to the test database, for looking under the store.
pub async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Drops `schema` and everything in it, from a thread of its own (so it works from `Drop`, inside
/// or outside a runtime).
pub fn drop_schema(url: &str, schema: &str) {
    let (url, schema) = (url.to_owned(), schema.to_owned());
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = raw_client(&url).await;
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .unwrap();
        });
    })
    .join();
}

/// A store in a fresh schema, dropped with the store: the store (declared first in [`Hooked`])
/// closes before its [`Schema`] goes. Nothing is hooked.
pub type TestStore = Hooked<PostgresStore, Schema>;

/// The test database and the schema a [`TestStore`] made in it, dropped when the store is.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Hooks for Schema {}

impl Drop for Schema {
    fn drop(&mut self) {
        drop_schema(&self.url, &self.name);
    }
}

/// A store in a fresh schema of the test database, or `None` when the tests skip.
pub async fn test_store(label: &str) -> Option<TestStore> {
    let url = url()?;
    Some(test_store_with(&url, PostgresOptions::default().schema(fresh_schema(label))).await)
}

/// A store with `options` (and the schema they name, dropped with it) on the database at `url`.
pub async fn test_store_with(url: &str, options: PostgresOptions) -> TestStore {
    let store = PostgresStore::connect_with(url.parse().unwrap(), options)
        .await
        .unwrap();
    let name = store.schema().to_owned();
    Hooked::new(
        store,
        Schema {
            url: url.to_owned(),
            name,
        },
    )
}

pub use mfa_store_tests::proxy::{Proxy, Upstream};

/// The test database's address, and a configuration that reaches it through a proxy on `port`.
pub fn through_proxy(url: &str) -> (Upstream, impl Fn(u16) -> tokio_postgres::Config) {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => Upstream::Tcp(format!("{host}:{port}")),
        Some(Host::Unix(dir)) => Upstream::Unix(dir.join(format!(".s.PGSQL.{port}"))),
        None => Upstream::Unix(format!("/var/run/postgresql/.s.PGSQL.{port}").into()),
    };
    let make = move |proxy_port: u16| {
        let mut proxied = tokio_postgres::Config::new();
        proxied.host("127.0.0.1").port(proxy_port);
        if let Some(user) = config.get_user() {
            proxied.user(user);
        }
        if let Some(password) = config.get_password() {
            proxied.password(password);
        }
        if let Some(dbname) = config.get_dbname() {
            proxied.dbname(dbname);
        }
        proxied
    };
    (upstream, make)
}
