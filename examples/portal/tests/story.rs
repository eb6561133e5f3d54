//! The whole story through the portal's JSON API, on SQLite and on PostgreSQL: MFA off, then on;
//! enrollment forced and `/api/me` refused until it is done; the QR code, the key URI and the
//! grouped key agree; sign-in with a code; the same code refused; a backup code once; MFA off again
//! (Alice still challenged, Bob not); an administrator's reset; lockout; and every step in the audit
//! log.

mod common;

use common::{ADMIN, ALICE, BOB, Client, TestPortal};
use mfa_core::{OrgMfa, Store, otp::Secret, uri::KeyUri};
use serde_json::{Value, json};

async fn admin<S: Store + 'static>(t: &TestPortal<S>) -> Client {
    let mut admin = t.client();
    assert_eq!(admin.sign_in(ADMIN, "admin-pass").await, "done");
    admin
}

/// Switches the organisation's MFA through the JSON API.
async fn set_mfa(admin: &mut Client, switch: OrgMfa) {
    let enabled = switch == OrgMfa::On;
    let reply = admin
        .json(
            axum::http::Method::PUT,
            "/api/admin/mfa",
            &json!({ "enabled": enabled }),
        )
        .await;
    reply.expect(200, None);
    assert_eq!(reply.json()["enabled"], enabled);
}

/// `/api/me` as this client: the email, or the status it was refused with.
async fn me(client: &mut Client) -> Result<String, u16> {
    let reply = client.get("/api/me").await;
    if reply.status == 200 {
        Ok(reply.json()["email"].as_str().unwrap().to_owned())
    } else {
        assert_eq!(reply.status, 401);
        assert_eq!(reply.kind(), "unauthenticated");
        Err(401)
    }
}

/// Starts an enrollment and checks that the QR code, the URI and the grouped key agree.
async fn enroll<S: Store + 'static>(t: &TestPortal<S>, client: &mut Client) -> KeyUri {
    let reply = client.post("/api/mfa/enrollment", &json!({})).await;
    reply.expect(201, None);
    let body = reply.json();
    let text = body["otpauth_uri"].as_str().unwrap();
    let uri = KeyUri::parse(text).unwrap();
    assert_eq!(uri.issuer(), Some("Acme Billing"));
    assert_eq!(uri.account(), ALICE);
    assert!(text.starts_with("otpauth://totp/Acme%20Billing:alice%40acme.test?secret="));
    // The key for typing by hand: grouped, and the same secret as the URI's.
    let grouped = body["secret"].as_str().unwrap();
    assert!(grouped.contains(' '), "grouped for typing: {grouped}");
    assert_eq!(&Secret::from_base32(grouped).unwrap(), uri.secret());
    // The QR code is the URI's: the same SVG as mfa-core renders for that text.
    let svg = body["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    assert_eq!(svg, mfa_core::uri::qr_svg(text).unwrap().as_str());
    let _ = t;
    uri
}

/// The kinds of the organisation's audit events, newest first, and the rejection reasons of
/// Alice's.
async fn audit(admin: &mut Client) -> (Vec<String>, Vec<String>) {
    let all = admin.get("/api/admin/audit?limit=500").await;
    all.expect(200, None);
    let kinds = all.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap().to_owned())
        .collect();
    let alice = admin
        .get("/api/admin/audit?customer=alice%40acme.test&limit=500")
        .await;
    alice.expect(200, None);
    let reasons = alice.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "attempt_rejected")
        .map(|event| event["details"]["reason"].as_str().unwrap().to_owned())
        .collect();
    (kinds, reasons)
}

async fn status(client: &mut Client) -> Value {
    let reply = client.get("/api/mfa").await;
    reply.expect(200, None);
    reply.json()
}

async fn story<S: Store + 'static>(t: &TestPortal<S>) {
    let mut admin = admin(t).await;

    // MFA off: a password is all it takes.
    let mut alice = t.client();
    assert_eq!(me(&mut alice).await, Err(401), "nobody is signed in yet");
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "done");
    assert_eq!(me(&mut alice).await.as_deref(), Ok(ALICE));
    assert_eq!(
        status(&mut alice).await,
        json!({"state": "unconfigured", "org_enabled": false, "backup_codes_remaining": 0, "backup_codes_low": false, "next": "done"})
    );
    alice
        .post("/api/mfa/enrollment", &json!({}))
        .await
        .expect(403, Some("mfa_disabled"));
    // A wrong password, for an account that exists and one that does not.
    for (email, password) in [(ALICE, "bob-pass"), ("mallory@acme.test", "x")] {
        let reply = t
            .client()
            .post(
                "/api/session",
                &json!({"email": email, "password": password}),
            )
            .await;
        reply.expect(401, Some("unauthenticated"));
        assert!(reply.header("set-cookie").is_none());
    }

    // MFA on: enrollment is forced, and /api/me is refused until it is done.
    set_mfa(&mut admin, OrgMfa::On).await;
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "enroll");
    assert_eq!(me(&mut alice).await, Err(401));
    alice
        .post("/api/mfa/backup-codes", &json!({}))
        .await
        .expect(403, Some("mfa_required"));
    let abandoned = enroll(t, &mut alice).await;
    assert_eq!(status(&mut alice).await["state"], "pending");
    // Restarting replaces the secret; the first one no longer confirms.
    let uri = enroll(t, &mut alice).await;
    assert_ne!(abandoned.secret(), uri.secret());
    if t.code(&abandoned) != t.code(&uri) {
        alice
            .post(
                "/api/mfa/enrollment/confirm",
                &json!({"code": t.code(&abandoned)}),
            )
            .await
            .expect(401, Some("invalid_code"));
    }
    alice
        .post(
            "/api/mfa/enrollment/confirm",
            &json!({"code": t.wrong_code(&uri)}),
        )
        .await
        .expect(401, Some("invalid_code"));
    assert_eq!(me(&mut alice).await, Err(401));
    let pending_cookie = alice.cookie().unwrap().to_owned();
    let confirm_code = t.code(&uri);
    let reply = alice
        .post(
            "/api/mfa/enrollment/confirm",
            &json!({"code": confirm_code}),
        )
        .await;
    reply.expect(200, None);
    assert_eq!(reply.json(), json!({"state": "configured"}));
    // The session id changed when MFA passed; the old id is worth nothing.
    assert_ne!(alice.cookie().unwrap(), pending_cookie);
    let mut stale = alice.clone();
    stale.set_cookie(Some(pending_cookie));
    assert_eq!(me(&mut stale).await, Err(401));
    assert_eq!(me(&mut alice).await.as_deref(), Ok(ALICE));
    let reply = alice.post("/api/mfa/backup-codes", &json!({})).await;
    reply.expect(201, None);
    let codes: Vec<String> = reply.json()["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 5);
    assert_eq!(status(&mut alice).await["backup_codes_remaining"], 5);

    // Signing in again takes a code; the one that confirmed the enrollment is spent.
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "verify");
    assert_eq!(me(&mut alice).await, Err(401));
    alice
        .post("/api/mfa/verify", &json!({"code": confirm_code}))
        .await
        .expect(401, Some("invalid_code"));
    t.clock.advance(30);
    let code = t.code(&uri);
    let reply = alice.post("/api/mfa/verify", &json!({"code": code})).await;
    reply.expect(200, None);
    assert_eq!(
        reply.json(),
        json!({"next": "done", "backup_codes_remaining": 5, "suggest_new_backup_codes": false})
    );
    assert_eq!(me(&mut alice).await.as_deref(), Ok(ALICE));

    // The same code again, in a new sign-in: refused.
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "verify");
    alice
        .post("/api/mfa/verify", &json!({"code": code}))
        .await
        .expect(401, Some("invalid_code"));
    assert_eq!(me(&mut alice).await, Err(401));
    // A backup code works, typed loosely, once.
    let loose = codes[0].to_lowercase().replace('-', "");
    let reply = alice
        .post("/api/mfa/verify", &json!({"backup_code": loose}))
        .await;
    reply.expect(200, None);
    assert_eq!(reply.json()["backup_codes_remaining"], 4);
    assert_eq!(me(&mut alice).await.as_deref(), Ok(ALICE));
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "verify");
    alice
        .post("/api/mfa/verify", &json!({"backup_code": codes[0]}))
        .await
        .expect(401, Some("invalid_code"));
    assert_eq!(me(&mut alice).await, Err(401));

    // MFA off again: Alice, who set it up, is still challenged; Bob, who never did, is not.
    set_mfa(&mut admin, OrgMfa::Off).await;
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "verify");
    assert_eq!(me(&mut alice).await, Err(401));
    let mut bob = t.client();
    assert_eq!(bob.sign_in(BOB, "bob-pass").await, "done");
    assert_eq!(me(&mut bob).await.as_deref(), Ok(BOB));
    assert_eq!(
        status(&mut bob).await,
        json!({"state": "unconfigured", "org_enabled": false, "backup_codes_remaining": 0, "backup_codes_low": false, "next": "done"})
    );

    // The administrator resets Alice (lost phone): with MFA off she is straight in; with MFA on
    // she enrolls again.
    let reply = admin
        .post(
            "/api/admin/customers/alice%40acme.test/mfa/reset",
            &json!({}),
        )
        .await;
    reply.expect(200, None);
    assert_eq!(reply.json(), json!({"state": "unconfigured"}));
    let reply = admin
        .get("/api/admin/customers/alice%40acme.test/mfa")
        .await;
    reply.expect(200, None);
    assert_eq!(reply.json()["state"], "unconfigured");
    assert_eq!(reply.json()["backup_codes_remaining"], 0);
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "done");
    set_mfa(&mut admin, OrgMfa::On).await;
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "enroll");
    let uri = enroll(t, &mut alice).await;
    t.clock.advance(30);
    alice
        .post(
            "/api/mfa/enrollment/confirm",
            &json!({"code": t.code(&uri)}),
        )
        .await
        .expect(200, None);
    // A backup code from before the reset is void.
    let mut alice = t.client();
    assert_eq!(alice.sign_in(ALICE, "alice-pass").await, "verify");
    alice
        .post("/api/mfa/verify", &json!({"backup_code": codes[1]}))
        .await
        .expect(401, Some("invalid_code"));

    // Lockout: the fifth failure in a row (the backup code was the first) locks Alice out, and
    // then even the right code waits.
    t.clock.advance(30);
    for _ in 0..4 {
        alice
            .post("/api/mfa/verify", &json!({"code": t.wrong_code(&uri)}))
            .await
            .expect(401, Some("invalid_code"));
    }
    let right = t.code(&uri);
    let reply = alice.post("/api/mfa/verify", &json!({"code": right})).await;
    reply.expect(429, Some("locked"));
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(me(&mut alice).await, Err(401));
    let locked = admin
        .get("/api/admin/customers/alice%40acme.test/mfa")
        .await;
    assert!(locked.json()["locked_until"].is_u64(), "{}", locked.text());
    t.clock.advance(retry);
    let reply = alice
        .post("/api/mfa/verify", &json!({"code": t.code(&uri)}))
        .await;
    reply.expect(200, None);
    assert_eq!(me(&mut alice).await.as_deref(), Ok(ALICE));

    // Every step is in the audit log, newest first, with the real reason of each refusal.
    let (kinds, reasons) = audit(&mut admin).await;
    for kind in [
        "org_settings_changed",
        "org_enabled",
        "org_disabled",
        "enrollment_started",
        "enrollment_confirmed",
        "backup_codes_generated",
        "totp_accepted",
        "backup_code_accepted",
        "attempt_rejected",
        "locked_out",
        "reset",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {kinds:?}");
    }
    assert_eq!(kinds.first().map(String::as_str), Some("totp_accepted"));
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("org_settings_changed")
    );
    for reason in ["wrong_code", "replayed_code", "used_backup_code", "locked"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} missing: {reasons:?}"
        );
    }
    // Customers cannot read it.
    alice
        .get("/api/admin/audit")
        .await
        .expect(403, Some("forbidden"));

    // Signing out ends the session.
    alice
        .send(
            axum::http::Request::delete("/api/session")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .expect(415, Some("unsupported_media_type"));
    assert_eq!(me(&mut alice).await.as_deref(), Ok(ALICE));
    let reply = alice
        .json(axum::http::Method::DELETE, "/api/session", &json!({}))
        .await;
    reply.expect(204, None);
    assert!(alice.cookie().is_none());
    assert_eq!(me(&mut alice).await, Err(401));
}

#[tokio::test]
async fn the_whole_story_on_sqlite() {
    let t = common::sqlite().await;
    story(&t).await;
}

#[tokio::test]
async fn the_whole_story_on_postgres() {
    let Some(t) = common::postgres("story").await else {
        return;
    };
    story(&t).await;
}

#[tokio::test]
async fn a_second_start_keeps_the_data() {
    // The accounts and the organisation are created once; a restart finds them.
    let t = common::sqlite().await;
    let mut admin = admin(&t).await;
    set_mfa(&mut admin, OrgMfa::On).await;
    let common::Cleanup::Dir(dir) = &t.cleanup else {
        unreachable!()
    };
    let path = dir.path().join("portal.db");
    let store = mfa_sqlite::SqliteStore::open(&path).await.unwrap();
    let accounts = portal::accounts::Accounts::sqlite(&path).await.unwrap();
    let keys = mfa_store_tests::fixture::keys();
    let (again, created) =
        portal::Portal::start(store, accounts, t.clock.clone(), keys, common::config())
            .await
            .unwrap();
    assert!(!created);
    assert_eq!(again.accounts().count().await.unwrap(), 3);
    let org = mfa_core::OrgId::new("acme").unwrap();
    assert!(again.service().org_policy(&org).await.unwrap().enabled());
}
