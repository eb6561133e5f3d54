//! Backup codes that get renewed: the API says when a customer should make a new set (signed in
//! with a backup code, or one or none left), so a portal can offer it at the right moment.

mod common;

use common::{ALICE, Harness, Req};
use serde_json::json;

async fn status(h: &Harness, session: &str) -> serde_json::Value {
    let reply = h.call(Req::get("/mfa").customer(ALICE, session)).await;
    reply.expect(200, None);
    reply.json
}

#[tokio::test]
async fn the_api_says_when_to_make_new_backup_codes() {
    let h = Harness::new().await;
    h.switch_on().await;
    let uri = h.set_up(ALICE, "s1").await;
    // Configured without a set: low (none at all).
    assert_eq!(status(&h, "s1").await["backup_codes_low"], true);
    let codes = h.backup_codes(ALICE, "s1").await;
    assert_eq!(status(&h, "s1").await["backup_codes_low"], false);
    // A password-only session learns neither count nor flag.
    let before = status(&h, "password-only").await;
    assert_eq!(before["backup_codes_low"], serde_json::Value::Null);

    // A sign-in with a code, plenty left: no suggestion.
    h.clock.advance(30);
    let signed = h
        .call(
            Req::post("/mfa/verify")
                .customer(ALICE, "s2")
                .json(&json!({ "code": h.app_code(&uri) })),
        )
        .await;
    signed.expect(200, None);
    assert_eq!(signed.json["suggest_new_backup_codes"], false);
    // A sign-in with a backup code: always a suggestion (the phone may be lost).
    let signed = h
        .call(
            Req::post("/mfa/verify")
                .customer(ALICE, "s3")
                .json(&json!({ "backup_code": codes[0] })),
        )
        .await;
    signed.expect(200, None);
    assert_eq!(signed.json["suggest_new_backup_codes"], true);
    assert_eq!(signed.json["backup_codes_remaining"], 4);
    assert_eq!(status(&h, "s3").await["backup_codes_low"], false);
    for (n, code) in codes.iter().enumerate().skip(1).take(3) {
        h.call(
            Req::post("/mfa/verify")
                .customer(ALICE, &format!("b{n}"))
                .json(&json!({ "backup_code": code })),
        )
        .await
        .expect(200, None);
    }
    // One left: low, and a code sign-in now suggests a new set too.
    assert_eq!(status(&h, "s3").await["backup_codes_remaining"], 1);
    assert_eq!(status(&h, "s3").await["backup_codes_low"], true);
    h.clock.advance(30);
    let signed = h
        .call(
            Req::post("/mfa/verify")
                .customer(ALICE, "s4")
                .json(&json!({ "code": h.app_code(&uri) })),
        )
        .await;
    assert_eq!(signed.json["suggest_new_backup_codes"], true);
}
