//! A new phone through the router: step up for `replace_authenticator`, start the replacement,
//! confirm it with the new app; the old app stops, the backup codes stay, other sessions end.

mod common;

use common::{ALICE, Harness, Req};
use mfa_http::mfa_core::{RECENT_FACTOR_SECS, uri::KeyUri};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_replaces_their_authenticator_without_an_administrator() {
    let h = Harness::new().await;
    h.switch_on().await;
    let old = h.set_up(ALICE, "s1").await;
    let codes = h.backup_codes(ALICE, "s1").await;
    // A second session (the old phone's thief, say), signed in with a code.
    h.clock.advance(30);
    h.call(
        Req::post("/mfa/verify")
            .customer(ALICE, "thief")
            .json(&json!({ "code": h.app_code(&old) })),
    )
    .await
    .expect(200, None);

    // Past the step-up age: a fresh code first (here a backup code: the old phone is gone).
    h.clock.advance(RECENT_FACTOR_SECS + 1);
    let start = || {
        Req::post("/mfa/authenticator/replacement")
            .customer(ALICE, "s1")
            .empty_json()
    };
    h.call(start()).await.expect(403, Some("step_up_required"));
    h.call(
        Req::post("/mfa/step-up")
            .customer(ALICE, "s1")
            .json(&json!({"purpose": "replace_authenticator", "backup_code": codes[0]})),
    )
    .await
    .expect(200, None);
    let started = h.call(start()).await;
    started.expect(201, None);
    let new = KeyUri::parse(started.json["otpauth_uri"].as_str().unwrap()).unwrap();
    assert_ne!(new.secret(), old.secret());

    // Not yet confirmed: the old app still signs in.
    h.clock.advance(30);
    h.call(
        Req::post("/mfa/verify")
            .customer(ALICE, "s2")
            .json(&json!({ "code": h.app_code(&old) })),
    )
    .await
    .expect(200, None);
    let confirm = |code: String| {
        Req::post("/mfa/authenticator/replacement/confirm")
            .customer(ALICE, "s1")
            .json(&json!({ "code": code }))
    };
    h.call(confirm(h.wrong_code(&new)))
        .await
        .expect(401, Some("invalid_code"));
    let proofs = h.host.proofs().len();
    let confirmed = h.call(confirm(h.app_code(&new))).await;
    confirmed.expect(200, None);
    assert_eq!(confirmed.json, json!({"state": "configured"}));
    assert_eq!(
        h.host.proofs().len(),
        proofs + 1,
        "the host re-marked the session"
    );
    h.call(confirm(h.app_code(&new)))
        .await
        .expect(409, Some("not_pending"));

    // The thief's session is over; the old app no longer signs in; the new one and the backup
    // codes do.
    h.call(Req::get("/mfa").customer(ALICE, "thief"))
        .await
        .expect(401, Some("session_ended"));
    h.clock.advance(30);
    h.call(
        Req::post("/mfa/verify")
            .customer(ALICE, "s3")
            .json(&json!({ "code": h.app_code(&old) })),
    )
    .await
    .expect(401, Some("invalid_code"));
    h.call(
        Req::post("/mfa/verify")
            .customer(ALICE, "s4")
            .json(&json!({ "code": h.app_code(&new) })),
    )
    .await
    .expect(200, None);
    let backup = h
        .call(
            Req::post("/mfa/verify")
                .customer(ALICE, "s5")
                .json(&json!({ "backup_code": codes[1] })),
        )
        .await;
    backup.expect(200, None);
    assert_eq!(backup.json["backup_codes_remaining"], 3);
    let audit = h
        .call(Req::get("/admin/audit?customer=alice%40acme.test").admin())
        .await;
    let kinds: Vec<&str> = audit.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"replacement_started") && kinds.contains(&"authenticator_replaced"));
}

#[tokio::test]
async fn nothing_to_replace_or_confirm_is_refused_and_changes_nothing() {
    let h = Harness::new().await;
    h.switch_on().await;
    let before = h.snapshot().await;
    // Not configured: a password-only session gets no further.
    h.call(
        Req::post("/mfa/authenticator/replacement")
            .customer(ALICE, "s1")
            .empty_json(),
    )
    .await
    .expect(403, Some("mfa_required"));
    h.call(
        Req::post("/mfa/authenticator/replacement/confirm")
            .customer(ALICE, "s1")
            .json(&json!({"code": "123456"})),
    )
    .await
    .expect(403, Some("mfa_required"));
    assert_eq!(h.snapshot().await, before);
    // Configured, nothing started.
    let _ = h.set_up(ALICE, "s2").await;
    h.call(
        Req::post("/mfa/authenticator/replacement/confirm")
            .customer(ALICE, "s2")
            .json(&json!({"code": "123456"})),
    )
    .await
    .expect(409, Some("not_pending"));
}
