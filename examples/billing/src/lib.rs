//! A small billing host to copy: how a service that already runs sqlx and tower-sessions adds
//! customer-portal MFA with a few dozen lines of its own.
//!
//! - Its own users and invoices, in its own tables, migrated by its own `sqlx::migrate!`, on its
//!   own pool ([`Users`]).
//! - MFA's store on the same stack: `mfa_sqlx::PgStore` on the very same `PgPool` (its tables in
//!   schema `mfa`, beside the host's), or `mfa_sqlx::SqliteStore` on a pool of its own file beside
//!   the host's (SQLite has no schemas to keep them apart).
//! - Its own password sign-in; then [`MfaApi::login_step`] says what comes next, and
//!   [`SessionHost::signed_in`] keeps the answer in the tower-sessions session.
//! - `mfa-http`'s routes (`/mfa/...`) merged into the router with [`SessionHost`], which reads and upgrades that
//!   session.
//! - One protected route, `GET /invoices`, that lets a session in only once its second factor
//!   passed (or none is required): [`Service::check_session`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use mfa_core::{
    Actor, Clock, CustomerId, KeyRing, OrgId, OrgMfa, Purpose, Service, SessionCheck, Store,
};
use mfa_http::model::Next;
use mfa_http::tower_sessions::SessionHost;
use mfa_http::{Error, ErrorKind, JsonBody, MfaApi, NoInput};
use mfa_sqlx::{PgStore, SqliteStore};
use rand_chacha::ChaCha20Rng;
use serde::Deserialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::sync::Semaphore;
use tower_sessions::cookie::SameSite;
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

/// The organisation this host bills for (one customer portal).
pub const ORG: &str = "billing";

/// The demo customer the first start creates.
pub const DEMO_EMAIL: &str = "alice@billing.test";
/// Her password.
pub const DEMO_PASSWORD: &str = "alice-pass";

/// Why the host could not start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// How the session cookie travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cookies {
    /// Over HTTPS only (`Secure`): any deployment, behind TLS.
    #[default]
    Secure,
    /// Over plain HTTP too: the local demo at `http://127.0.0.1`, and tests.
    LocalHttp,
}

/// Runs `$body` with `$pool` bound to whichever pool `$users` holds: the same SQL on either
/// engine (the statements here are written to read the same on both).
macro_rules! on_pool {
    ($users:expr, $pool:ident => $body:expr) => {
        match $users {
            Users::Sqlite($pool) => $body,
            Users::Postgres($pool) => $body,
        }
    };
}

/// The host's own tables, on its own pool: users (with argon2id password hashes) and invoices.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Users {
    /// In the host's SQLite file.
    Sqlite(SqlitePool),
    /// In the host's PostgreSQL database (schema `public`).
    Postgres(PgPool),
}

impl Users {
    /// Runs the host's own migrations (`sqlx::migrate!`, with its own `_sqlx_migrations` table).
    async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Self::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await,
            Self::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await,
        }
    }

    async fn password_hash(&self, email: &str) -> Result<Option<String>, sqlx::Error> {
        let sql = "SELECT password_hash FROM users WHERE email = $1";
        on_pool!(self, pool => sqlx::query_scalar(sql).bind(email).fetch_optional(pool).await)
    }

    /// Adds a user with two invoices, unless there is one with that email already.
    async fn add_demo(&self, email: &str, password_hash: &str) -> Result<(), sqlx::Error> {
        let user =
            "INSERT INTO users (email, password_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        let invoice = "INSERT INTO invoices (email, amount_cents) VALUES ($1, $2)";
        on_pool!(self, pool => {
            let added = sqlx::query(user)
                .bind(email)
                .bind(password_hash)
                .execute(pool)
                .await?;
            if added.rows_affected() == 1 {
                for cents in [4_900_i64, 12_000] {
                    sqlx::query(invoice)
                        .bind(email)
                        .bind(cents)
                        .execute(pool)
                        .await?;
                }
            }
            Ok(())
        })
    }

    async fn invoices(&self, email: &str) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        let sql = "SELECT id, amount_cents FROM invoices WHERE email = $1 ORDER BY id";
        on_pool!(self, pool => sqlx::query_as(sql).bind(email).fetch_all(pool).await)
    }
}

/// The host's router over the database at `database_url`: `sqlite://PATH` (the host's file at
/// `PATH`, MFA's beside it at `PATH` with `-mfa` before the extension), or a `postgres://` URL
/// (one database, one pool; MFA's tables in schema `mfa_schema`, the host's where the URL's
/// `search_path` puts them).
///
/// # Errors
/// A URL of another kind, or a database that cannot be opened or migrated.
pub async fn app<C: Clock + 'static>(
    database_url: &str,
    mfa_schema: &str,
    keys: KeyRing,
    clock: C,
    cookies: Cookies,
) -> Result<Router, StartError> {
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        // Private to this user before SQLite first writes them (MFA's holds sealed secrets and
        // backup-code hashes; the host's, password hashes).
        mfa_ops::files::ensure_private(Path::new(path))?;
        mfa_ops::files::ensure_private(&mfa_file(Path::new(path)))?;
        let host = sqlite_pool(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true),
        )
        .await?;
        let mfa_pool = sqlite_pool(SqliteStore::connect_options(mfa_file(Path::new(path)))).await?;
        let store = SqliteStore::new(mfa_pool).await?;
        start(Users::Sqlite(host), store, keys, clock, cookies).await
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(database_url)
            .await?;
        // The same pool for the host's tables and MFA's: no second driver, no second pool.
        let options = mfa_sqlx::PgOptions::default().schema(mfa_schema);
        let store = PgStore::with_options(pool.clone(), options).await?;
        start(Users::Postgres(pool), store, keys, clock, cookies).await
    } else {
        Err("the database URL must start with sqlite:// or postgres://".into())
    }
}

/// MFA's SQLite file beside the host's: `billing.db` → `billing-mfa.db`.
#[must_use]
pub fn mfa_file(host: &Path) -> PathBuf {
    let stem = host
        .file_stem()
        .map_or_else(Default::default, |s| s.to_string_lossy().into_owned());
    let name = match host.extension() {
        Some(extension) => format!("{stem}-mfa.{}", extension.to_string_lossy()),
        None => format!("{stem}-mfa"),
    };
    host.with_file_name(name)
}

async fn sqlite_pool(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

struct Host<S: Store, C: Clock> {
    users: Users,
    mfa: MfaApi<S, C, ChaCha20Rng, SessionHost>,
    org: OrgId,
    /// Checked for unknown emails too, so a wrong email costs what a wrong password costs.
    dummy_hash: Arc<str>,
    /// How many password hashes may be computed at once: each takes argon2's 19 MiB, so without a
    /// bound a burst of sign-ins (from anyone: no account is needed) takes the process's memory.
    /// More wait their turn.
    hashing: Arc<Semaphore>,
}

impl<S: Store + 'static, C: Clock + 'static> Host<S, C> {
    fn service(&self) -> &Service<S, C, ChaCha20Rng> {
        self.mfa.service()
    }
}

async fn start<S: Store + 'static, C: Clock + 'static>(
    users: Users,
    store: S,
    keys: KeyRing,
    clock: C,
    cookies: Cookies,
) -> Result<Router, StartError> {
    users.migrate().await?;
    let org = OrgId::new(ORG)?;
    let rng = <ChaCha20Rng as rand::SeedableRng>::from_rng(&mut rand::rng());
    let service = Service::new(store, clock, keys, rng);
    // This host requires MFA of every customer: switched on at the first start.
    if service.stored_policy(&org).await?.is_none() {
        service
            .set_org_mfa(&org, OrgMfa::On, &Actor::new("billing-setup")?)
            .await?;
    }
    // One hash, two uses: the demo user's, and the one unknown emails are checked against (so a
    // wrong email costs what a wrong password costs; it matches no other email).
    let dummy_hash: Arc<str> = hash(DEMO_PASSWORD.to_owned()).await?.into();
    users.add_demo(DEMO_EMAIL, &dummy_hash).await?;
    let host = Arc::new(Host {
        users,
        mfa: MfaApi::new(Arc::new(service), SessionHost),
        org,
        dummy_hash,
        hashing: Arc::new(Semaphore::new(hashing_permits())),
    });
    let sessions = SessionManagerLayer::new(MemoryStore::default())
        .with_name("billing_session")
        .with_same_site(SameSite::Strict)
        .with_http_only(true)
        .with_secure(cookies == Cookies::Secure);
    Ok(Router::new()
        .route("/signin", post(sign_in::<S, C>))
        .route("/signout", post(sign_out))
        .route("/invoices", get(invoices::<S, C>))
        .route("/billing-email", put(billing_email::<S, C>))
        // MFA's routes: /mfa/... for customers (and /admin/... for administrators, whom this
        // example has none of: SessionHost reports none).
        .merge(host.mfa.router())
        .with_state(host)
        .layer(sessions)
        // Account data and sign-in answers are never kept by a browser or a proxy cache.
        .layer(axum::middleware::map_response(no_store)))
}

/// Two argon2 evaluations per core at once: the CPU is the limit anyway.
fn hashing_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get().saturating_mul(2))
}

async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

async fn hash(password: String) -> Result<String, StartError> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt[..]);
        Argon2::default()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| StartError::from(error.to_string()))
    })
    .await?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

fn session_failed(error: tower_sessions::session::Error) -> Error {
    tracing::error!(
        error = &error as &dyn std::error::Error,
        "billing: the session store failed"
    );
    Error::new(ErrorKind::Unavailable, "try again shortly")
}

/// `POST /signin {"email", "password"}`: the host's own password check, then MFA's next step,
/// kept in the session: `{"next": "enroll" | "verify" | "done"}`.
async fn sign_in<S: Store + 'static, C: Clock + 'static>(
    State(host): State<Arc<Host<S, C>>>,
    session: Session,
    JsonBody(form): JsonBody<SignIn>,
) -> Result<Response, Error> {
    let email = form.email.trim().to_lowercase();
    let stored = host.users.password_hash(&email).await.map_err(|error| {
        tracing::error!(
            error = &error as &dyn std::error::Error,
            "billing: users failed"
        );
        Error::new(ErrorKind::Unavailable, "try again shortly")
    })?;
    let known = stored.is_some();
    let hash = stored.map_or_else(|| Arc::clone(&host.dummy_hash), Arc::from);
    let password = form.password;
    let Ok(_permit) = Arc::clone(&host.hashing).acquire_owned().await else {
        return Err(Error::new(ErrorKind::Unavailable, "try again shortly"));
    };
    let matches = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false);
    let customer = match CustomerId::new(email) {
        Ok(customer) if known && matches => customer,
        _ => {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "wrong email or password",
            ));
        }
    };
    let step = host.mfa.login_step(&host.org, &customer).await?;
    SessionHost::signed_in(&session, &host.org, &customer, step.session())
        .await
        .map_err(session_failed)?;
    Ok(Json(serde_json::json!({ "next": Next::from(&step) })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BillingEmail {
    email: String,
}

/// `PUT /billing-email {"email"}`: where invoices go, a sensitive change (an attacker with a
/// session would redirect them): it needs a second factor fresh for `billing_email`, which
/// `mfa_http::MfaApi::require_step_up` checks. 403 `step_up_required` sends the client to
/// `POST /mfa/step-up {"purpose": "billing_email", "code"}` and back. (A demo: the address is
/// checked and echoed, not kept.)
async fn billing_email<S: Store + 'static, C: Clock + 'static>(
    State(host): State<Arc<Host<S, C>>>,
    session: Session,
    JsonBody(body): JsonBody<BillingEmail>,
) -> Result<Response, Error> {
    let signed_in = SessionHost::customer(&session)
        .await
        .map_err(session_failed)?
        .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "sign in first"))?;
    let purpose = Purpose::new("billing_email")
        .map_err(|_| Error::new(ErrorKind::Internal, "the purpose name is not valid"))?;
    if let Err(error) = host
        .mfa
        .require_step_up(&signed_in.org, &signed_in.customer, &signed_in.mfa, purpose)
        .await
    {
        if error.kind() == ErrorKind::SessionEnded {
            session.flush().await.map_err(session_failed)?;
        }
        return Err(error);
    }
    let email = CustomerId::new(body.email.trim())
        .ok()
        .filter(|email| email.as_str().contains('@'))
        .ok_or_else(|| Error::new(ErrorKind::InvalidBody, "that is not an email address"))?;
    Ok(Json(serde_json::json!({ "billing_email": email.as_str() })).into_response())
}

/// `POST /signout` (no body, or `{}` as JSON: a form posted from another site is refused).
async fn sign_out(session: Session, _: NoInput) -> Result<StatusCode, Error> {
    session.flush().await.map_err(session_failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /invoices`: the billing data, for a session whose second factor passed (or that needs
/// none). Checked against the customer's record on every request, so a reset or a change of factor
/// from anywhere ends the session here too.
async fn invoices<S: Store + 'static, C: Clock + 'static>(
    State(host): State<Arc<Host<S, C>>>,
    session: Session,
) -> Result<Response, Error> {
    let signed_in = SessionHost::customer(&session)
        .await
        .map_err(session_failed)?
        .ok_or_else(|| Error::new(ErrorKind::Unauthenticated, "sign in first"))?;
    let check = host
        .service()
        .check_session(&signed_in.org, &signed_in.customer, &signed_in.mfa)
        .await
        .map_err(|error| Error::from_service(&error, host.service().clock().now()))?;
    let next = match check {
        SessionCheck::Complete(_) => {
            let rows = host
                .users
                .invoices(signed_in.customer.as_str())
                .await
                .map_err(|error| {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "billing: invoices failed"
                    );
                    Error::new(ErrorKind::Unavailable, "try again shortly")
                })?;
            let invoices: Vec<_> = rows
                .iter()
                .map(|(id, cents)| serde_json::json!({ "id": id, "amount_cents": cents }))
                .collect();
            return Ok(Json(serde_json::json!({ "invoices": invoices })).into_response());
        }
        SessionCheck::Ended => {
            session.flush().await.map_err(session_failed)?;
            return Err(Error::new(ErrorKind::SessionEnded, "sign in again"));
        }
        SessionCheck::Enroll => Next::Enroll,
        _ => Next::Verify,
    };
    let mut response =
        Error::new(ErrorKind::MfaRequired, "the second factor is required").into_response();
    if let Ok(body) = serde_json::to_vec(&serde_json::json!({
        "error": "mfa_required",
        "message": "the second factor is required",
        "next": next,
    })) {
        *response.body_mut() = axum::body::Body::from(body);
    }
    Ok(response)
}
