//! Prepares the load test of the portal's verify route (`examples/portal/load/`): many enrolled
//! customers, each with a session waiting for its code, and the codes.
//!
//! Each valid code is accepted once per customer, so every request of the load test needs a customer
//! of its own. Two steps, around the start of the portal:
//!
//! 1. `load_setup accounts --database-url URL --count N`, before the portal starts: **empties** the
//!    database (deletes the SQLite file; drops the schemas `mfa` and `portal` in PostgreSQL), creates
//!    the organisation and the demo accounts as a first start does (cheap hashes), switches MFA on,
//!    and adds the customers `load-00000@acme.test`... with the password `load-pass`. The sealing key
//!    comes from `MFA_SEALING_KEY`, as the portal's does.
//! 2. `load_setup sessions --url http://ADDR --count N --out FILE`, against the running portal, over
//!    its JSON API as a client would: each customer signs in, sets up MFA (the key from the API,
//!    the code computed here), signs out, and signs in again to a session that waits for a code.
//!    FILE gets a line per customer: the session cookie, the code for the next time step (the
//!    verifier accepts a step ahead, so it stays good for at least 60 s), and a code that no nearby
//!    step matches.
//!
//! For load tests only: it deletes data and uses the cheapest password hashes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode, header};
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mfa_core::{
    Actor, Clock as _, CustomerId, OrgId, OrgMfa, Store, SystemClock,
    otp::{Secret, Totp},
    uri::KeyUri,
};
use mfa_postgres::deadpool_postgres::tokio_postgres::NoTls;
use mfa_postgres::{PostgresOptions, PostgresStore};
use mfa_sqlite::SqliteStore;
use portal::accounts::{Account, Accounts, Passwords, Role};
use portal::database::Database;
use portal::{Config, Portal};
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Prepares the portal's load test (see the "Load" section of the portal's README).
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Before the portal starts: empties the database, then creates the organisation (MFA on), the
    /// demo accounts and COUNT load customers.
    Accounts {
        /// sqlite://PATH or postgres://USER@HOST/DB, as the portal's --database-url.
        #[arg(long)]
        database_url: String,
        /// How many load customers.
        #[arg(long)]
        count: usize,
    },
    /// Against the running portal: enrolls each load customer and leaves a session waiting for
    /// its code; writes `cookie code wrong-code` lines to OUT.
    Sessions {
        /// The portal, `http://127.0.0.1:PORT`.
        #[arg(long)]
        url: String,
        /// How many load customers (as many as `accounts` made, or fewer).
        #[arg(long)]
        count: usize,
        /// The file for the sessions and codes.
        #[arg(long)]
        out: PathBuf,
        /// Customers set up at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

const ORG: &str = "acme";
const PASSWORD: &str = "load-pass";

fn email(n: usize) -> String {
    format!("load-{n:05}@acme.test")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Accounts {
            database_url,
            count,
        } => accounts(&database_url, count).await,
        Command::Sessions {
            url,
            count,
            out,
            concurrency,
        } => sessions(&url, count, &out, concurrency.max(1)).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load_setup: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn accounts(url: &str, count: usize) -> Result<(), BoxError> {
    let started = Instant::now();
    let env_key = std::env::var(portal::keys::KEY_ENV)
        .map_err(|_| format!("set {} as for the portal", portal::keys::KEY_ENV))?;
    let (keys, _) = portal::keys::read(Some(&env_key), Path::new("unused.key"))?
        .ok_or_else(|| format!("{} is empty", portal::keys::KEY_ENV))?;
    let mut config = Config::new(OrgId::new(ORG)?);
    config.danger_insecure_fast_hashes = true;
    match Database::parse(url)? {
        Database::Sqlite(path) => {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                match std::fs::remove_file(&file) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(error.into());
                    }
                    _ => {}
                }
            }
            portal::database::create_private(&path)?;
            let store = SqliteStore::open(&path).await?;
            let accounts = Accounts::sqlite(&path).await?;
            seed(store, accounts, keys, config, count).await?;
        }
        Database::Postgres(pg) => {
            let (client, connection) = pg.connect(NoTls).await?;
            let connection = tokio::spawn(connection);
            client
                .batch_execute(
                    "DROP SCHEMA IF EXISTS mfa CASCADE; DROP SCHEMA IF EXISTS portal CASCADE;",
                )
                .await?;
            drop(client);
            let _ = connection.await;
            let store = PostgresStore::connect_with(*pg, PostgresOptions::default()).await?;
            let accounts = Accounts::postgres(store.pool().clone(), "portal").await?;
            seed(store, accounts, keys, config, count).await?;
        }
        other => return Err(format!("{other}: not a database load_setup knows").into()),
    }
    println!(
        "load_setup: {count} customers in a fresh database, MFA on ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The first start's set-up, MFA on, and the load customers (one password hash for them all).
async fn seed<S: Store + 'static>(
    store: S,
    accounts: Accounts,
    keys: mfa_core::KeyRing,
    config: Config,
    count: usize,
) -> Result<(), BoxError> {
    let org = config.org.clone();
    let (portal, created) = Portal::start(store, accounts, SystemClock, keys, config).await?;
    if !created {
        return Err("the database was not empty".into());
    }
    portal
        .service()
        .set_org_mfa(&org, OrgMfa::On, &Actor::new("load setup").unwrap())
        .await
        .map_err(|error| error.to_string())?;
    let password_hash = Passwords::danger_insecure_fast()?.hash(PASSWORD).await?;
    let accounts = portal.accounts();
    // A few writers at once: PostgreSQL takes them in parallel, SQLite in turn.
    let mut writers = tokio::task::JoinSet::new();
    let writers_count = 8;
    for writer in 0..writers_count {
        let (accounts, org, password_hash) = (accounts.clone(), org.clone(), password_hash.clone());
        writers.spawn(async move {
            for n in (writer..count).step_by(writers_count) {
                let account = Account {
                    email: CustomerId::new(email(n))?,
                    org: org.clone(),
                    role: Role::Customer,
                    password_hash: password_hash.clone(),
                };
                accounts.insert_if_missing(&account).await?;
            }
            Ok::<(), BoxError>(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    Ok(())
}

/// A customer whose session waits for a code.
struct Waiting {
    cookie: String,
    secret: Secret,
    totp: Totp,
}

async fn sessions(url: &str, count: usize, out: &Path, concurrency: usize) -> Result<(), BoxError> {
    let started = Instant::now();
    let http = Http {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: url.trim_end_matches('/').to_owned(),
    };
    let http = Arc::new(http);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let http = Arc::clone(&http);
        workers.spawn(async move {
            let mut done = Vec::new();
            for n in (worker..count).step_by(concurrency) {
                let waiting = enroll_and_sign_in(&http, &email(n))
                    .await
                    .map_err(|error| format!("{}: {error}", email(n)))?;
                done.push((n, waiting));
            }
            Ok::<_, BoxError>(done)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = workers.join_next().await {
        all.extend(done??);
    }
    all.sort_by_key(|(n, _)| *n);

    // Every customer's code for the step after this one: every enrollment happened in this step or
    // before (so it is newer than the one each confirmation used), and the verifier's window
    // accepts it from now until the end of the step after it.
    let now = SystemClock.now();
    let mut lines = String::new();
    let mut good_for = u64::MAX;
    for (_, waiting) in &all {
        let step = waiting.totp.step_at(now)? + 1;
        let code = waiting
            .totp
            .generate_at_step(&waiting.secret, step)
            .to_string();
        let near: Vec<String> = (step.saturating_sub(2)..=step + 2)
            .map(|s| {
                waiting
                    .totp
                    .generate_at_step(&waiting.secret, s)
                    .to_string()
            })
            .collect();
        let wrong = (0..1_000_000)
            .map(|n| format!("{n:06}"))
            .find(|candidate| !near.contains(candidate))
            .ok_or("no wrong code")?;
        let period = waiting.totp.period().as_secs();
        let until = (step + 2) * period;
        good_for = good_for.min(until.saturating_sub(now.as_secs()));
        lines.push_str(&format!("{} {code} {wrong}\n", waiting.cookie));
    }
    std::fs::write(out, lines)?;
    println!(
        "load_setup: {} sessions waiting for their code in {} ({:.1} s); the codes are good for {good_for} s",
        all.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Sign in, set up MFA, sign out, sign in again.
async fn enroll_and_sign_in(http: &Http, email: &str) -> Result<Waiting, BoxError> {
    let credentials = json!({"email": email, "password": PASSWORD});
    let (cookie, body) = http
        .call(Method::POST, "/api/session", None, &credentials, 200)
        .await?;
    if body["next"] != "enroll" {
        return Err(format!("expected enrollment, got {body}").into());
    }
    let cookie = cookie.ok_or("no session cookie")?;
    let (_, started) = http
        .call(
            Method::POST,
            "/api/mfa/enrollment",
            Some(&cookie),
            &json!({}),
            201,
        )
        .await?;
    let secret = Secret::from_base32(started["secret"].as_str().ok_or("no secret")?)?;
    let uri = KeyUri::parse(started["otpauth_uri"].as_str().ok_or("no URI")?)?;
    let totp = uri.as_totp().ok_or("not a TOTP key")?;
    let code = totp.generate(&secret, SystemClock.now())?.to_string();
    let (rotated, _) = http
        .call(
            Method::POST,
            "/api/mfa/enrollment/confirm",
            Some(&cookie),
            &json!({ "code": code }),
            200,
        )
        .await?;
    let cookie = rotated.unwrap_or(cookie);
    http.call(
        Method::DELETE,
        "/api/session",
        Some(&cookie),
        &json!({}),
        204,
    )
    .await?;
    let (cookie, body) = http
        .call(Method::POST, "/api/session", None, &credentials, 200)
        .await?;
    if body["next"] != "verify" {
        return Err(format!("expected the code prompt, got {body}").into());
    }
    Ok(Waiting {
        cookie: cookie.ok_or("no session cookie")?,
        secret,
        totp,
    })
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    /// Sends a JSON request (no body for `null`) and checks the status; the new session cookie
    /// (if one was set) and the JSON answer (`null` when empty).
    async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: &Value,
        expect: u16,
    ) -> Result<(Option<String>, Value), BoxError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, format!("portal_session={cookie}"));
        }
        let body = if body.is_null() {
            Bytes::new()
        } else {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(body)?)
        };
        let response = self.client.request(request.body(Full::new(body))?).await?;
        let status = response.status();
        let cookie = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter(|value| !value.contains("Max-Age=0"))
            .find_map(|value| {
                let pair = value.split(';').next()?;
                pair.strip_prefix("portal_session=").map(str::to_owned)
            });
        let bytes = response.into_body().collect().await?.to_bytes();
        if status != StatusCode::from_u16(expect)? {
            return Err(format!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            )
            .into());
        }
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        };
        Ok((cookie, json))
    }
}
