//! `portal`: the customer portal, on SQLite by default (`cargo run -p portal`), or on PostgreSQL.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mfa_core::{KeyRing, OrgId, Store, SystemClock};
use mfa_ops::database::{AnyStore, Missing, OpenOptions};
use portal::accounts::Accounts;
use portal::database::Database;
use portal::keys::{self, KeySource};
use portal::{Config, DEMO_ACCOUNTS, Portal};

/// glibc's allocator keeps what argon2's 19 MiB password checks free in per-thread heaps (a
/// process that had answered a burst of sign-ins stayed above a gigabyte); mimalloc returns it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A customer portal with multi-factor authentication: HTML pages and a JSON API.
#[derive(Parser)]
#[command(name = "portal", version)]
struct Cli {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The database: sqlite://PATH (created on first start) or postgres://USER@HOST/DB.
    #[arg(long, default_value = "sqlite://portal.db")]
    database_url: String,
    /// The file holding the key that seals TOTP secrets (64 hex digits, key id 1; or ID:KEY),
    /// created with mode 0600 on first start. Ignored when MFA_SEALING_KEY is set (32 bytes as 64
    /// hex digits or as base64, optionally after ID:).
    #[arg(long, default_value = "portal.key")]
    key_file: PathBuf,
    /// A previous sealing key's file (repeatable), during a key rotation: it opens the secrets it
    /// sealed until `mfa admin keys rotate` has resealed them under the key of --key-file.
    #[arg(long, value_name = "PATH")]
    previous_key_file: Vec<PathBuf>,
    /// The portal is served over HTTPS (directly or behind a TLS proxy): Secure, __Host- cookies
    /// and HSTS.
    #[arg(long)]
    secure_cookies: bool,
    /// Cheapest argon2 for passwords and backup codes, for tests and load tests only: never with
    /// real customers. Applies to what is created while it is on (demo accounts, organisation
    /// settings).
    #[arg(long)]
    danger_insecure_fast_hashes: bool,
}

const ORG: &str = "acme";

#[tokio::main]
async fn main() -> ExitCode {
    // `RUST_LOG` chooses what is logged (`RUST_LOG=debug`); `info` without it.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    match start(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // As an error field, so that the log shows each cause once, after the error.
            tracing::error!(
                error = &*error as &dyn std::error::Error,
                "portal: cannot start"
            );
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Picks the store, then runs the one generic portal on it.
async fn start(cli: Cli) -> Result<(), BoxError> {
    let database = Database::parse(&cli.database_url)?;
    // The key is read (and a malformed one refused) before the database is opened or created; a
    // missing key file is created once the store is known to seal nothing (in `run`).
    let env_key = std::env::var(keys::KEY_ENV).ok();
    let found = keys::read(env_key.as_deref(), &cli.key_file)?;
    let mut config = Config::new(OrgId::new(ORG)?);
    config.secure = cli.secure_cookies;
    config.danger_insecure_fast_hashes = cli.danger_insecure_fast_hashes;
    let setup = Setup {
        listen: cli.listen,
        database: database.to_string(),
        found,
        key_file: cli.key_file,
        previous_key_files: cli.previous_key_file,
        config,
    };
    // The MFA store first: it takes only a new file or one of its own, and creates a missing
    // SQLite file readable by its owner only.
    let options = OpenOptions::new().missing(Missing::Create);
    let store = mfa_ops::database::open(&database, &options).await?;
    let accounts = match (&database, &store) {
        (Database::Sqlite(path), _) => Accounts::sqlite(path).await?,
        (_, AnyStore::Postgres(postgres)) => {
            Accounts::postgres(postgres.pool().clone(), "portal").await?
        }
        _ => return Err(format!("{database}: the portal cannot keep its accounts there").into()),
    };
    run(store, accounts, setup).await
}

struct Setup {
    listen: SocketAddr,
    database: String,
    /// The key from the environment or an existing key file.
    found: Option<(KeyRing, KeySource)>,
    key_file: PathBuf,
    previous_key_files: Vec<PathBuf>,
    config: Config,
}

async fn run<S: Store + 'static>(
    store: S,
    accounts: Accounts,
    setup: Setup,
) -> Result<(), BoxError> {
    let Setup {
        listen,
        database,
        found,
        key_file,
        previous_key_files,
        config,
    } = setup;
    let (mut keys, key_source) = keys::load_or_create(found, &key_file, &store).await?;
    let active_key = keys.active_id();
    let previous_keys: Vec<String> = keys::add_previous(&mut keys, &previous_key_files)?
        .into_iter()
        .zip(&previous_key_files)
        .map(|(id, path)| format!("id {id} from {}", path.display()))
        .collect();
    let insecure = config.danger_insecure_fast_hashes;
    let (portal, created) = Portal::start(store, accounts, SystemClock, keys, config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;

    println!("Acme Billing customer portal: http://{address}");
    println!("  database     {database}");
    println!("  sealing key  {key_source} (key id {active_key})");
    for previous in &previous_keys {
        println!("  previous key {previous}");
    }
    if created {
        println!(
            "  first start: created the organisation \"{ORG}\" with MFA off, and these accounts"
        );
    } else {
        println!("  demo accounts (created at the first start)");
    }
    for (email, password, role) in DEMO_ACCOUNTS {
        println!("    {email:<18} {password:<12} {}", role.as_str());
    }
    if insecure {
        println!("  WARNING: --danger-insecure-fast-hashes is on: for tests only.");
    }
    println!("  Sign in as admin@acme.test to switch MFA on; stop with Ctrl+C.");

    // Expired sessions leave memory even when nobody comes back for them.
    let sweeper = {
        let portal = std::sync::Arc::clone(&portal);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                portal
                    .sessions()
                    .sweep(mfa_core::Clock::now(&SystemClock).as_secs());
            }
        })
    };
    let served = axum::serve(listener, portal.router())
        .with_graceful_shutdown(shutdown())
        .await;
    sweeper.abort();
    served?;
    println!("portal: stopped");
    Ok(())
}

/// Ctrl+C, or SIGTERM on Unix.
async fn shutdown() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
