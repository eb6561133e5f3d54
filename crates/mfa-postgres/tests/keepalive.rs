//! A dead peer is noticed: the store's TCP connections send keepalive probes after seconds of
//! silence, not after tokio-postgres's default of 2 hours.
//!
//! Linux only, and only when the test database is reached over TCP: it reads the kernel's timers
//! for this process's sockets from `/proc/net/tcp`. A test binary of its own, so every socket of
//! the process to the server's port is the store's.

mod common;

use common::{fresh_schema, test_store_with, url};
use mfa_core::{OrgId, Store};
use mfa_postgres::PostgresOptions;
use tokio_postgres::config::Host;

/// The inodes of the sockets this process holds open.
fn own_sockets() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect()
}

/// For each of this process's TCP sockets connected to `port`: the timer the kernel runs on it
/// (`2` is keepalive) and the seconds until it fires.
fn timers_to(port: u16) -> Vec<(u8, f64)> {
    let own = own_sockets();
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout
            // inode ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields[2].rsplit(':').next().unwrap();
            if u16::from_str_radix(remote_port, 16).unwrap() != port
                || !own.contains(&fields[9].to_owned())
            {
                continue;
            }
            let (timer, when) = fields[5].split_once(':').unwrap();
            // In clock ticks of USER_HZ, 100 a second on Linux.
            let ticks = u64::from_str_radix(when, 16).unwrap();
            found.push((timer.parse().unwrap(), ticks as f64 / 100.0));
        }
    }
    found
}

#[tokio::test]
async fn idle_connections_probe_the_server_within_a_minute() {
    let Some(url) = url() else { return };
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: reads Linux's /proc/net/tcp");
        return;
    }
    let config: tokio_postgres::Config = url.parse().unwrap();
    if !matches!(config.get_hosts().first(), Some(Host::Tcp(_))) {
        eprintln!("skipped: the test database is not reached over TCP");
        return;
    }
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let store = test_store_with(
        &url,
        PostgresOptions::default().schema(fresh_schema("keepalive")),
    )
    .await;
    // One connection in the pool, idle after this.
    store.load_org(&OrgId::new("acme").unwrap()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let timers = timers_to(port);
    assert!(!timers.is_empty(), "no connection to port {port} found");
    for (timer, seconds) in timers {
        assert_eq!(timer, 2, "no keepalive timer runs on the connection");
        assert!(
            seconds <= 30.0,
            "the first keepalive probe comes in {seconds} s"
        );
    }
}
