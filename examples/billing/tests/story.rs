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
    let (status, _) = alice.send("POST", "/signout", Some(json!({}))).await;
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
    let app = billing::app(
        &url,
        "mfa",
        fixture::keys(),
        clock.clone(),
        billing::Cookies::LocalHttp,
    )
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
    let app = billing::app(
        &scoped,
        &mfa,
        fixture::keys(),
        clock.clone(),
        billing::Cookies::LocalHttp,
    )
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

/// One request straight to the app: status, headers and the JSON body (`Null` if none).
async fn raw(
    app: &Router,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (u16, axum::http::HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let response = app
        .clone()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

/// The host's own routes refuse what a browser form or a script from another site sends, in the
/// same JSON shape as MFA's routes; nothing it answers is cached; the session cookie is HttpOnly,
/// SameSite=Strict, and Secure unless the host serves plain HTTP on this machine.
#[tokio::test]
async fn the_hosts_own_routes_refuse_hostile_requests() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("billing.db").display());
    let app = billing::app(
        &url,
        "mfa",
        fixture::keys(),
        fixture::clock(),
        billing::Cookies::Secure,
    )
    .await
    .unwrap();
    let good =
        json!({"email": billing::DEMO_EMAIL, "password": billing::DEMO_PASSWORD}).to_string();
    let refused = [
        // A cross-site form post: a "simple" request that needs no CORS preflight.
        ("/signin", Some("text/plain"), good.clone(), 415),
        ("/signin", Some("application/x-www-form-urlencoded"), good.clone(), 415),
        ("/signin", None, good.clone(), 415),
        ("/signin", Some("application/json"), "{\"email\": ".to_owned(), 400),
        ("/signin", Some("application/json"), "[]".to_owned(), 422),
        (
            "/signin",
            Some("application/json"),
            json!({"email": billing::DEMO_EMAIL, "password": billing::DEMO_PASSWORD, "admin": true}).to_string(),
            422,
        ),
        ("/signin", Some("application/json"), format!("{{\"email\": \"{}\"}}", "a".repeat(5000)), 413),
        ("/signout", Some("text/plain"), "x".to_owned(), 415),
    ];
    for (path, content_type, body, status) in refused {
        let (got, headers, answer) = raw(&app, "POST", path, content_type, body.clone()).await;
        assert_eq!(got, status, "{path} {content_type:?} {body:.60}: {answer}");
        assert!(
            answer["error"].is_string(),
            "{path} {content_type:?}: {answer}"
        );
        assert!(
            !headers.contains_key(header::SET_COOKIE),
            "{path} {content_type:?}: a refused request starts no session"
        );
    }

    let (status, headers, _) = raw(&app, "POST", "/signin", Some("application/json"), good).await;
    assert_eq!(status, 200);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    for path in ["/invoices", "/mfa"] {
        let (_, headers, _) = raw(&app, "GET", path, None, Body::empty()).await;
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
    }

    let local = billing::app(
        &format!("sqlite://{}", dir.path().join("local.db").display()),
        "mfa",
        fixture::keys(),
        fixture::clock(),
        billing::Cookies::LocalHttp,
    )
    .await
    .unwrap();
    let good =
        json!({"email": billing::DEMO_EMAIL, "password": billing::DEMO_PASSWORD}).to_string();
    let (_, headers, _) = raw(&local, "POST", "/signin", Some("application/json"), good).await;
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
}

/// The host on a SQLite file at `path` on `clock`, and alice signed in and set up there with the
/// kit's soft authenticator: her browser and her app.
async fn alice_set_up(path: &std::path::Path, clock: &ManualClock) -> (Browser, fixture::SoftApp) {
    let app = billing::app(
        &format!("sqlite://{}", path.display()),
        "mfa",
        fixture::keys(),
        clock.clone(),
        billing::Cookies::LocalHttp,
    )
    .await
    .unwrap();
    let mut alice = Browser { app, cookie: None };
    let credentials = json!({"email": billing::DEMO_EMAIL, "password": billing::DEMO_PASSWORD});
    assert_eq!(
        alice.send("POST", "/signin", Some(credentials)).await.0,
        200
    );
    let (status, started) = alice.send("POST", "/mfa/enrollment", Some(json!({}))).await;
    assert_eq!(status, 201);
    let uri = mfa_core::uri::KeyUri::parse(started["otpauth_uri"].as_str().unwrap()).unwrap();
    let app = fixture::SoftApp::scan(&uri);
    let code = app.code_now(clock, 0);
    let (status, _) = alice
        .send(
            "POST",
            "/mfa/enrollment/confirm",
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(status, 200);
    (alice, app)
}

/// An administrator's reset (here through a second service on MFA's file, as `mfa admin` would)
/// ends the customer's session on every route: MFA's routes answer 401 `session_ended` once and
/// flush the tower-sessions session, so the next request is simply not signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_ends_the_session_on_mfas_routes_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.db");
    let clock = fixture::clock();
    let (mut alice, _) = alice_set_up(&path, &clock).await;
    assert_eq!(alice.send("GET", "/invoices", None).await.0, 200);

    // The reset, from outside the host.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(mfa_sqlx::SqliteStore::connect_options(billing::mfa_file(
            &path,
        )))
        .await
        .unwrap();
    let store = mfa_sqlx::SqliteStore::new(pool).await.unwrap();
    let (admin, _) = fixture::service(store, T0, 9);
    admin
        .reset(
            &mfa_core::OrgId::new(billing::ORG).unwrap(),
            &mfa_core::CustomerId::new(billing::DEMO_EMAIL).unwrap(),
            &mfa_core::Actor::new("ops").unwrap(),
        )
        .await
        .unwrap();

    let (status, body) = alice.send("GET", "/mfa", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("session_ended"))
    );
    let (status, body) = alice.send("GET", "/invoices", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthenticated")),
        "the session was flushed: {body}"
    );
}

/// A sensitive change of the host's own (where invoices go) asks for a code fresh for its purpose:
/// `MfaApi::require_step_up`, then `POST /mfa/step-up` without signing out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensitive_change_asks_for_a_fresh_code() {
    let dir = tempfile::tempdir().unwrap();
    let clock = fixture::clock();
    let (mut alice, app) = alice_set_up(&dir.path().join("billing.db"), &clock).await;

    let change = json!({"email": "accounts@billing.test"});
    let (status, body) = alice
        .send("PUT", "/billing-email", Some(change.clone()))
        .await;
    assert_eq!(
        (status, &body["billing_email"]),
        (200, &json!("accounts@billing.test"))
    );
    clock.advance(mfa_core::RECENT_FACTOR_SECS + 1);
    let (status, body) = alice
        .send("PUT", "/billing-email", Some(change.clone()))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("step_up_required")),
        "{body}"
    );
    // A step-up for another purpose does not do.
    let (status, _) = alice
        .send(
            "POST",
            "/mfa/step-up",
            Some(json!({"purpose": "payment_method", "code": app.code_now(&clock, 0)})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        alice
            .send("PUT", "/billing-email", Some(change.clone()))
            .await
            .0,
        403
    );
    clock.advance(30);
    let (status, _) = alice
        .send(
            "POST",
            "/mfa/step-up",
            Some(json!({"purpose": "billing_email", "code": app.code_now(&clock, 0)})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = alice.send("PUT", "/billing-email", Some(change)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice
        .send(
            "PUT",
            "/billing-email",
            Some(json!({"email": "not an address"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid_body"))
    );
}
