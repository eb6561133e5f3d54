//! `billing`: the billing host example. `cargo run -p billing` serves it on SQLite
//! (`./billing.db`, MFA in `./billing-mfa.db`); `--database-url postgres://...` on PostgreSQL.

use std::net::SocketAddr;

use mfa_core::{KeyId, KeyRing, SealingKey, SystemClock};

fn main() -> Result<(), billing::StartError> {
    tracing_subscriber::fmt().with_target(false).init();
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
    let keys = KeyRing::new(SealingKey::from_slice(KeyId::new(1), &sealing_key()?)?);
    let mfa_schema = std::env::var("BILLING_MFA_SCHEMA").unwrap_or_else(|_| "mfa".to_owned());
    tokio::runtime::Runtime::new()?.block_on(async {
        let app = billing::app(&database_url, &mfa_schema, keys, SystemClock).await?;
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

/// The sealing key: `BILLING_SEALING_KEY` (64 hex digits), as a real host reads it from its secrets
/// manager, never from an argument (it would show in `ps`). For the demo, without it, the key in
/// `./billing.key`, made (mode 0600) at the first start.
fn sealing_key() -> Result<Vec<u8>, billing::StartError> {
    let hex = match std::env::var("BILLING_SEALING_KEY") {
        Ok(hex) => hex,
        Err(_) => demo_key_file("billing.key")?,
    };
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.trim().as_bytes())
        .map_err(|_| "BILLING_SEALING_KEY is not hex".into())
}

/// The demo's key file: read, or made with a fresh random key when it does not exist yet.
fn demo_key_file(path: &str) -> Result<String, billing::StartError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::read_to_string(path) {
        Ok(hex) => Ok(hex),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::fill(&mut key[..]);
            let hex = data_encoding::HEXLOWER.encode(&key);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?
                .write_all(hex.as_bytes())?;
            println!("billing: made a sealing key in {path} (keep it with the databases)");
            Ok(hex)
        }
        Err(error) => Err(error.into()),
    }
}
