//! The database the tests use, and a store in a schema of its own per test.
//!
//! The tests read `MFA_TEST_POSTGRES_URL`. Without it each test prints that it was skipped and
//! passes, unless `MFA_REQUIRE_POSTGRES=1` (set by `.ci/run`) makes that a failure.

#![allow(dead_code, reason = "each test file uses part of this module")]
#![allow(unreachable_pub, reason = "a module shared by test crates")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mfa_postgres::{PostgresOptions, PostgresStore};
use mfa_store_tests::{Hooked, Hooks};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;
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

/// A TCP proxy to the test database that can be cut and restored.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    open: Arc<AtomicUsize>,
    frozen: Arc<AtomicBool>,
    freeze: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(upstream: Upstream) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(AtomicUsize::new(0));
        let (cut, cuts) = watch::channel(0_u64);
        let frozen = Arc::new(AtomicBool::new(false));
        let (freeze, freezes) = watch::channel(0_u64);
        let (accepting, counting, is_frozen) =
            (Arc::clone(&up), Arc::clone(&open), Arc::clone(&frozen));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    // Down: the connection is closed at once, as a dead server's port would be.
                    drop(client);
                    continue;
                }
                let (upstream, mut cuts, mut freezes) =
                    (upstream.clone(), cuts.clone(), freezes.clone());
                // Only cuts and freezes from now on reach this connection.
                cuts.mark_unchanged();
                freezes.mark_unchanged();
                if is_frozen.load(Ordering::SeqCst) {
                    // Frozen: accepted, never answered, until cut.
                    tokio::spawn(async move {
                        let _held = client;
                        let _ = cuts.changed().await;
                    });
                    continue;
                }
                counting.fetch_add(1, Ordering::SeqCst);
                let counting = Arc::clone(&counting);
                tokio::spawn(async move {
                    let mut client = client;
                    let forward = async {
                        match &upstream {
                            Upstream::Tcp(address) => {
                                let mut server = TcpStream::connect(address).await?;
                                tokio::io::copy_bidirectional(&mut client, &mut server).await
                            }
                            Upstream::Unix(path) => {
                                let mut server = UnixStream::connect(path).await?;
                                tokio::io::copy_bidirectional(&mut client, &mut server).await
                            }
                        }
                    };
                    let frozen = tokio::select! {
                        _ = forward => false,
                        _ = cuts.changed() => false,
                        _ = freezes.changed() => true,
                    };
                    if frozen {
                        // The server side is gone; the client's socket stays open and silent.
                        let _ = cuts.changed().await;
                    }
                    // Both sockets are closed by now.
                    counting.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            up,
            cut,
            open,
            frozen,
            freeze,
        }
    }

    /// Stops answering without closing anything, as a partitioned network or a frozen host does:
    /// open connections go silent, new ones are accepted and never answered.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
        self.freeze.send_modify(|generation| *generation += 1);
    }

    /// New connections work again (the frozen ones stay silent until cut).
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Refuses new connections and closes every open one; returns once they are all closed, so
    /// nothing more reaches the server through the proxy.
    pub async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
        while self.open.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[derive(Clone)]
pub enum Upstream {
    Tcp(String),
    Unix(std::path::PathBuf),
}

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
