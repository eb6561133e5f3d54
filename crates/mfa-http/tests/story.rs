//! The whole story through the router, with a manual clock: MFA off, then on; enrollment; sign-in
//! codes; replay; backup codes; lockout; an administrator's reset; sticky MFA after the switch goes
//! off; who may call what. Every answer is also checked against the served OpenAPI document.

mod common;

use axum::http::{StatusCode, header};
use common::{ADMIN, ALICE, BOB, Harness, Req, id, org};
use mfa_http::mfa_core::{otp::Secret, uri::KeyUri};
use mfa_http::model::Next;
use mfa_http::{LoginStep, PassedBy};
use serde_json::{Value, json};

/// The `attempt_rejected` reasons in alice's audit log, newest first.
async fn rejections(h: &Harness) -> Vec<String> {
    let reply = h
        .call(Req::get("/admin/audit?customer=alice%40acme.test&limit=500").admin())
        .await;
    reply.expect(200, None);
    reply.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "attempt_rejected")
        .map(|event| event["details"]["reason"].as_str().unwrap().to_owned())
        .collect()
}

async fn step(h: &Harness, customer: &str) -> Next {
    Next::from(&h.api.login_step(&org(), &id(customer)).await.unwrap())
}

async fn enroll(h: &Harness, session: &str) -> KeyUri {
    let reply = h
        .call(
            Req::post("/mfa/enrollment")
                .customer(ALICE, session)
                .empty_json(),
        )
        .await;
    reply.expect(201, None);
    let uri = KeyUri::parse(reply.json["otpauth_uri"].as_str().unwrap()).unwrap();
    // The QR code, the URI and the grouped key all carry the same secret.
    let grouped = reply.json["secret"].as_str().unwrap();
    assert!(grouped.contains(' '), "grouped for typing: {grouped}");
    assert_eq!(&Secret::from_base32(grouped).unwrap(), uri.secret());
    assert_eq!(uri.issuer(), Some("Acme Billing"));
    assert_eq!(uri.account(), ALICE);
    assert!(
        reply.json["qr_svg"]
            .as_str()
            .unwrap()
            .trim_start()
            .starts_with("<?xml")
            || reply.json["qr_svg"].as_str().unwrap().contains("<svg")
    );
    uri
}

fn verify_code(session: &str, code: &str) -> Req {
    Req::post("/mfa/verify")
        .customer(ALICE, session)
        .json(&json!({ "code": code }))
}

fn verify_backup(session: &str, code: &str) -> Req {
    Req::post("/mfa/verify")
        .customer(ALICE, session)
        .json(&json!({ "backup_code": code }))
}

// On a multi-thread runtime, as a server runs: backup-code hashing then leaves the worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_story() {
    let h = Harness::new().await;

    // MFA off, nothing configured: the sign-in is done, with the proof.
    let LoginStep::Done(proof) = h.api.login_step(&org(), &id(ALICE)).await.unwrap() else {
        panic!("no MFA while the organisation has it off");
    };
    assert_eq!(proof.method(), PassedBy::NotRequired);
    let status = h.call(Req::get("/mfa").customer(ALICE, "s1")).await;
    status.expect(200, None);
    assert_eq!(
        status.json,
        json!({"state": "unconfigured", "org_enabled": false, "backup_codes_remaining": 0, "backup_codes_low": false, "next": "done"})
    );
    h.call(
        Req::post("/mfa/enrollment")
            .customer(ALICE, "s1")
            .empty_json(),
    )
    .await
    .expect(403, Some("mfa_disabled"));

    // The administrator switches MFA on.
    h.call(
        Req::put("/admin/mfa")
            .admin()
            .json(&json!({"enabled": true})),
    )
    .await
    .expect(200, None);
    let switch = h.call(Req::get("/admin/mfa").admin()).await;
    assert_eq!(switch.json, json!({"enabled": true}));

    // Alice must enroll; a second start replaces the first secret.
    assert_eq!(step(&h, ALICE).await, Next::Enroll);
    let first = enroll(&h, "s2").await;
    let uri = enroll(&h, "s2").await;
    assert_ne!(first.secret(), uri.secret());
    let pending = h.call(Req::get("/mfa").customer(ALICE, "s2")).await;
    assert_eq!(pending.json["state"], "pending");

    // A wrong code, then the right one: configured, and the host marked the session.
    let wrong = h.wrong_code(&uri);
    h.call(
        Req::post("/mfa/enrollment/confirm")
            .customer(ALICE, "s2")
            .json(&json!({ "code": wrong })),
    )
    .await
    .expect(401, Some("invalid_code"));
    let confirmed = h
        .call(
            Req::post("/mfa/enrollment/confirm")
                .customer(ALICE, "s2")
                .json(&json!({ "code": h.app_code(&uri) })),
        )
        .await;
    confirmed.expect(200, None);
    assert_eq!(confirmed.json, json!({"state": "configured"}));
    assert_eq!(
        confirmed.headers.get(header::SET_COOKIE).unwrap(),
        "sid=s2-mfa; HttpOnly",
        "the host's headers come with the answer"
    );
    assert_eq!(
        h.host
            .proofs()
            .iter()
            .map(|p| p.method())
            .collect::<Vec<_>>(),
        [PassedBy::Enrollment]
    );
    h.call(
        Req::post("/mfa/enrollment")
            .customer(ALICE, "s2")
            .empty_json(),
    )
    .await
    .expect(409, Some("already_configured"));

    // Backup codes need a session that passed MFA; s2 did, a fresh password-only session did not.
    h.call(
        Req::post("/mfa/backup-codes")
            .customer(ALICE, "s3")
            .empty_json(),
    )
    .await
    .expect(403, Some("mfa_required"));
    let codes = h
        .call(
            Req::post("/mfa/backup-codes")
                .customer(ALICE, "s2")
                .raw("application/json", ""),
        )
        .await;
    codes.expect(201, None);
    let codes: Vec<String> = serde_json::from_value(codes.json["codes"].clone()).unwrap();
    assert_eq!(codes.len(), 5);

    // A new set is a change of factor: s3, signed in before it, has ended.
    h.call(verify_code("s3", &h.app_code(&uri)))
        .await
        .expect(401, Some("session_ended"));

    // Her next sign-in is challenged; a fresh code passes once. The replay gets the same answer
    // as a wrong code, and the audit log says what it really was.
    assert_eq!(step(&h, ALICE).await, Next::Verify);
    h.clock.advance(30);
    let code = h.app_code(&uri);
    let verified = h.call(verify_code("s3-again", &code)).await;
    verified.expect(200, None);
    assert_eq!(
        verified.json,
        json!({"next": "done", "backup_codes_remaining": 5, "suggest_new_backup_codes": false})
    );
    assert!(verified.headers.contains_key(header::SET_COOKIE));
    let replayed = h.call(verify_code("s4", &code)).await;
    replayed.expect(401, Some("invalid_code"));
    assert_eq!(
        rejections(&h).await.first().map(String::as_str),
        Some("replayed_code")
    );

    // A backup code works once (case and dashes do not matter).
    let sloppy = codes[0].to_lowercase().replace('-', " ");
    let backup = h.call(verify_backup("s5", &sloppy)).await;
    backup.expect(200, None);
    assert_eq!(backup.json["backup_codes_remaining"], 4);
    h.call(verify_backup("s6", &codes[0]))
        .await
        .expect(401, Some("invalid_code"));
    assert_eq!(
        rejections(&h).await.first().map(String::as_str),
        Some("used_backup_code")
    );
    // Text that is not a code at all: the same answer, logged as malformed.
    h.call(verify_code("s6", "not a code"))
        .await
        .expect(401, Some("invalid_code"));
    h.call(verify_backup("s6", "!!"))
        .await
        .expect(401, Some("invalid_code"));
    assert_eq!(rejections(&h).await[..2], ["malformed", "malformed"]);
    assert_eq!(
        h.host
            .proofs()
            .iter()
            .map(|p| p.method())
            .collect::<Vec<_>>(),
        // The second: the new backup codes moved s2 on to the new factors, still passed by its
        // enrollment.
        [
            PassedBy::Enrollment,
            PassedBy::Enrollment,
            PassedBy::Totp,
            PassedBy::BackupCode
        ]
    );

    // Lockout: failures add up across sessions until the customer is locked out for a while.
    let mut answers = Vec::new();
    for n in 0..10 {
        let reply = h
            .call(verify_code(&format!("brute{n}"), &h.wrong_code(&uri)))
            .await;
        answers.push(reply.status.as_u16());
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            reply.expect(429, Some("locked"));
            let retry: u64 = reply.headers[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=30).contains(&retry), "Retry-After: {retry}");
            break;
        }
    }
    assert_eq!(answers.last(), Some(&429), "{answers:?}");
    assert!(
        answers.len() <= 6,
        "locked after five failures: {answers:?}"
    );
    // Even the right code waits out the lockout.
    h.call(verify_code("s7", &h.app_code(&uri)))
        .await
        .expect(429, Some("locked"));
    let admin_view = h
        .call(Req::get("/admin/customers/alice%40acme.test/mfa").admin())
        .await;
    admin_view.expect(200, None);
    assert!(admin_view.json["locked_until"].is_u64());
    h.clock.advance(61);
    h.call(verify_code("s7", &h.app_code(&uri)))
        .await
        .expect(200, None);
    let admin_view = h
        .call(Req::get("/admin/customers/alice%40acme.test/mfa").admin())
        .await;
    assert_eq!(admin_view.json["customer"], ALICE);
    assert_eq!(admin_view.json["state"], "configured");
    assert_eq!(admin_view.json["failures"], 0);
    assert_eq!(admin_view.json["locked_until"], Value::Null);
    assert_eq!(admin_view.json["backup_codes_remaining"], 4);

    // The organisation switches MFA off: Alice, who configured it, is still challenged; Bob, who
    // never did, is not.
    h.call(
        Req::put("/admin/mfa")
            .admin()
            .json(&json!({"enabled": false})),
    )
    .await
    .expect(200, None);
    assert_eq!(step(&h, ALICE).await, Next::Verify);
    assert_eq!(step(&h, BOB).await, Next::Done);
    let sticky = h.call(Req::get("/mfa").customer(ALICE, "s8")).await;
    assert_eq!(
        sticky.json,
        json!({"state": "configured", "org_enabled": false, "backup_codes_remaining": null, "backup_codes_low": null, "next": "verify"})
    );
    h.clock.advance(30);
    h.call(verify_code("s8", &h.app_code(&uri)))
        .await
        .expect(200, None);

    // An administrator resets her: no MFA while the organisation has it off, enrollment when on.
    let reset = h
        .call(
            Req::post("/admin/customers/alice%40acme.test/mfa/reset")
                .admin()
                .empty_json(),
        )
        .await;
    reset.expect(200, None);
    assert_eq!(reset.json, json!({"state": "unconfigured"}));
    assert_eq!(step(&h, ALICE).await, Next::Done);
    h.call(verify_code("s9", &h.app_code(&uri)))
        .await
        .expect(409, Some("not_configured"));
    h.call(
        Req::put("/admin/mfa")
            .admin()
            .json(&json!({"enabled": true})),
    )
    .await
    .expect(200, None);
    assert_eq!(step(&h, ALICE).await, Next::Enroll);
    let again = enroll(&h, "s9").await;
    assert_ne!(again.secret(), uri.secret(), "a new secret after the reset");

    // The audit log: newest first, everything that happened, with who did what.
    let log = h.call(Req::get("/admin/audit?limit=500").admin()).await;
    let events = log.json["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
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
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");
    let reset_event = events.iter().find(|e| e["kind"] == "reset").unwrap();
    assert_eq!(reset_event["details"]["by"], ADMIN);
    assert_eq!(reset_event["customer"], ALICE);
    assert_eq!(log.json["next_before"], Value::Null);
}

#[tokio::test]
async fn expired_enrollment_is_gone_and_confirm_needs_one() {
    let h = Harness::new().await;
    h.call(
        Req::put("/admin/mfa")
            .admin()
            .json(&json!({"enabled": true})),
    )
    .await
    .expect(200, None);
    h.call(
        Req::post("/mfa/enrollment/confirm")
            .customer(ALICE, "s1")
            .json(&json!({"code": "123456"})),
    )
    .await
    .expect(409, Some("not_pending"));
    let uri = enroll(&h, "s1").await;
    h.clock.advance(601);
    h.call(
        Req::post("/mfa/enrollment/confirm")
            .customer(ALICE, "s1")
            .json(&json!({"code": h.app_code(&uri)})),
    )
    .await
    .expect(410, Some("enrollment_expired"));
    assert!(h.host.proofs().is_empty());
}

#[tokio::test]
async fn audit_pages_backwards_without_gaps() {
    let h = Harness::new().await;
    for n in 0..7 {
        h.call(
            Req::put("/admin/mfa")
                .admin()
                .json(&json!({"enabled": n % 2 == 0})),
        )
        .await
        .expect(200, None);
    }
    let all = h.call(Req::get("/admin/audit?limit=500").admin()).await;
    let all: Vec<u64> = all.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(all.len(), 8, "seven switches and the settings");
    let mut paged = Vec::new();
    let mut uri = String::from("/admin/audit?limit=3");
    loop {
        let page = h.call(Req::get(&uri).admin()).await;
        page.expect(200, None);
        paged.extend(
            page.json["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap()),
        );
        match page.json["next_before"].as_u64() {
            Some(before) => uri = format!("/admin/audit?limit=3&before={before}"),
            None => break,
        }
    }
    assert_eq!(paged, all);
    // One customer's events only.
    let alice = h
        .call(Req::get("/admin/audit?customer=alice%40acme.test").admin())
        .await;
    assert_eq!(alice.json["events"], json!([]));
}

#[tokio::test]
async fn who_may_call_what() {
    let h = Harness::new().await;
    // MFA on, so that a password alone leaves a session short of its second factor.
    h.service()
        .set_org_mfa(
            &org(),
            mfa_http::mfa_core::OrgMfa::On,
            &common::actor(ADMIN),
        )
        .await
        .unwrap();
    let customer_routes = [
        Req::get("/mfa"),
        Req::post("/mfa/enrollment").empty_json(),
        Req::post("/mfa/enrollment/confirm").json(&json!({"code": "123456"})),
        Req::post("/mfa/backup-codes").empty_json(),
        Req::post("/mfa/verify").json(&json!({"code": "123456"})),
    ];
    let admin_routes = [
        Req::get("/admin/mfa"),
        Req::put("/admin/mfa").json(&json!({"enabled": true})),
        Req::get("/admin/customers/bob%40acme.test/mfa"),
        Req::post("/admin/customers/bob%40acme.test/mfa/reset").empty_json(),
        Req::get("/admin/audit"),
    ];
    let before = h.snapshot().await;
    for req in customer_routes.iter().chain(&admin_routes) {
        // Nobody signed in.
        h.call(req.clone())
            .await
            .expect(401, Some("unauthenticated"));
        // The host's session store is down.
        h.call(req.clone().header("x-fail", "1").customer(ALICE, "s1"))
            .await
            .expect(503, Some("unavailable"));
    }
    for req in &admin_routes {
        h.call(req.clone().customer(ALICE, "s1"))
            .await
            .expect(403, Some("forbidden"));
    }
    for req in &customer_routes {
        h.call(req.clone().admin())
            .await
            .expect(403, Some("forbidden"));
    }
    // An administrator who is also a customer acts through that customer's session: with only the
    // password checked, it may not administer (say, switch MFA off or reset its own).
    for req in &admin_routes {
        h.call(req.clone().customer(ALICE, "s1").admin())
            .await
            .expect(403, Some("mfa_required"));
    }
    assert_eq!(h.snapshot().await, before, "refused calls change nothing");
    // Once the session passed its second factor (here: by setting it up), it may.
    let started = h
        .call(
            Req::post("/mfa/enrollment")
                .customer(ALICE, "s1")
                .empty_json(),
        )
        .await;
    let uri = mfa_http::mfa_core::uri::KeyUri::parse(started.json["otpauth_uri"].as_str().unwrap())
        .unwrap();
    h.call(
        Req::post("/mfa/enrollment/confirm")
            .customer(ALICE, "s1")
            .json(&json!({"code": h.app_code(&uri)})),
    )
    .await
    .expect(200, None);
    h.call(Req::get("/admin/mfa").customer(ALICE, "s1").admin())
        .await
        .expect(200, None);

    // An administrator of another organisation sees only that organisation.
    h.call(
        Req::put("/admin/mfa")
            .admin()
            .json(&json!({"enabled": true})),
    )
    .await
    .expect(200, None);
    let other = h
        .call(Req::get("/admin/mfa").admin().header("x-org", "globex"))
        .await;
    assert_eq!(other.json, json!({"enabled": false}));
    let other_log = h
        .call(Req::get("/admin/audit").admin().header("x-org", "globex"))
        .await;
    assert_eq!(other_log.json["events"], json!([]));

    // The document itself needs no session.
    h.call(Req::get("/openapi.json")).await.expect(200, None);
}
