//! Bad input to every route of the portal: malformed and hostile bodies, content types, headers,
//! cookies (forged, oversized, garbage session ids), CSRF tokens that are wrong or another
//! session's, paths and methods. None may answer 5xx, every answer carries the security headers,
//! and none may change anything: the organisation, the customers' MFA, the audit log, the accounts
//! and the signed-in sessions are compared before and after.

mod common;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use common::{ADMIN, ALICE, BOB, Client, Reply, TestPortal};
use mfa_core::{CustomerId, OrgId, audit::AuditQuery, uri::KeyUri};
use mfa_sqlite::SqliteStore;
use serde_json::json;

type Portal = TestPortal<SqliteStore>;

/// Everything a request could change, as text.
async fn snapshot(t: &Portal) -> String {
    let org = OrgId::new("acme").unwrap();
    let service = t.portal.service();
    let policy = service.org_policy(&org).await.unwrap();
    let mut customers = Vec::new();
    for customer in [ALICE, BOB, ADMIN, "mallory@acme.test"] {
        let report = service
            .status(&org, &CustomerId::new(customer).unwrap())
            .await
            .unwrap();
        let status = report.customer;
        customers.push(format!("{customer}: {status:?}"));
    }
    let query = AuditQuery {
        limit: 100_000,
        ..AuditQuery::default()
    };
    let events = service.audit(&org, &query).await.unwrap();
    let mut sessions: Vec<String> = t
        .portal
        .sessions()
        .signed_in()
        .iter()
        .map(|user| {
            format!(
                "{}:{}",
                user.email.as_str(),
                user.mfa.is_some_and(|mfa| mfa.passed().is_some())
            )
        })
        .collect();
    sessions.sort();
    format!(
        "enabled={} customers={customers:?} events={} last={:?} accounts={} sessions={sessions:?}",
        policy.enabled(),
        events.len(),
        events.first().map(|event| event.seq),
        t.portal.accounts().count().await.unwrap(),
    )
}

/// Who the request claims to be.
#[derive(Clone)]
struct Setup {
    alice: Client,
    bob: Client,
    admin: Client,
    /// A visitor who only loaded the sign-in page: no session, only the form's cookie.
    anonymous: Client,
    admin_csrf: String,
    alice_csrf: String,
    anonymous_csrf: String,
    /// The token of a session none of the clients above holds.
    stranger_csrf: String,
}

/// MFA on; Alice configured with backup codes and signed in; Bob signed in, enrollment pending;
/// the administrator signed in; a visitor on the sign-in page.
async fn setup(t: &Portal) -> Setup {
    let mut admin = t.admin_switches_mfa_on().await;
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "enroll");
    let started = alice.post("/api/mfa/enrollment", &json!({})).await;
    let uri = KeyUri::parse(started.json()["otpauth_uri"].as_str().unwrap()).unwrap();
    alice
        .post(
            "/api/mfa/enrollment/confirm",
            &json!({"code": t.code(&uri)}),
        )
        .await
        .expect(200, None);
    alice
        .post("/api/mfa/backup-codes", &json!({}))
        .await
        .expect(201, None);
    let mut bob = t.client();
    assert_eq!(bob.sign_in(BOB, "bob-pass").await, "enroll");
    bob.post("/api/mfa/enrollment", &json!({}))
        .await
        .expect(201, None);
    let mut anonymous = t.client();
    let anonymous_csrf = anonymous.get("/signin").await.csrf();
    let stranger_csrf = t.client().get("/signin").await.csrf();
    let admin_csrf = admin.get("/admin").await.csrf();
    let alice_csrf = alice.get("/account").await.csrf();
    // A new time step: a fresh code would pass if anything let one through.
    t.clock.advance(30);
    Setup {
        alice,
        bob,
        admin,
        anonymous,
        admin_csrf,
        alice_csrf,
        anonymous_csrf,
        stranger_csrf,
    }
}

/// Cookie headers that name no session, as raw bytes.
fn garbage_cookies(setup: &Setup) -> Vec<Vec<u8>> {
    let alice = setup.alice.cookie().unwrap();
    let mut cookies: Vec<Vec<u8>> = vec![
        b"portal_session=".to_vec(),
        b"portal_session".to_vec(),
        b"=portal_session".to_vec(),
        b";;;;".to_vec(),
        b"portal_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
        b"portal_session=../../../../etc/passwd".to_vec(),
        b"portal_session=\"quoted\"".to_vec(),
        b"portal_session=<script>alert(1)</script>".to_vec(),
        b"portal_session=%00%00".to_vec(),
        b"portal_session=\xff\xfe\xfd".to_vec(),
        b"portal_session=\x80\x81".to_vec(),
        format!("portal_session={alice}x").into_bytes(),
        format!("portal_session={}", &alice[1..]).into_bytes(),
        format!("portal_session={}", alice.to_uppercase()).into_bytes(),
        format!("Portal_Session={alice}").into_bytes(),
        format!("__Host-portal_session={alice}").into_bytes(),
        format!("portal_session= {alice}=").into_bytes(),
        // A forged id of the right shape.
        b"portal_session=Zm9yZ2VkLXNlc3Npb24taWQtb2YtdGhlLXJpZ2h0LXNo".to_vec(),
    ];
    cookies.push(format!("portal_session={}", "A".repeat(100_000)).into_bytes());
    cookies.push("x=y; ".repeat(5_000).into_bytes());
    cookies.push(
        "portal_session=BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB; "
            .repeat(2_000)
            .into_bytes(),
    );
    cookies
}

/// Sends `request` as `client` (or with its own `Cookie` header), and checks the answer is not a
/// server error and carries the security headers.
async fn safe(client: &mut Client, request: Request<Body>) -> Reply {
    let what = format!("{} {:.120}", request.method(), request.uri());
    let reply = client.send(request).await;
    assert!(
        reply.status.as_u16() < 500,
        "{what} -> {}: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body[..reply.body.len().min(400)])
    );
    assert!(
        reply.header("content-security-policy").is_some(),
        "{what}: no CSP"
    );
    assert!(reply.header("x-content-type-options").is_some(), "{what}");
    reply
}

fn request(
    method: &Method,
    path: &str,
    content_type: Option<&[u8]>,
    body: Vec<u8>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method.clone()).uri(path);
    if let Some(content_type) = content_type {
        builder = builder.header(
            header::CONTENT_TYPE,
            HeaderValue::from_bytes(content_type).unwrap(),
        );
    }
    builder.body(Body::from(body)).unwrap()
}

fn with_cookie(mut request: Request<Body>, cookie: &[u8]) -> Request<Body> {
    request
        .headers_mut()
        .insert(header::COOKIE, HeaderValue::from_bytes(cookie).unwrap());
    request
}

/// Every route, with the methods it takes.
fn routes() -> Vec<(Method, &'static str)> {
    vec![
        (Method::GET, "/"),
        (Method::GET, "/signin"),
        (Method::POST, "/signin"),
        (Method::POST, "/signout"),
        (Method::GET, "/mfa/setup"),
        (Method::GET, "/mfa/verify"),
        (Method::GET, "/account"),
        (Method::GET, "/billing/payment-method"),
        (Method::GET, "/admin"),
        (Method::POST, "/admin/settings"),
        (Method::POST, "/admin/customers/reset"),
        (Method::GET, "/static/app.js"),
        (Method::GET, "/static/style.css"),
        (Method::POST, "/api/session"),
        (Method::DELETE, "/api/session"),
        (Method::GET, "/api/me"),
        (Method::GET, "/api/mfa"),
        (Method::POST, "/api/mfa/enrollment"),
        (Method::POST, "/api/mfa/enrollment/confirm"),
        (Method::POST, "/api/mfa/backup-codes"),
        (Method::POST, "/api/mfa/verify"),
        (Method::POST, "/api/mfa/step-up"),
        (Method::POST, "/api/mfa/authenticator/replacement"),
        (Method::POST, "/api/mfa/authenticator/replacement/confirm"),
        (Method::GET, "/api/mfa/step-up/payment_method"),
        (Method::POST, "/api/billing/payment-method"),
        (Method::GET, "/api/admin/mfa"),
        (Method::PUT, "/api/admin/mfa"),
        (Method::GET, "/api/admin/customers/alice%40acme.test/mfa"),
        (
            Method::POST,
            "/api/admin/customers/alice%40acme.test/mfa/reset",
        ),
        (Method::GET, "/api/admin/audit"),
        (Method::GET, "/api/openapi.json"),
    ]
}

/// JSON bodies that are never valid input for any route.
fn junk_json() -> Vec<Vec<u8>> {
    let nest = |open: &str, close: &str, depth: usize| {
        format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
    };
    let mut bodies: Vec<Vec<u8>> = [
        &b"[]"[..],
        b"\"text\"",
        b"42",
        b"{",
        b"{} {}",
        b"\xEF\xBB\xBF{}",
        b"\x00",
        b"\xff\xfe\xfd",
        b"{\"email\":\"\xff\"}",
        b"{\"email\":1,\"password\":2}",
        b"{\"email\":\"alice@acme.test\"}",
        b"{\"password\":\"alice-pass\"}",
        b"{\"email\":\"alice@acme.test\",\"password\":\"alice-pass\",\"admin\":true}",
        b"{\"email\":null,\"password\":null}",
        b"{\"email\":[\"alice@acme.test\"],\"password\":\"alice-pass\"}",
        b"[\"alice@acme.test\",\"alice-pass\"]",
        b"{\"code\":123456}",
        b"{\"code\":\"1\",\"backup_code\":\"2\"}",
        b"{\"enabled\":\"false\"}",
        b"{\"enabled\":false,\"x\":1}",
        b"{\"x\":1}",
        b"NaN",
        b"{\"purpose\":\"Payment\",\"code\":\"123456\"}",
        b"{\"purpose\":\"payment_method\"}",
        b"{\"card_number\":4242424242424242,\"expiry\":\"12/30\"}",
        b"{\"card_number\":\"4242424242424242\"}",
        b"{\"card_number\":\"4242424242424242\",\"expiry\":\"12/30\",\"cvc\":\"123\"}",
        b"{\"card_number\":\"4242424242424241\",\"expiry\":\"12/30\"}",
    ]
    .iter()
    .map(|body| body.to_vec())
    .collect();
    bodies.push(nest("[", "]", 3_000));
    bodies.push(nest("{\"email\":", "}", 1_000));
    bodies.push(vec![b' '; 64 * 1024]);
    bodies.push(format!(r#"{{"email":"{}","password":"x"}}"#, "a".repeat(1 << 20)).into_bytes());
    bodies
}

/// Form bodies that are never valid input (no right token, or fields that cannot be read).
fn junk_forms(foreign_csrf: &str) -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"csrf=".to_vec(),
        b"csrf=forged&email=alice%40acme.test&password=alice-pass".to_vec(),
        b"csrf=%FF%FE&mfa_enabled=on".to_vec(),
        b"csrf=%&&&==&".to_vec(),
        b"csrf[]=x&csrf[]=y".to_vec(),
        b"email=alice%40acme.test&password=alice-pass&mfa_enabled=on&customer=alice%40acme.test"
            .to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        b"{\"csrf\":\"x\"}".to_vec(),
        format!("csrf={foreign_csrf}&mfa_enabled=on&customer=alice%40acme.test&email=alice%40acme.test&password=alice-pass").into_bytes(),
        format!("csrf={}", "A".repeat(43)).into_bytes(),
        format!("csrf={}&customer=alice%40acme.test", "x".repeat(20_000)).into_bytes(),
    ];
    bodies.push(vec![b'a'; 1 << 20]);
    bodies
}

#[tokio::test]
async fn hostile_cookies_and_bodies_on_every_route() {
    let t = common::sqlite().await;
    let setup = setup(&t).await;
    let before = snapshot(&t).await;
    let cookies = garbage_cookies(&setup);
    let mut sent = 0usize;
    let content_types: [Option<&[u8]>; 6] = [
        Some(b"application/json"),
        Some(b"application/x-www-form-urlencoded"),
        Some(b"text/plain"),
        Some(b"multipart/form-data; boundary=x"),
        Some(b"application/json; charset=utf-16"),
        None,
    ];
    let mut bodies = junk_json();
    bodies.extend(junk_forms(&setup.stranger_csrf));
    for (method, path) in routes() {
        // Nobody, and every garbage cookie: nobody is signed in, whatever the body.
        let mut nobody = t.client();
        for cookie in &cookies {
            for body in [Vec::new(), b"{}".to_vec(), b"csrf=x".to_vec()] {
                for content_type in [
                    Some(&b"application/json"[..]),
                    Some(b"application/x-www-form-urlencoded"),
                ] {
                    let reply = safe(
                        &mut nobody,
                        with_cookie(request(&method, path, content_type, body.clone()), cookie),
                    )
                    .await;
                    // Nothing but the public pages answers 200 to a garbage cookie.
                    if reply.status == 200 {
                        assert!(
                            matches!(
                                path,
                                "/signin"
                                    | "/static/app.js"
                                    | "/static/style.css"
                                    | "/api/openapi.json"
                            ),
                            "{method} {path} answered 200 to a garbage cookie"
                        );
                    }
                    sent += 1;
                }
            }
        }
        // Each real session, with bodies that are never valid.
        for client in [&setup.alice, &setup.bob, &setup.admin, &setup.anonymous] {
            let mut client = client.clone();
            for body in &bodies {
                for content_type in content_types {
                    // An empty JSON body is valid input for the routes that take none (starting an
                    // enrollment, a sign-out): not bad input.
                    if body.is_empty() && content_type == Some(&b"application/json"[..]) {
                        continue;
                    }
                    safe(
                        &mut client,
                        request(&method, path, content_type, body.clone()),
                    )
                    .await;
                    sent += 1;
                }
            }
        }
        assert_eq!(
            snapshot(&t).await,
            before,
            "{method} {path} changed something"
        );
    }
    assert!(sent > 10_000, "{sent} requests");
}

#[tokio::test]
async fn wrong_tokens_and_unreadable_fields_on_the_forms() {
    let t = common::sqlite().await;
    let setup = setup(&t).await;
    let before = snapshot(&t).await;
    let mut admin = setup.admin.clone();
    let csrf = setup.admin_csrf.clone();
    // The administrator's own token, with a value that is not a checkbox's: refused.
    for value in ["yes", "true", "off", "", "%FF", "on%00", "ON"] {
        let body = format!("csrf={csrf}&mfa_enabled={value}");
        let reply = safe(
            &mut admin,
            request(
                &Method::POST,
                "/admin/settings",
                Some(b"application/x-www-form-urlencoded"),
                body.into_bytes(),
            ),
        )
        .await;
        assert_eq!(reply.status, 400, "mfa_enabled={value}");
    }
    // Someone else's token (Alice's, the visitor's), or none: refused, for every form.
    for token in [&setup.alice_csrf, &setup.anonymous_csrf, &String::new()] {
        for (path, rest) in [
            ("/admin/settings", ""),
            ("/admin/settings", "&mfa_enabled=on"),
            ("/admin/customers/reset", "&customer=alice%40acme.test"),
            ("/signout", ""),
        ] {
            let body = format!("csrf={token}{rest}");
            let reply = safe(
                &mut admin,
                request(
                    &Method::POST,
                    path,
                    Some(b"application/x-www-form-urlencoded"),
                    body.into_bytes(),
                ),
            )
            .await;
            assert_eq!(reply.status, 403, "{path} with a foreign token");
        }
    }
    // The right token, and customers that are not the portal's.
    let long = "a".repeat(5_000);
    for customer in [
        "",
        "ALICE%40ACME.TEST",
        "alice%40acme.test%00",
        "alice%40acme.test%20",
        "%20alice%40acme.test",
        "..%2Falice%40acme.test",
        "admin%40acme.test",
        "mallory%40acme.test",
        "%FF%FE",
        long.as_str(),
    ] {
        let body = format!("csrf={csrf}&customer={customer}");
        let reply = safe(
            &mut admin,
            request(
                &Method::POST,
                "/admin/customers/reset",
                Some(b"application/x-www-form-urlencoded"),
                body.into_bytes(),
            ),
        )
        .await;
        assert!(
            matches!(reply.status.as_u16(), 400 | 404),
            "{customer:.40}: {}",
            reply.status
        );
    }
    // A customer's session and token on the administrator's forms.
    let mut alice = setup.alice.clone();
    let body = format!("csrf={}&mfa_enabled=on", setup.alice_csrf);
    let reply = safe(
        &mut alice,
        request(
            &Method::POST,
            "/admin/settings",
            Some(b"application/x-www-form-urlencoded"),
            body.into_bytes(),
        ),
    )
    .await;
    assert_eq!(reply.status, 403);
    // The visitor's own token with credentials that cannot be an account's.
    let mut visitor = setup.anonymous.clone();
    let long_email = format!("{}@acme.test", "a".repeat(300));
    let long_password = "p".repeat(2_000);
    for (email, password) in [
        ("", ""),
        (long_email.as_str(), "x"),
        ("alice%40acme.test", long_password.as_str()),
    ] {
        let body = format!(
            "csrf={}&email={email}&password={password}",
            setup.anonymous_csrf
        );
        let reply = safe(
            &mut visitor,
            request(
                &Method::POST,
                "/signin",
                Some(b"application/x-www-form-urlencoded"),
                body.into_bytes(),
            ),
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    assert_eq!(snapshot(&t).await, before);
}

#[tokio::test]
async fn hostile_paths_headers_and_methods() {
    let t = common::sqlite().await;
    let setup = setup(&t).await;
    let before = snapshot(&t).await;
    let deep = format!("/{}", "a/".repeat(10_000));
    let long = format!("/admin/{}", "%41".repeat(20_000));
    let paths = [
        "//admin",
        "/admin/../admin/settings",
        "/%2e%2e/admin",
        "/admin%2Fsettings",
        "/static/../Cargo.toml",
        "/static/%2e%2e/src/main.rs",
        "/static/app.js%00.png",
        "/static/",
        "/signin/",
        "/account;jsessionid=1",
        "/api",
        "/api/",
        "/api/me/",
        "/api/session/../admin/mfa",
        "/api/admin/customers/%FF/mfa",
        "/api/admin/customers/alice%40acme.test/mfa/reset/",
        "/api/admin/audit?customer=%FF&limit=-1",
        "/api/admin/audit?limit=99999999999999999999",
        "/signin?email=<script>&csrf=x",
        "/admin?x=%FF%FE",
        "/%00",
        "/%FF",
        "/\u{1F600}",
        deep.as_str(),
        long.as_str(),
    ];
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::TRACE,
        Method::from_bytes(b"FOO").unwrap(),
    ];
    for client in [&setup.alice, &setup.bob, &setup.admin, &setup.anonymous] {
        let mut client = client.clone();
        for path in paths {
            for method in &methods {
                let Ok(uri) = path.parse::<axum::http::Uri>() else {
                    continue;
                };
                let request = Request::builder()
                    .method(method.clone())
                    .uri(uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"enabled":false}"#))
                    .unwrap();
                safe(&mut client, request).await;
            }
        }
        // Every route under the methods it does not take.
        let routes = routes();
        for (_, path) in &routes {
            let taken: Vec<&Method> = routes
                .iter()
                .filter(|(_, other)| other == path)
                .map(|(method, _)| method)
                .collect();
            for method in &methods {
                if taken.contains(&method)
                    || (*method == Method::HEAD && taken.contains(&&Method::GET))
                {
                    continue;
                }
                let reply = safe(
                    &mut client,
                    request(method, path, Some(b"application/json"), b"{}".to_vec()),
                )
                .await;
                assert!(
                    matches!(reply.status.as_u16(), 404 | 405),
                    "{method} {path}: {}",
                    reply.status
                );
            }
        }
        // Odd headers on the pages and the API.
        for path in ["/account", "/admin", "/mfa/setup", "/api/me", "/api/mfa"] {
            for (name, value) in [
                ("accept", &b"*/*;q=\xff"[..]),
                ("x-forwarded-for", &b"127.0.0.1, ::1, \x80garbage"[..]),
                ("host", &b"evil.example"[..]),
                ("origin", &b"https://evil.example"[..]),
                ("referer", &b"\xff\xfe"[..]),
                ("content-length", &b"-1"[..]),
                ("content-type", &b"\xff"[..]),
                ("transfer-encoding", &b"chunked, gzip"[..]),
            ] {
                let mut request = request(&Method::GET, path, None, Vec::new());
                request.headers_mut().insert(
                    axum::http::HeaderName::from_static(name),
                    HeaderValue::from_bytes(value).unwrap(),
                );
                safe(&mut client, request).await;
            }
            let mut request = request(&Method::GET, path, None, Vec::new());
            request.headers_mut().insert(
                "x-huge",
                HeaderValue::from_bytes(&vec![b'h'; 64 * 1024]).unwrap(),
            );
            safe(&mut client, request).await;
        }
    }
    assert_eq!(snapshot(&t).await, before);
}
