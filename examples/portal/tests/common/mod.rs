//! The portal over a temporary SQLite file or fresh PostgreSQL schemas, on a manual clock, and a
//! client that keeps the session cookie as a browser would.
//!
//! PostgreSQL: the tests read `MFA_TEST_POSTGRES_URL`. Without it they print that they were skipped
//! and pass, unless `MFA_REQUIRE_POSTGRES=1` makes that a failure.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of the shared harness"
)]

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use mfa_core::{Clock, KeyRing, ManualClock, OrgId, Store, uri::KeyUri};
use mfa_postgres::deadpool_postgres::tokio_postgres::{self, NoTls};
use mfa_postgres::{PostgresOptions, PostgresStore};
use mfa_sqlite::SqliteStore;
use mfa_store_tests::fixture::SoftApp;
use portal::accounts::Accounts;
use portal::{Config, Portal};
use serde_json::Value;
use tower::ServiceExt;

/// 2026-01-01T00:00:00Z.
pub const T0: u64 = mfa_store_tests::T0;
pub const ALICE: &str = "alice@acme.test";
pub const BOB: &str = "bob@acme.test";
pub const ADMIN: &str = "admin@acme.test";

/// The portal's configuration in tests: cheap hashes, so that the suite stays fast.
pub fn config() -> Config {
    let mut config = Config::new(OrgId::new("acme").unwrap());
    config.danger_insecure_fast_hashes = true;
    config
}

fn keys() -> KeyRing {
    mfa_store_tests::fixture::keys()
}

/// What must be cleaned up after a test: a directory, or PostgreSQL schemas.
pub enum Cleanup {
    Dir(tempfile::TempDir),
    Schemas { url: String, schemas: Vec<String> },
}

impl Cleanup {
    /// The directory of a SQLite portal.
    pub fn dir(&self) -> &std::path::Path {
        match self {
            Self::Dir(dir) => dir.path(),
            Self::Schemas { .. } => panic!("a PostgreSQL portal has no directory"),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Self::Schemas { url, schemas } = self {
            drop_schemas(url, schemas);
        }
    }
}

/// The portal under test, its router and its clock.
pub struct TestPortal<S> {
    // Declared first, so the store closes before its files or schemas go.
    pub portal: Arc<Portal<S, ManualClock>>,
    pub app: Router,
    pub clock: ManualClock,
    pub cleanup: Cleanup,
}

impl<S: Store + 'static> TestPortal<S> {
    /// The administrator, signed in, switches MFA on for the organisation: their browser.
    pub async fn admin_switches_mfa_on(&self) -> Client {
        let mut admin = self.client();
        admin.sign_in(ADMIN, "admin-pass").await;
        admin
            .json(
                Method::PUT,
                "/api/admin/mfa",
                &serde_json::json!({ "enabled": true }),
            )
            .await
            .expect(200, None);
        admin
    }

    /// A browser with no cookie yet.
    pub fn client(&self) -> Client {
        Client {
            app: self.app.clone(),
            cookies: Vec::new(),
        }
    }

    /// The code the customer's app shows now.
    pub fn code(&self, uri: &KeyUri) -> String {
        SoftApp::scan(uri).code_now(&self.clock, 0)
    }

    /// A code no step of the window (two either side) accepts now.
    pub fn wrong_code(&self, uri: &KeyUri) -> String {
        SoftApp::scan(uri).wrong_code(self.clock.now().as_secs() / 30)
    }
}

/// The portal on a SQLite file in a fresh directory.
pub async fn sqlite() -> TestPortal<SqliteStore> {
    sqlite_with(config()).await
}

pub async fn sqlite_with(config: Config) -> TestPortal<SqliteStore> {
    sqlite_with_keys(config, keys()).await
}

/// The portal on a SQLite file in a fresh directory (`portal.db` there), sealing with `keys`.
pub async fn sqlite_with_keys(config: Config, keys: KeyRing) -> TestPortal<SqliteStore> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    portal::database::create_private(&path).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let accounts = Accounts::sqlite(&path).await.unwrap();
    build(store, accounts, config, keys, Cleanup::Dir(dir)).await
}

async fn build<S: Store + 'static>(
    store: S,
    accounts: Accounts,
    config: Config,
    keys: KeyRing,
    cleanup: Cleanup,
) -> TestPortal<S> {
    let clock = mfa_store_tests::fixture::clock();
    let (portal, created) = Portal::start(store, accounts, clock.clone(), keys, config)
        .await
        .unwrap();
    assert!(
        created,
        "a new database gets the demo organisation and accounts"
    );
    let app = portal.router();
    TestPortal {
        portal,
        app,
        clock,
        cleanup,
    }
}

pub use mfa_store_tests::{fresh_schema, postgres_url};

/// Drops the schemas, from a thread of its own (so it works from `Drop`, in or out of a runtime).
fn drop_schemas(url: &str, schemas: &[String]) {
    let (url, schemas) = (url.to_owned(), schemas.to_vec());
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            tokio::spawn(async move {
                let _ = connection.await;
            });
            for schema in schemas {
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .unwrap();
            }
        });
    })
    .join();
}

/// The portal on PostgreSQL, with fresh schemas for the MFA store and the portal's accounts, or
/// `None` when the tests skip.
pub async fn postgres(label: &str) -> Option<TestPortal<PostgresStore>> {
    let url = postgres_url()?;
    let (mfa_schema, portal_schema) = (fresh_schema(label), fresh_schema(&format!("{label}_p")));
    let cleanup = Cleanup::Schemas {
        url: url.clone(),
        schemas: vec![mfa_schema.clone(), portal_schema.clone()],
    };
    let store = PostgresStore::connect_with(
        url.parse().unwrap(),
        PostgresOptions::default().schema(mfa_schema),
    )
    .await
    .unwrap();
    let accounts = Accounts::postgres(store.pool().clone(), &portal_schema)
        .await
        .unwrap();
    Some(build(store, accounts, config(), keys(), cleanup).await)
}

/// The session cookie's name (without TLS).
const SESSION_COOKIE: &str = "portal_session";

/// A browser: sends requests through the router and keeps the cookies it is given (the session's,
/// and the sign-in form's).
#[derive(Clone)]
pub struct Client {
    app: Router,
    /// Name and value, in the order they were first set.
    cookies: Vec<(String, String)>,
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{}: not JSON ({error}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    /// The `error` of a JSON error body.
    pub fn kind(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// Where a redirect goes.
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// Asserts the status (and, for a JSON error, its kind).
    #[track_caller]
    pub fn expect(&self, status: u16, kind: Option<&str>) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        if let Some(kind) = kind {
            assert_eq!(self.kind(), kind);
        }
        self
    }

    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        let text = self.text();
        let start = text
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no CSRF field in {text}"))
            + r#"name="csrf" value=""#.len();
        let end = start + text[start..].find('"').unwrap();
        text[start..end].to_owned()
    }
}

/// Runs `futures` together on this task, polling them in their order each time: each reaches its
/// first wait before the next starts, as requests that arrive in that order would.
pub async fn join_in_order<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(&mut outputs) {
            if output.is_none() {
                match std::pin::Pin::new(future).poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// `application/x-www-form-urlencoded`.
pub fn urlencode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Client {
    /// The session cookie's value.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie_named(SESSION_COOKIE)
    }

    /// The value of the cookie called `name`.
    pub fn cookie_named(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Replaces the session cookie (a forged one, an old one...).
    pub fn set_cookie(&mut self, cookie: Option<String>) {
        self.set_cookie_named(SESSION_COOKIE, cookie);
    }

    /// Replaces (or, with `None`, forgets) the cookie called `name`.
    pub fn set_cookie_named(&mut self, name: &str, value: Option<String>) {
        match (self.cookies.iter_mut().find(|(key, _)| key == name), value) {
            (Some(slot), Some(value)) => slot.1 = value,
            (None, Some(value)) => self.cookies.push((name.to_owned(), value)),
            (_, None) => self.cookies.retain(|(key, _)| key != name),
        }
    }

    /// Sends `request` with the cookies (unless it has a `Cookie` header of its own), and keeps the
    /// cookies the answer sets.
    pub async fn send(&mut self, mut request: Request<Body>) -> Reply {
        if !self.cookies.is_empty() && !request.headers().contains_key(header::COOKIE) {
            let line = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            request
                .headers_mut()
                .insert(header::COOKIE, line.parse().unwrap());
        }
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        for value in parts.headers.get_all(header::SET_COOKIE) {
            let value = value.to_str().unwrap();
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            if let Some((name, value)) = pair.split_once('=') {
                let value = (!attributes.contains("Max-Age=0")).then(|| value.to_owned());
                self.set_cookie_named(name, value);
            }
        }
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn json(&mut self, method: Method, path: &str, body: &Value) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(body).unwrap()))
                .unwrap(),
        )
        .await
    }

    pub async fn post(&mut self, path: &str, body: &Value) -> Reply {
        self.json(Method::POST, path, body).await
    }

    pub async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(urlencode(fields)))
                .unwrap(),
        )
        .await
    }

    /// `POST /api/session`; the `next` step.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> String {
        let reply = self
            .post(
                "/api/session",
                &serde_json::json!({"email": email, "password": password}),
            )
            .await;
        reply.expect(200, None);
        reply.json()["next"].as_str().unwrap().to_owned()
    }
}
