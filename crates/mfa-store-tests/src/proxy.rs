//! A TCP proxy to a test database that can be cut, frozen and restored: what "the network goes
//! away" means for a store that talks to its database over a socket ([`Proxy`]). It forwards to
//! the database's TCP address or Unix socket ([`Upstream`]); the adapter points its store at
//! `127.0.0.1:`[`Proxy::port`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;

/// A TCP proxy to the test database that can be cut and restored.
#[derive(Debug)]
pub struct Proxy {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    open: Arc<AtomicUsize>,
    frozen: Arc<AtomicBool>,
    freeze: watch::Sender<u64>,
}

impl Proxy {
    /// Starts forwarding connections to `upstream`.
    ///
    /// # Panics
    /// When it cannot listen on a local port.
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

    /// Accepts new connections again.
    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Where a [`Proxy`] forwards to.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Upstream {
    /// A TCP address, `host:port`.
    Tcp(String),
    /// A Unix socket's path.
    Unix(std::path::PathBuf),
}
