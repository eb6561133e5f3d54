//! Step-up through the router: a sensitive action answers 403 `step_up_required` once the sign-in
//! code is older than the organisation's age; `POST /mfa/step-up` takes a fresh code for a purpose
//! without signing out; `GET /mfa/step-up/{purpose}` says where a session stands; and a host's own
//! route asks the same through `MfaApi::require_step_up`. Every answer is checked against the
//! served OpenAPI document.

mod common;

use common::{ALICE, Harness, Req, id, org};
use mfa_http::mfa_core::{Purpose, RECENT_FACTOR_SECS, uri::KeyUri};
use serde_json::json;

/// MFA on, alice configured in session `s1` (which passed by the enrollment), with a set of
/// backup codes made there.
async fn configured(h: &Harness) -> (KeyUri, Vec<String>) {
    h.switch_on().await;
    let uri = h.set_up(ALICE, "s1").await;
    (uri, h.backup_codes(ALICE, "s1").await)
}

fn status(purpose: &str) -> Req {
    Req::get(format!("/mfa/step-up/{purpose}")).customer(ALICE, "s1")
}

fn step_up(body: serde_json::Value) -> Req {
    Req::post("/mfa/step-up").customer(ALICE, "s1").json(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_session_steps_up_for_one_purpose_without_signing_out() {
    let h = Harness::new().await;
    let (uri, codes) = configured(&h).await;
    let fresh = h.call(status("payment_method")).await;
    fresh.expect(200, None);
    assert_eq!(
        fresh.json,
        json!({"purpose": "payment_method", "status": "fresh", "max_age_secs": null})
    );

    // Ten minutes on, the enrollment's code is stale for everything sensitive.
    h.clock.advance(RECENT_FACTOR_SECS + 1);
    for purpose in ["payment_method", "backup_codes"] {
        let stale = h.call(status(purpose)).await;
        stale.expect(200, None);
        assert_eq!(stale.json["status"], "required");
        assert_eq!(stale.json["max_age_secs"], RECENT_FACTOR_SECS);
    }
    let refused = h
        .call(
            Req::post("/mfa/backup-codes")
                .customer(ALICE, "s1")
                .empty_json(),
        )
        .await;
    refused.expect(403, Some("step_up_required"));
    assert!(
        refused.json["message"]
            .as_str()
            .unwrap()
            .contains("backup_codes"),
        "{}",
        refused.json
    );
    // The session itself still works: step-up is not a sign-out.
    h.call(Req::get("/mfa").customer(ALICE, "s1"))
        .await
        .expect(200, None);

    // A fresh code for the card: fresh for the card, not for backup codes; the host re-marks it.
    let proofs = h.host.proofs().len();
    let code = h.app_code(&uri);
    let stepped = h
        .call(step_up(json!({"purpose": "payment_method", "code": code})))
        .await;
    stepped.expect(200, None);
    assert_eq!(
        stepped.json,
        json!({"purpose": "payment_method", "backup_codes_remaining": 5})
    );
    assert_eq!(
        h.host.proofs().len(),
        proofs + 1,
        "the host kept the new session"
    );
    assert_eq!(
        h.call(status("payment_method")).await.json["status"],
        "fresh"
    );
    assert_eq!(
        h.call(status("backup_codes")).await.json["status"],
        "required"
    );
    let card = Purpose::new("payment_method").unwrap();
    let session = h.host.session(ALICE, "s1").unwrap();
    h.api
        .require_step_up(&org(), &id(ALICE), &session, card)
        .await
        .unwrap();
    let other = h
        .api
        .require_step_up(&org(), &id(ALICE), &session, Purpose::BACKUP_CODES)
        .await
        .unwrap_err();
    assert_eq!(other.kind().as_str(), "step_up_required");

    // The same code for another purpose: used up.
    h.call(step_up(json!({"purpose": "backup_codes", "code": code})))
        .await
        .expect(401, Some("invalid_code"));
    // A backup code for backup codes: used up, and the new set can be made.
    h.clock.advance(30);
    let stepped = h
        .call(step_up(
            json!({"purpose": "backup_codes", "backup_code": codes[0]}),
        ))
        .await;
    stepped.expect(200, None);
    assert_eq!(stepped.json["backup_codes_remaining"], 4);
    h.call(
        Req::post("/mfa/backup-codes")
            .customer(ALICE, "s1")
            .empty_json(),
    )
    .await
    .expect(201, None);
    h.call(step_up(
        json!({"purpose": "payment_method", "backup_code": codes[0]}),
    ))
    .await
    .expect(401, Some("invalid_code"));

    // The audit log says what each step-up was for.
    let audit = h
        .call(Req::get("/admin/audit?customer=alice%40acme.test").admin())
        .await;
    let purposes: Vec<(String, String)> = audit.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "step_up_passed")
        .map(|event| {
            (
                event["details"]["purpose"].as_str().unwrap().to_owned(),
                event["details"]["factor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        purposes,
        [
            ("backup_codes".to_owned(), "backup_code".to_owned()),
            ("payment_method".to_owned(), "totp".to_owned())
        ]
    );
}

#[tokio::test]
async fn sessions_that_cannot_step_up_are_told_why() {
    let h = Harness::new().await;
    // MFA off, nothing set up: no factor to give; the host's own route lets the session through.
    let none = h.call(status("payment_method")).await;
    none.expect(200, None);
    assert_eq!(none.json["status"], "no_factor");
    let session = h.host.session(ALICE, "s1").unwrap();
    let card = Purpose::new("payment_method").unwrap();
    h.api
        .require_step_up(&org(), &id(ALICE), &session, card)
        .await
        .unwrap();
    h.call(step_up(
        json!({"purpose": "payment_method", "code": "123456"}),
    ))
    .await
    .expect(409, Some("not_configured"));

    let (uri, _) = configured(&h).await;
    // A password-only session must give its sign-in code first.
    let password_only = h
        .call(Req::get("/mfa/step-up/payment_method").customer(ALICE, "s2"))
        .await;
    password_only.expect(403, Some("mfa_required"));
    // A reset ends every session, stepped up or not.
    h.call(step_up(
        json!({"purpose": "payment_method", "code": h.app_code(&uri)}),
    ))
    .await
    .expect(401, Some("invalid_code")); // the enrollment's own step: used
    h.call(
        Req::post("/admin/customers/alice%40acme.test/mfa/reset")
            .admin()
            .empty_json(),
    )
    .await
    .expect(200, None);
    h.call(status("payment_method"))
        .await
        .expect(401, Some("session_ended"));
    let session = h.host.session(ALICE, "s1").unwrap();
    let ended = h
        .api
        .require_step_up(&org(), &id(ALICE), &session, card)
        .await
        .unwrap_err();
    assert_eq!(ended.kind().as_str(), "session_ended");
}

#[tokio::test]
async fn bad_purposes_and_bodies_change_nothing() {
    let h = Harness::new().await;
    let (uri, _) = configured(&h).await;
    h.clock.advance(30);
    let before = h.snapshot().await;
    for path in [
        "Payment",
        "pay%20ment",
        "%00",
        "a%2Fb",
        &"a".repeat(33),
        "%C3%A9",
    ] {
        h.call(Req::get(format!("/mfa/step-up/{path}")).customer(ALICE, "s1"))
            .await
            .expect(404, Some("not_found"));
    }
    let code = h.app_code(&uri);
    for body in [
        json!({"purpose": "Payment", "code": code}),
        json!({"purpose": "", "code": code}),
        json!({"purpose": "a".repeat(33), "code": code}),
        json!({"purpose": 1, "code": code}),
        json!({"purpose": "payment_method"}),
        json!({"code": code}),
        json!({"purpose": "payment_method", "code": code, "backup_code": "AAAA-AAAA-AAAA"}),
        json!({"purpose": "payment_method", "code": code, "extra": true}),
    ] {
        h.call(step_up(body.clone()))
            .await
            .expect(422, Some("invalid_body"));
    }
    assert_eq!(
        h.snapshot().await,
        before,
        "nothing written, nothing counted"
    );
    // The code is still good after all that.
    h.call(step_up(json!({"purpose": "payment_method", "code": code})))
        .await
        .expect(200, None);
}
