//! `billing`: the billing host example. `cargo run -p billing` serves it on SQLite
//! (`./billing.db`, MFA in `./billing-mfa.db`); `--database-url postgres://...` on PostgreSQL.

use std::net::SocketAddr;

use std::path::Path;

use mfa_core::{KeyRing, SystemClock};
use mfa_ops::keyfile::{self, KeyForm};

/// glibc's allocator keeps what argon2's 19 MiB password checks free in per-thread heaps (the
/// process stayed at 1.2 GiB after a burst of sign-ins, with the checks bounded); mimalloc returns
/// it (peak and rest measured in the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), billing::StartError> {
    // `RUST_LOG` chooses what is logged (`RUST_LOG=debug`); `info` without it.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let mut args = std::env::args().skip(1);
    let (mut database_url, mut listen) = (
        "sqlite://billing.db".to_owned(),
        "127.0.0.1:8090".to_owned(),
    );
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--database-url" => database_url = args.next().ok_or("--database-url takes a URL")?,
            "--listen" => listen = args.next().ok_or("--listen takes an address")?,
            other => return Err(format!("unknown argument {other:?}; see the README").into()),
        }
    }
    let listen: SocketAddr = listen.parse()?;
    // Plain HTTP only where nothing but this machine can listen in; anywhere else the host sits
    // behind TLS and the session cookie must never travel without it.
    let cookies = if listen.ip().is_loopback() {
        billing::Cookies::LocalHttp
    } else {
        billing::Cookies::Secure
    };
    let keys = sealing_key()?;
    let mfa_schema = std::env::var("BILLING_MFA_SCHEMA").unwrap_or_else(|_| "mfa".to_owned());
    tokio::runtime::Runtime::new()?.block_on(async {
        let app = billing::app(&database_url, &mfa_schema, keys, SystemClock, cookies).await?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!(
            "billing: http://{listen}  (sign in as {} / {})",
            billing::DEMO_EMAIL,
            billing::DEMO_PASSWORD
        );
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// The sealing key: `MFA_SEALING_KEY` (`ID:KEY` or `KEY`, 32 bytes in hex or base64), as a real
/// host reads it from its secrets manager, never from an argument (it would show in `ps`). For the
/// demo, without it, the key in `./billing.key`, made (mode 0600) at the first start. Both read by
/// `mfa_ops::keyfile`, as the portal and `mfa admin` read theirs.
fn sealing_key() -> Result<KeyRing, billing::StartError> {
    let key = match keyfile::from_env()? {
        Some(key) => key,
        None => match keyfile::read(Path::new(KEY_FILE)) {
            Ok(key) => key,
            Err(error) if error.is_not_found() => {
                let key =
                    keyfile::generate(keyfile::BARE_KEY_ID, Path::new(KEY_FILE), KeyForm::Bare)?;
                println!("billing: made a sealing key in {KEY_FILE} (keep it with the databases)");
                key
            }
            Err(error) => return Err(error.into()),
        },
    };
    Ok(KeyRing::new(key.sealing_key()))
}

/// The demo's key file.
const KEY_FILE: &str = "billing.key";
