//! The billing host's whole story over HTTP, with codes from implementations we did not write
//! (`oathtool` to enroll, `pyotp` to sign in): password, set-up, the protected route, sign-out, a
//! code at the next sign-in, and a replayed code refused. On SQLite, and on PostgreSQL where the
//! test database is configured (the host's tables and MFA's on one pool).

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use mfa_core::ManualClock;
use mfa_store_tests::peers::{oathtool_totp, peer, pyotp_totp};
use mfa_store_tests::{T0, fixture, fresh_schema, postgres_url};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A browser: the session cookie it holds.
struct Browser {
    app: Router,
    cookie: Option<String>,
}

impl Browser {
    async fn send(&mut self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

async fn story(app: Router, clock: &ManualClock) {
    let mut alice = Browser {
        app: app.clone(),
        cookie: None,
    };
    let (status, body) = alice
        .send(
            "POST",
            "/signin",
            Some(json!({"email": billing::DEMO_EMAIL, "password": billing::DEMO_PASSWORD})),
        )
        .await;
    assert_eq!((status, &body["next"]), (200, &json!("enroll")), "{body}");
    let (status, body) = alice.send("GET", "/invoices", None).await;
    assert_eq!((status, &body["next"]), (403, &json!("enroll")), "{body}");

    // Set-up: the key URI, and oathtool's code for it.
    let (status, started) = alice.send("POST", "/mfa/enrollment", Some(json!({}))).await;
    assert_eq!(status, 201, "{started}");
    let uri = started["otpauth_uri"].as_str().unwrap().to_owned();
    let secret = mfa_core::uri::KeyUri::parse(&uri)
        .unwrap()
        .secret()
        .to_base32();
    let code = oathtool_totp(&secret, T0);
    let (status, body) = alice
        .send(
            "POST",
            "/mfa/enrollment/confirm",
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice.send("GET", "/invoices", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["invoices"].as_array().unwrap().len(), 2, "{body}");

    // Signed out, and in again: the code prompt, answered with pyotp's code.
    let (status, _) = alice.send("POST", "/signout", None).await;
    assert_eq!(status, 204);
    assert_eq!(alice.send("GET", "/invoices", None).await.0, 401);
    let (status, body) = alice
        .send(
            "POST",
            "/signin",
            Some(json!({"email": billing::DEMO_EMAIL, "password": billing::DEMO_PASSWORD})),
        )
        .await;
    assert_eq!((status, &body["next"]), (200, &json!("verify")), "{body}");
    assert_eq!(alice.send("GET", "/invoices", None).await.0, 403);
    clock.advance(30);
    let code = pyotp_totp(&uri, T0 + 30);
    let (status, body) = alice
        .send("POST", "/mfa/verify", Some(json!({"code": code})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(alice.send("GET", "/invoices", None).await.0, 200);

    // A thief with the password and that same code, a moment later: refused.
    let mut thief = Browser { app, cookie: None };
    let (status, _) = thief
        .send(
            "POST",
            "/signin",
            Some(json!({"email": billing::DEMO_EMAIL, "password": billing::DEMO_PASSWORD})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = thief
        .send("POST", "/mfa/verify", Some(json!({"code": code})))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("invalid_code")),
        "{body}"
    );
    assert_eq!(thief.send("GET", "/invoices", None).await.0, 403);
    // And a wrong password gets no session at all.
    let mut guesser = Browser {
        app: thief.app.clone(),
        cookie: None,
    };
    let (status, _) = guesser
        .send(
            "POST",
            "/signin",
            Some(json!({"email": billing::DEMO_EMAIL, "password": "alice-pasS"})),
        )
        .await;
    assert_eq!(status, 401);
}

fn interop_peers() -> bool {
    peer("oathtool", &["--version"]) && peer("python3", &["-c", "import pyotp"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_story_on_sqlite() {
    if !interop_peers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("billing.db").display());
    let clock = fixture::clock();
    let app = billing::app(&url, "mfa", fixture::keys(), clock.clone())
        .await
        .unwrap();
    story(app, &clock).await;
    assert!(
        dir.path().join("billing-mfa.db").exists(),
        "MFA in a file of its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_story_on_postgres_on_one_pool() {
    let Some(url) = postgres_url() else { return };
    if !interop_peers() {
        return;
    }
    // The host's tables in a schema of the test's own (the URL's search_path), MFA's in another.
    let (host, mfa) = (fresh_schema("billing_host"), fresh_schema("billing_mfa"));
    let admin = sqlx::postgres::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{host}\"")))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{separator}options=-c%20search_path%3D{host}");
    let clock = fixture::clock();
    let app = billing::app(&scoped, &mfa, fixture::keys(), clock.clone())
        .await
        .unwrap();
    story(app, &clock).await;
    // The host's own migrations table and MFA's, each in its own schema, untouched by the other.
    let host_migrations: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{host}\"._sqlx_migrations"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(host_migrations, 1);
    let mfa_migrations: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{mfa}\".schema_migrations"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(mfa_migrations, i64::from(mfa_sql::postgres::SCHEMA_VERSION));
    for schema in [&host, &mfa] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(&admin)
        .await
        .unwrap();
    }
}
