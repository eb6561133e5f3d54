//! The HTML pages as a browser uses them: the forms with their CSRF tokens, the redirects between
//! the steps of a sign-in, the element ids the browser test drives, the cookies and the security
//! headers.

mod common;

use common::{ALICE, Client, TestPortal};
use mfa_core::{OrgId, Store, uri::KeyUri};
use serde_json::json;

/// The ids the pages promise (the README lists them for browser tests).
#[track_caller]
fn has_ids(html: &str, ids: &[&str]) {
    for id in ids {
        assert!(
            html.contains(&format!(r#"id="{id}""#)),
            "no #{id} in {html}"
        );
    }
}

async fn form_sign_in(client: &mut Client, email: &str, password: &str) -> common::Reply {
    let page = client.get("/signin").await;
    page.expect(200, None);
    let csrf = page.csrf();
    client
        .form(
            "/signin",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
}

/// The administrator switched MFA on and alice set it up: their browsers, and her key.
async fn alice_configured<S: Store + 'static>(t: &TestPortal<S>) -> (Client, Client, KeyUri) {
    let admin = t.admin_switches_mfa_on().await;
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
    (admin, alice, uri)
}

async fn enabled<S: Store + 'static>(t: &TestPortal<S>) -> bool {
    t.portal
        .service()
        .org_policy(&OrgId::new("acme").unwrap())
        .await
        .unwrap()
        .enabled()
}

#[tokio::test]
async fn a_customer_and_an_administrator_click_through() {
    let t = common::sqlite().await;

    // The sign-in page, with a cookie for its CSRF token, and no session.
    let mut admin = t.client();
    let page = admin.get("/signin").await;
    page.expect(200, None);
    has_ids(
        &page.text(),
        &["email", "password", "sign-in", "demo-accounts"],
    );
    let cookie = page.header("set-cookie").unwrap().to_owned();
    assert!(cookie.starts_with("portal_signin="), "{cookie}");
    assert!(
        cookie.contains("; Path=/; HttpOnly; SameSite=Strict"),
        "{cookie}"
    );
    assert!(admin.cookie().is_none(), "the sign-in form is no session");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.header("strict-transport-security").is_none());
    assert!(!page.text().contains("<script>"), "no inline script");
    assert!(!page.text().contains("style="), "no inline style");

    // The administrator signs in with the form and gets a session.
    let reply = form_sign_in(&mut admin, "ADMIN@acme.test ", "admin-pass").await;
    reply.expect(303, None);
    assert_eq!(reply.location(), Some("/admin"));
    assert!(admin.cookie().is_some());
    let page = admin.get("/admin").await;
    page.expect(200, None);
    let html = page.text();
    has_ids(
        &html,
        &[
            "mfa-enabled",
            "save",
            "customers",
            "customer-alice-acme-test",
            "reset-alice-acme-test",
            "reset-bob-acme-test",
            "audit",
            "sign-out",
        ],
    );
    assert!(html.contains("Enable multi-factor authentication (MFA)"));
    assert!(html.contains("Reset Portal MFA"));
    assert!(!html.contains(r#"value="on" checked"#));
    let csrf = page.csrf();
    // A wrong token changes nothing.
    admin
        .form(
            "/admin/settings",
            &[("csrf", "forged"), ("mfa_enabled", "on")],
        )
        .await
        .expect(403, None);
    assert!(!enabled(&t).await);
    let reply = admin
        .form("/admin/settings", &[("csrf", &csrf), ("mfa_enabled", "on")])
        .await;
    reply.expect(303, None);
    assert_eq!(reply.location(), Some("/admin"));
    assert!(enabled(&t).await);
    let html = admin.get("/admin").await.text();
    assert!(html.contains(r#"value="on" checked"#), "{html}");
    assert!(html.contains(r#"id="flash""#) && html.contains("MFA is on"));
    assert!(
        !admin.get("/admin").await.text().contains(r#"id="flash""#),
        "shown once"
    );

    // Alice signs in: the set-up, then the account.
    let mut alice = t.client();
    let reply = form_sign_in(&mut alice, ALICE, "alice-pass").await;
    reply.expect(303, None);
    assert_eq!(reply.location(), Some("/mfa/setup"));
    for path in ["/account", "/mfa/verify", "/"] {
        let reply = alice.get(path).await;
        reply.expect(303, None);
        assert_eq!(reply.location(), Some("/mfa/setup"), "{path}");
    }
    alice.get("/admin").await.expect(403, None);
    let page = alice.get("/mfa/setup").await;
    page.expect(200, None);
    let html = page.text();
    assert!(html.contains("Enable MFA for your account"));
    has_ids(
        &html,
        &[
            "configure",
            "step-scan",
            "qr",
            "secret",
            "next",
            "code",
            "verify",
            "step-enabled",
            "generate-backup-codes",
            "backup-codes",
            "download",
            "copy",
            "continue",
        ],
    );
    for label in [
        "Configure",
        ">Next<",
        ">Verify<",
        "Generate Backup Codes",
        ">Download<",
        ">Copy<",
        "Continue to Sign In",
    ] {
        assert!(html.contains(label), "{label}");
    }
    // What the script does on that page.
    let started = alice.post("/api/mfa/enrollment", &json!({})).await;
    started.expect(201, None);
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
    let page = alice.get("/account").await;
    page.expect(200, None);
    let html = page.text();
    has_ids(
        &html,
        &[
            "account-email",
            "mfa-state",
            "backup-codes-remaining",
            "generate-backup-codes",
            "sign-out",
        ],
    );
    assert!(html.contains(r#"<dd id="mfa-state">On</dd>"#), "{html}");
    assert!(html.contains(r#"<dd id="backup-codes-remaining">5</dd>"#));
    // The set-up is done: its page sends her to the account.
    let reply = alice.get("/mfa/setup").await;
    assert_eq!(reply.location(), Some("/account"));

    // Signing out, with the form's token.
    let csrf = page.csrf();
    alice
        .form("/signout", &[("csrf", "wrong")])
        .await
        .expect(403, None);
    alice.get("/account").await.expect(200, None);
    let reply = alice.form("/signout", &[("csrf", &csrf)]).await;
    reply.expect(303, None);
    assert_eq!(reply.location(), Some("/signin"));
    let reply = alice.get("/account").await;
    assert_eq!(reply.location(), Some("/signin"));
    assert!(
        alice
            .get("/signin")
            .await
            .text()
            .contains("You have signed out.")
    );

    // Signing in again: the code prompt, with "use a backup code instead".
    let reply = form_sign_in(&mut alice, ALICE, "alice-pass").await;
    assert_eq!(reply.location(), Some("/mfa/verify"));
    let page = alice.get("/mfa/verify").await;
    page.expect(200, None);
    let html = page.text();
    has_ids(
        &html,
        &[
            "code",
            "verify",
            "use-backup-code",
            "backup-code",
            "verify-backup",
            "use-code",
            "error",
        ],
    );
    assert!(html.contains("Use a backup code instead"));
    assert_eq!(
        alice.get("/mfa/setup").await.location(),
        Some("/mfa/verify")
    );
    t.clock.advance(30);
    alice
        .post("/api/mfa/verify", &json!({"code": t.code(&uri)}))
        .await
        .expect(200, None);
    alice.get("/account").await.expect(200, None);

    // The administrator resets her with the button's form.
    let page = admin.get("/admin").await;
    assert!(page.text().contains(r#"data-state="configured""#));
    let csrf = page.csrf();
    admin
        .form(
            "/admin/customers/reset",
            &[("csrf", &csrf), ("customer", "mallory@acme.test")],
        )
        .await
        .expect(404, None);
    let reply = admin
        .form(
            "/admin/customers/reset",
            &[("csrf", &csrf), ("customer", ALICE)],
        )
        .await;
    reply.expect(303, None);
    let html = admin.get("/admin").await.text();
    assert!(html.contains("MFA was reset for alice@acme.test"));
    assert!(
        html.contains(r#"<code>reset</code>"#),
        "the audit log shows it"
    );
    let mut alice = t.client();
    let reply = form_sign_in(&mut alice, ALICE, "alice-pass").await;
    assert_eq!(reply.location(), Some("/mfa/setup"));
}

#[tokio::test]
async fn the_sign_in_form_needs_its_token() {
    let t = common::sqlite().await;
    let mut client = t.client();
    // No session at all (a cross-site post, or a form from yesterday): refused, with a fresh form.
    let reply = client
        .form(
            "/signin",
            &[("csrf", ""), ("email", ALICE), ("password", "alice-pass")],
        )
        .await;
    reply.expect(403, None);
    assert!(reply.text().contains("expired"));
    let fresh = reply.csrf();
    assert!(!fresh.is_empty());
    // Another session's token: refused too.
    let mut other = t.client();
    let foreign = other.get("/signin").await.csrf();
    let reply = client
        .form(
            "/signin",
            &[
                ("csrf", &foreign),
                ("email", ALICE),
                ("password", "alice-pass"),
            ],
        )
        .await;
    reply.expect(403, None);
    let fresh = reply.csrf();
    assert_eq!(client.get("/api/me").await.status, 401);
    // Its own: in.
    let reply = client
        .form(
            "/signin",
            &[
                ("csrf", &fresh),
                ("email", ALICE),
                ("password", "alice-pass"),
            ],
        )
        .await;
    reply.expect(303, None);
    assert_eq!(client.get("/api/me").await.status, 200);
    // A wrong password re-renders the form with the email kept, and no session.
    let mut client = t.client();
    let reply = form_sign_in(&mut client, ALICE, "wrong").await;
    reply.expect(401, None);
    assert!(reply.text().contains("Wrong email or password."));
    assert!(reply.text().contains(r#"value="alice@acme.test""#));
    assert_eq!(client.get("/api/me").await.status, 401);
}

#[tokio::test]
async fn wrong_passwords_make_the_next_sign_in_wait() {
    let t = common::sqlite().await;
    let mut client = t.client();
    for _ in 0..5 {
        client
            .post(
                "/api/session",
                &json!({"email": ALICE, "password": "guess"}),
            )
            .await
            .expect(401, Some("unauthenticated"));
    }
    // Even the right password waits now; so does the form.
    let reply = client
        .post(
            "/api/session",
            &json!({"email": ALICE, "password": "alice-pass"}),
        )
        .await;
    reply.expect(429, Some("locked"));
    assert_eq!(reply.header("retry-after"), Some("30"));
    let reply = form_sign_in(&mut client, ALICE, "alice-pass").await;
    reply.expect(429, None);
    assert!(reply.text().contains("Try again in 30 seconds"));
    // Other accounts are not held up.
    assert_eq!(t.client().sign_in(common::BOB, "bob-pass").await, "done");
    t.clock.advance(30);
    assert_eq!(t.client().sign_in(ALICE, "alice-pass").await, "done");
}

#[tokio::test]
async fn a_pending_session_goes_in_once_mfa_is_switched_off() {
    let t = common::sqlite().await;
    let mut admin = t.client();
    admin.sign_in(common::ADMIN, "admin-pass").await;
    let set = |enabled: bool| json!({ "enabled": enabled });
    admin
        .json(axum::http::Method::PUT, "/api/admin/mfa", &set(true))
        .await
        .expect(200, None);
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "enroll");
    let pending = alice.cookie().unwrap().to_owned();
    admin
        .json(axum::http::Method::PUT, "/api/admin/mfa", &set(false))
        .await
        .expect(200, None);
    // Nothing to enroll in any more, and nothing configured: straight in, with a new session id.
    let reply = alice.get("/mfa/setup").await;
    reply.expect(303, None);
    assert_eq!(reply.location(), Some("/account"));
    assert_ne!(alice.cookie().unwrap(), pending);
    assert_eq!(alice.get("/api/me").await.status, 200);
}

#[tokio::test]
async fn sessions_end_when_idle() {
    let t = common::sqlite().await;
    let mut bob = t.client();
    assert_eq!(bob.sign_in(common::BOB, "bob-pass").await, "done");
    t.clock.advance(29 * 60);
    assert_eq!(bob.get("/api/me").await.status, 200);
    t.clock.advance(29 * 60);
    assert_eq!(
        bob.get("/api/me").await.status,
        200,
        "each use restarts the wait"
    );
    t.clock.advance(30 * 60);
    assert_eq!(bob.get("/api/me").await.status, 401);
    assert_eq!(bob.get("/account").await.location(), Some("/signin"));
}

#[tokio::test]
async fn behind_tls_the_cookie_is_secure_and_host_only() {
    let mut config = common::config();
    config.secure = true;
    let t = common::sqlite_with(config).await;
    let mut client = t.client();
    let page = client.get("/signin").await;
    let cookie = page.header("set-cookie").unwrap().to_owned();
    assert!(cookie.starts_with("__Host-portal_signin="), "{cookie}");
    assert!(
        cookie.contains("; Path=/; HttpOnly; SameSite=Strict; Secure"),
        "{cookie}"
    );
    assert!(page.header("strict-transport-security").is_some());
    // The form works with its __Host- cookie only: the plain name means nothing to this portal.
    let csrf = page.csrf();
    let value = client
        .cookie_named("__Host-portal_signin")
        .unwrap()
        .to_owned();
    let mut plain = t.client();
    plain.set_cookie_named("portal_signin", Some(value));
    plain
        .form(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", common::BOB),
                ("password", "bob-pass"),
            ],
        )
        .await
        .expect(403, None);
    let reply = client
        .form(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", common::BOB),
                ("password", "bob-pass"),
            ],
        )
        .await;
    reply.expect(303, None);
    let signed_in = reply.header("set-cookie").unwrap();
    assert!(
        signed_in.starts_with("__Host-portal_session="),
        "{signed_in}"
    );
    assert!(signed_in.contains("; Secure"), "{signed_in}");
    // So is the session's.
    let id = client
        .cookie_named("__Host-portal_session")
        .unwrap()
        .to_owned();
    let mut plain = t.client();
    plain.set_cookie_named("portal_session", Some(id.clone()));
    assert_eq!(plain.get("/api/me").await.status, 401);
    let mut host = t.client();
    host.set_cookie_named("__Host-portal_session", Some(id));
    assert_eq!(host.get("/api/me").await.status, 200);
}

#[tokio::test]
async fn static_assets_and_unknown_paths() {
    let t = common::sqlite().await;
    let mut client = t.client();
    let script = client.get("/static/app.js").await;
    script.expect(200, None);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(script.text().contains("/mfa/enrollment/confirm"));
    let style = client.get("/static/style.css").await;
    style.expect(200, None);
    assert_eq!(
        style.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    let page = client.get("/no/such/page").await;
    page.expect(404, None);
    assert!(page.text().contains("Page not found"));
    client
        .get("/api/no/such/route")
        .await
        .expect(404, Some("not_found"));
    client
        .get("/api/session")
        .await
        .expect(405, Some("method_not_allowed"));
    let document = client.get("/api/openapi.json").await;
    document.expect(200, None);
    assert_eq!(document.json()["servers"][0]["url"], "/api");
    assert_eq!(client.get("/").await.location(), Some("/signin"));
}

#[tokio::test]
async fn it_serves_over_a_real_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = common::sqlite().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, t.app.clone()).into_future());
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /signin HTTP/1.1\r\nHost: portal\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("id=\"sign-in\""));
    server.abort();
}

/// Finding 8: a session that signed in while no MFA was required is asked for it, on the pages and
/// on `/api/me`, as soon as the organisation switches MFA on (it used to keep full access for up
/// to 12 hours).
#[tokio::test]
async fn a_no_mfa_session_is_sent_to_set_up_once_mfa_is_switched_on() {
    let t = common::sqlite().await;
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "done");
    assert_eq!(alice.get("/api/me").await.status, 200);
    let _admin = t.admin_switches_mfa_on().await;
    alice
        .get("/api/me")
        .await
        .expect(401, Some("unauthenticated"));
    let account = alice.get("/account").await;
    account.expect(303, None);
    assert_eq!(account.location(), Some("/mfa/setup"));
    alice.get("/mfa/setup").await.expect(200, None);
}

/// Finding 2: an administrator's reset ends every session of the customer, the thief's included:
/// it can no longer see the account nor enroll an authenticator of its own, and the customer,
/// signing in again, can.
#[tokio::test]
async fn a_reset_ends_the_customers_sessions_in_the_portal() {
    let t = common::sqlite().await;
    let (mut admin, mut alice, uri) = alice_configured(&t).await;
    // The thief has the password and a code from the stolen phone.
    t.clock.advance(30);
    let mut thief = t.client();
    assert_eq!(thief.sign_in(ALICE, "alice-pass").await, "verify");
    thief
        .post("/api/mfa/verify", &json!({"code": t.code(&uri)}))
        .await
        .expect(200, None);
    assert_eq!(thief.get("/api/me").await.status, 200);

    admin
        .post(
            "/api/admin/customers/alice%40acme.test/mfa/reset",
            &json!({}),
        )
        .await
        .expect(200, None);
    thief
        .get("/api/me")
        .await
        .expect(401, Some("session_ended"));
    // The portal dropped the session: the cookie names nothing any more.
    thief
        .post("/api/mfa/enrollment", &json!({}))
        .await
        .expect(401, Some("unauthenticated"));
    let page = alice.get("/account").await;
    page.expect(303, None);
    assert_eq!(page.location(), Some("/signin"));
    // A session that meets its end on mfa-http's routes is dropped too (N3): a second thief
    // session, signed in before the reset, asks /api/mfa first.
    let mut second = t.client();
    assert_eq!(second.sign_in(ALICE, "alice-pass").await, "enroll");
    admin
        .post(
            "/api/admin/customers/alice%40acme.test/mfa/reset",
            &json!({}),
        )
        .await
        .expect(200, None);
    let ended = second.get("/api/mfa").await;
    ended.expect(401, Some("session_ended"));
    // Its MFA is forgotten (the session and cookie stay: see the double-submit test below), so
    // it is signed in to nothing, and the next page removes it.
    second
        .post("/api/mfa/enrollment", &json!({}))
        .await
        .expect(401, Some("unauthenticated"));
    assert_eq!(second.get("/account").await.location(), Some("/signin"));
    assert!(
        t.portal
            .sessions()
            .signed_in()
            .iter()
            .all(|user| user.email.as_str() != ALICE),
        "no session of alice is left"
    );
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "enroll");
    alice
        .post("/api/mfa/enrollment", &json!({}))
        .await
        .expect(201, None);
}

#[tokio::test]
async fn concurrent_guesses_get_no_more_password_checks_than_the_lockout_allows() {
    // 40 sign-ins for one email at once, the right password 36th: the throttle counts each attempt
    // as it starts, so only the lockout's free failures reach the (slow) password check, and the
    // rest, the right password too, must wait.
    let t = common::sqlite().await;
    let free = usize::try_from(t.portal.config().password_lockout.free_failures).unwrap();
    let right = 35;
    let requests: Vec<_> = (0..40)
        .map(|n| {
            let mut client = t.client();
            let password = if n == right { "alice-pass" } else { "guess" };
            Box::pin(async move {
                client
                    .post(
                        "/api/session",
                        &json!({"email": ALICE, "password": password}),
                    )
                    .await
            })
        })
        .collect();
    let replies = common::join_in_order(requests).await;
    let statuses: Vec<u16> = replies.iter().map(|reply| reply.status.as_u16()).collect();
    let checked = statuses.iter().filter(|&&status| status != 429).count();
    assert!(
        checked <= free,
        "{checked} passwords were checked, {free} allowed: {statuses:?}"
    );
    assert_eq!(statuses[..free], vec![401; free], "{statuses:?}");
    replies[right].expect(429, Some("locked"));
    assert_eq!(replies[right].header("retry-after"), Some("30"));
    // Once the wait is over, the right password goes in and clears the count.
    t.clock.advance(30);
    assert_eq!(t.client().sign_in(ALICE, "alice-pass").await, "done");
}

#[tokio::test]
async fn sign_in_forms_keep_no_session_so_a_burst_evicts_nobody() {
    let mut config = common::config();
    config.sessions.max_sessions = 4;
    let t = common::sqlite_with(config).await;
    let mut bob = t.client();
    assert_eq!(bob.sign_in(common::BOB, "bob-pass").await, "done");
    // A visitor loads the form, then a crowd (or a script) loads it far more often than the store
    // could hold sessions.
    let mut early = t.client();
    let csrf = early.get("/signin").await.csrf();
    let before = t.portal.sessions().len();
    for n in 0..50 {
        let mut visitor = t.client();
        visitor.get("/signin").await.expect(200, None);
        // Posting it with a wrong password stores nothing either.
        let csrf = visitor.get("/signin").await.csrf();
        let email = format!("visitor{n}@acme.test");
        visitor
            .form("/signin", &[("csrf", &csrf), ("email", &email)])
            .await
            .expect(401, None);
    }
    assert_eq!(
        t.portal.sessions().len(),
        before,
        "an anonymous sign-in form is no session"
    );
    // The early visitor's form still signs in, and Bob is still signed in.
    let reply = early
        .form(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", ALICE),
                ("password", "alice-pass"),
            ],
        )
        .await;
    reply.expect(303, None);
    assert_eq!(early.get("/api/me").await.status, 200);
    assert_eq!(bob.get("/api/me").await.status, 200);
}

/// A customer whose stored MFA record cannot be read is an error page that says so (500 `corrupt`,
/// not the 503 "try again" of an outage), on every route that reads it, logged once a request with
/// the organisation and the customer; nobody gets in with it, and nothing is written over it.
#[tokio::test]
async fn a_corrupt_record_is_a_500_that_says_so_and_lets_no_one_in() {
    let t = common::sqlite().await;
    let logs = mfa_store_tests::Logs::capture();
    let (mut admin, mut alice, uri) = alice_configured(&t).await;
    t.clock.advance(30);

    let garbage = [2_u8, 0xFF, 0xFF, 0xFF];
    let db = rusqlite::Connection::open(t.cleanup.dir().join("portal.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE customers SET record = ?1 WHERE org = 'acme' AND customer = ?2",
            rusqlite::params![&garbage[..], ALICE],
        )
        .unwrap();
    assert_eq!(changed, 1);
    logs.clear();

    // The session she holds: the JSON route and the pages.
    alice.get("/api/me").await.expect(500, Some("corrupt"));
    assert_eq!(
        logs.errors_naming(&["org=acme", ALICE]),
        1,
        "{}",
        logs.text()
    );
    let page = alice.get("/account").await;
    page.expect(500, None);
    assert!(page.text().contains("cannot be read"), "{}", page.text());
    assert!(page.header("retry-after").is_none());

    // A fresh sign-in, by the form and by the JSON API, with her password and a valid code.
    logs.clear();
    let mut thief = t.client();
    let page = form_sign_in(&mut thief, ALICE, "alice-pass").await;
    page.expect(500, None);
    assert!(page.text().contains("cannot be read"), "{}", page.text());
    assert_eq!(
        logs.errors_naming(&["org=acme", ALICE]),
        1,
        "{}",
        logs.text()
    );
    let reply = thief
        .post(
            "/api/session",
            &json!({"email": ALICE, "password": "alice-pass"}),
        )
        .await;
    reply.expect(500, Some("corrupt"));
    thief
        .post("/api/mfa/verify", &json!({"code": t.code(&uri)}))
        .await
        .expect(401, None);
    assert!(
        !logs.text().contains("255"),
        "never the bytes: {}",
        logs.text()
    );

    // The administrator's page still serves every other customer, and says which row is wrong.
    logs.clear();
    let page = admin.get("/admin").await;
    page.expect(200, None);
    let html = page.text();
    assert!(
        html.contains(
            r#"data-customer="alice@acme.test">
<td>alice@acme.test</td>
<td class="state" data-state="corrupt">"#
        ),
        "{html}"
    );
    assert!(html.contains(r#"id="reset-bob-acme-test""#), "{html}");
    assert_eq!(
        logs.errors_naming(&["org=acme", ALICE]),
        1,
        "{}",
        logs.text()
    );

    let stored: Vec<u8> = db
        .query_row(
            "SELECT record FROM customers WHERE org = 'acme' AND customer = ?1",
            [ALICE],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, garbage, "nothing was written over the record");
}

/// The payment method page: the form while the sign-in code is fresh; past the step-up age,
/// "Confirm it's you" first, a fresh code without signing out, then the form again. The JSON route
/// behind the form refuses a stale session as the page does, and cards that fail their check.
#[tokio::test]
async fn changing_the_card_needs_a_fresh_code() {
    let t = common::sqlite().await;
    let (_, mut alice, uri) = alice_configured(&t).await;
    let account = alice.get("/account").await;
    account.expect(200, None);
    has_ids(
        &account.text(),
        &[
            "payment-method-link",
            "step-up",
            "step-up-code",
            "step-up-verify",
        ],
    );

    let page = alice.get("/billing/payment-method").await;
    page.expect(200, None);
    has_ids(
        &page.text(),
        &["card-on-file", "card-number", "card-expiry", "save-card"],
    );
    assert!(
        !page.text().contains(r#"id="step-up""#),
        "fresh: no step-up"
    );
    let card = json!({"card_number": "4242 4242 4242 4242", "expiry": "12/30"});
    let saved = alice.post("/api/billing/payment-method", &card).await;
    saved.expect(200, None);
    assert_eq!(saved.json(), json!({"card": "ending in 4242"}));
    for bad in [
        json!({"card_number": "4242 4242 4242 4241", "expiry": "12/30"}),
        json!({"card_number": "4242", "expiry": "12/30"}),
        json!({"card_number": "4242 4242 4242 4242", "expiry": "13/30"}),
        json!({"card_number": "4242 4242 4242 4242", "expiry": "1230"}),
        json!({"card_number": "４２４２４２４２４２４２４２４２", "expiry": "12/30"}),
        json!({"card_number": "4242 4242 4242 4242"}),
    ] {
        alice
            .post("/api/billing/payment-method", &bad)
            .await
            .expect(422, Some("invalid_body"));
    }

    // Eleven minutes on: the page asks for a code, the route refuses, the session stays.
    t.clock.advance(11 * 60);
    let stale = alice.get("/billing/payment-method").await;
    stale.expect(200, None);
    has_ids(
        &stale.text(),
        &["step-up", "step-up-code", "step-up-verify", "step-up-error"],
    );
    assert!(stale.text().contains(r#"data-purpose="payment_method""#));
    assert!(!stale.text().contains(r#"id="card-number""#));
    alice
        .post("/api/billing/payment-method", &card)
        .await
        .expect(403, Some("step_up_required"));
    alice.get("/account").await.expect(200, None);

    // The fresh code, through mfa-http's route under /api: the form comes back. The session got a
    // new id, and the page that stays open gets its new CSRF token (for Sign out).
    let stepped = alice
        .post(
            "/api/mfa/step-up",
            &json!({"purpose": "payment_method", "code": t.code(&uri)}),
        )
        .await;
    stepped.expect(200, None);
    let token = stepped.header("x-csrf-token").unwrap().to_owned();
    let fresh = alice.get("/billing/payment-method").await;
    assert_eq!(
        fresh.csrf(),
        token,
        "the forms' token is the one the answer gave"
    );
    assert!(fresh.text().contains(r#"id="card-number""#));
    assert!(
        fresh.text().contains("ending in 4242"),
        "the card on file is shown"
    );
    alice
        .post("/api/billing/payment-method", &card)
        .await
        .expect(200, None);

    // Signed out, the route is closed.
    let mut stranger = t.client();
    stranger
        .post("/api/billing/payment-method", &card)
        .await
        .expect(401, Some("unauthenticated"));
    assert_eq!(
        stranger.get("/billing/payment-method").await.location(),
        Some("/signin")
    );
}

/// The administrator sets how fresh a code must be; out-of-range values are refused unchanged.
#[tokio::test]
async fn the_administrator_sets_the_step_up_age() {
    let t = common::sqlite().await;
    let mut admin = t.admin_switches_mfa_on().await;
    let page = admin.get("/admin").await;
    has_ids(&page.text(), &["step-up-minutes"]);
    assert!(
        page.text().contains(r#"value="10""#),
        "ten minutes by default"
    );
    let age = |t: &TestPortal<_>| {
        let service = std::sync::Arc::clone(t.portal.service());
        async move {
            service
                .org_policy(&OrgId::new("acme").unwrap())
                .await
                .unwrap()
                .settings()
                .step_up_max_age_secs
        }
    };
    for bad in ["0", "1441", "ten", "-5", ""] {
        let csrf = admin.get("/admin").await.csrf();
        admin
            .form(
                "/admin/settings",
                &[
                    ("csrf", &csrf),
                    ("mfa_enabled", "on"),
                    ("step_up_minutes", bad),
                ],
            )
            .await
            .expect(422, None);
        assert_eq!(age(&t).await, 600, "{bad:?} changed nothing");
    }
    let csrf = admin.get("/admin").await.csrf();
    admin
        .form(
            "/admin/settings",
            &[
                ("csrf", &csrf),
                ("mfa_enabled", "on"),
                ("step_up_minutes", "2"),
            ],
        )
        .await
        .expect(303, None);
    assert_eq!(age(&t).await, 120);
    assert!(enabled(&t).await);
}

/// The account page offers a new set of backup codes when one or none is left, and after a sign-in
/// with one; the set-up page no longer lets a customer skip saving them.
#[tokio::test]
async fn the_account_page_says_when_to_make_new_backup_codes() {
    let t = common::sqlite().await;
    let (_, mut alice, _) = alice_configured(&t).await;
    let mut bob = t.client();
    assert_eq!(bob.sign_in(common::BOB, "bob-pass").await, "enroll");
    let setup_page = bob.get("/mfa/setup").await;
    setup_page.expect(200, None);
    has_ids(
        &setup_page.text(),
        &["generate-backup-codes", "codes-saved", "continue"],
    );
    assert!(
        !setup_page.text().contains(r#"id="skip""#),
        "no skipping the codes"
    );
    assert!(
        setup_page
            .text()
            .contains(r#"id="continue" class="primary" disabled"#)
    );
    let account = alice.get("/account").await;
    has_ids(&account.text(), &["backup-codes-low"]);
    assert!(account.text().contains("You have no backup codes."));
    let codes = alice.post("/api/mfa/backup-codes", &json!({})).await;
    codes.expect(201, None);
    let codes: Vec<String> = serde_json::from_value(codes.json()["codes"].clone()).unwrap();
    let account = alice.get("/account").await;
    assert!(!account.text().contains(r#"id="backup-codes-low""#));
    assert!(!account.text().contains(r#"id="renew-backup-codes""#));

    // Signed in again with a backup code: the offer, whatever is left.
    let mut again = t.client();
    assert_eq!(again.sign_in(ALICE, "alice-pass").await, "verify");
    let verified = again
        .post("/api/mfa/verify", &json!({"backup_code": codes[0]}))
        .await;
    verified.expect(200, None);
    assert_eq!(verified.json()["suggest_new_backup_codes"], true);
    let account = again.get("/account").await;
    has_ids(&account.text(), &["renew-backup-codes"]);
}

/// A confirmation sent twice at once (a double submit, a retrying client): one wins and the
/// customer stays signed in with the new authenticator; the copy refused because the other won
/// must not take the session away from under the winner (the attack on the replacement found
/// exactly that: no 200 at all, and the session gone, after a successful swap).
#[tokio::test]
async fn a_confirmation_sent_twice_keeps_the_winner_signed_in() {
    let t = common::sqlite().await;
    let (_, mut alice, _) = alice_configured(&t).await;
    let started = alice
        .post("/api/mfa/authenticator/replacement", &json!({}))
        .await;
    started.expect(201, None);
    let new = KeyUri::parse(started.json()["otpauth_uri"].as_str().unwrap()).unwrap();
    t.clock.advance(30);
    let body = json!({ "code": t.code(&new) });
    let (mut first, mut second) = (alice.clone(), alice.clone());
    let replies = common::join_in_order(vec![
        Box::pin(async {
            let reply = first
                .post("/api/mfa/authenticator/replacement/confirm", &body)
                .await;
            (reply.status.as_u16(), first)
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>,
        Box::pin(async {
            let reply = second
                .post("/api/mfa/authenticator/replacement/confirm", &body)
                .await;
            (reply.status.as_u16(), second)
        }),
    ])
    .await;
    let statuses: Vec<u16> = replies.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "exactly one wins: {statuses:?}"
    );
    let (_, mut winner) = replies
        .into_iter()
        .find(|(status, _)| *status == 200)
        .unwrap();
    winner.get("/api/me").await.expect(200, None);
    winner.get("/account").await.expect(200, None);
}

/// The interleaving the double submit above can take, made to happen: the winning request has
/// written its change, the losing copy was refused with `session_ended` and the host told, and
/// only then does the winner hand its proof to the host. The host must still take it (it used to
/// have removed the session, so the winner answered 401 after a change it had made).
#[tokio::test]
async fn an_ended_session_refused_while_its_own_change_wins_stays_with_the_winner() {
    use mfa_http::MfaHost as _;
    let t = common::sqlite().await;
    let (_, alice, _) = alice_configured(&t).await;
    let host = portal::sessions::PortalHost::new(
        std::sync::Arc::clone(t.portal.sessions()),
        t.clock.clone(),
    );
    let cookie = format!("portal_session={}", alice.cookie().unwrap());
    let head = || {
        axum::http::Request::builder()
            .header(axum::http::header::COOKIE, cookie.clone())
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let now = mfa_core::Clock::now(&t.clock).as_secs();
    let (_, kept) = t.portal.sessions().lookup(&head().headers, now).unwrap();
    let user = kept.user.unwrap();
    // The winner's change (a new set of backup codes: a change of factor) is written.
    let issued = t
        .portal
        .service()
        .generate_backup_codes(&user.org, &user.email, &user.mfa.unwrap())
        .await
        .unwrap();
    // The loser, refused for a session that ended, hands it to the host.
    host.session_ended(&mut head()).await.unwrap();
    // The winner's proof then arrives, and is kept under a fresh id.
    let headers = host
        .mfa_passed(&mut head(), issued.passed.clone())
        .await
        .unwrap();
    let set_cookie = headers[axum::http::header::SET_COOKIE].to_str().unwrap();
    let id = set_cookie.split(';').next().unwrap().to_owned();
    let mut renewed = axum::http::HeaderMap::new();
    renewed.insert(axum::http::header::COOKIE, id.parse().unwrap());
    let (_, session) = t.portal.sessions().lookup(&renewed, now).unwrap();
    assert_eq!(session.user.unwrap().mfa, Some(issued.passed.session()));
}
