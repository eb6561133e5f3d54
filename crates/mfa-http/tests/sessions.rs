//! The attacks on sessions found against the running portal, through the JSON API: a session that
//! never gave a second factor minting backup codes, an administrator's reset leaving an attacker's
//! session alive, a reset of a customer who does not exist, and a password-only session reading
//! more than it needs.

mod common;

use common::{BOB, Harness, Req, id, org};
use mfa_http::mfa_core::{PassedBy, Store};
use serde_json::json;

/// Enrolls `customer` in `session`, confirms it with the app's code, and returns the key.
fn backup_codes(customer: &str, session: &str) -> Req {
    Req::post("/mfa/backup-codes")
        .customer(customer, session)
        .empty_json()
}

/// Switches the organisation's MFA on through the admin route.
/// Finding 1: with MFA off, an attacker with Bob's password keeps a session (`next: done`). The
/// organisation switches MFA on and Bob sets it up. The old session must not mint backup codes (it
/// used to get 201 and five codes that, with the password, sign in as Bob).
#[tokio::test]
async fn a_session_that_never_gave_a_factor_cannot_mint_backup_codes() {
    let h = Harness::new().await;
    // The attacker's session, signed in while no MFA was required.
    let stale = h.call(Req::get("/mfa").customer(BOB, "stale")).await;
    stale.expect(200, None);
    assert_eq!(stale.json["next"], "done");
    h.switch_on().await;
    // Once MFA is on, that session is sent to enroll like any other.
    let asked = h.call(Req::get("/mfa").customer(BOB, "stale")).await;
    assert_eq!(asked.json["next"], "enroll");
    // Bob sets it up in his own session.
    let uri = h.set_up(BOB, "bob").await;
    let before = h.snapshot().await;
    h.call(backup_codes(BOB, "stale"))
        .await
        .expect(401, Some("session_ended"));
    h.call(Req::get("/mfa").customer(BOB, "stale"))
        .await
        .expect(401, Some("session_ended"));
    h.call(
        Req::post("/mfa/verify")
            .customer(BOB, "stale")
            .json(&json!({ "code": h.app_code(&uri) })),
    )
    .await
    .expect(401, Some("session_ended"));
    assert_eq!(h.snapshot().await, before, "refused calls change nothing");
    // Each time, the host was told to drop the session, and its answer carried the host's headers.
    assert_eq!(
        h.host.ended(),
        vec![(BOB.to_owned(), "stale".to_owned()); 3],
        "session_ended was called for each"
    );
    let ended = h.call(Req::get("/mfa").customer(BOB, "stale")).await;
    assert_eq!(ended.headers.get("set-cookie").unwrap(), "sid=; Max-Age=0");
    // Other refusals are not an ended session.
    h.call(Req::get("/mfa").customer(BOB, "nobody-knows"))
        .await
        .expect(200, None);
    assert_eq!(h.host.ended().len(), 4);

    // A session with only the password checked (the attacker signing in again) may not either.
    h.call(backup_codes(BOB, "password-only"))
        .await
        .expect(403, Some("mfa_required"));
    // Bob's own session, whose factor passed at set-up, may; it stays usable afterwards.
    h.clock.advance(30);
    let issued = h.call(backup_codes(BOB, "bob")).await;
    issued.expect(201, None);
    assert_eq!(issued.json["codes"].as_array().unwrap().len(), 5);
    h.call(Req::get("/mfa").customer(BOB, "bob"))
        .await
        .expect(200, None);
    // A new set is a change of factor: the password-only session of before has ended.
    h.call(Req::get("/mfa").customer(BOB, "password-only"))
        .await
        .expect(401, Some("session_ended"));

    // A factor that passed more than ten minutes ago is not recent enough to change factors: the
    // session must step up (a fresh code, without signing out).
    h.clock.advance(11 * 60);
    h.call(backup_codes(BOB, "bob"))
        .await
        .expect(403, Some("step_up_required"));
    // A fresh code in that session makes it recent again.
    h.call(
        Req::post("/mfa/verify")
            .customer(BOB, "bob")
            .json(&json!({ "code": h.app_code(&uri) })),
    )
    .await
    .expect(200, None);
    h.call(backup_codes(BOB, "bob")).await.expect(201, None);
    let kept = h.host.session(BOB, "bob").unwrap();
    assert_eq!(kept.passed().map(|passed| passed.by), Some(PassedBy::Totp));
}

/// Finding 2: after an administrator's reset (the remedy for a stolen phone), the attacker's old
/// session must end, and must not enroll its own authenticator; the real customer, signing in
/// with the password after the reset, can.
#[tokio::test]
async fn a_reset_ends_every_session_of_the_customer() {
    let h = Harness::new().await;
    h.switch_on().await;
    let uri = h.set_up(BOB, "bob").await;
    // The thief's session passed with a code from the stolen phone.
    h.clock.advance(30);
    h.call(
        Req::post("/mfa/verify")
            .customer(BOB, "thief")
            .json(&json!({ "code": h.app_code(&uri) })),
    )
    .await
    .expect(200, None);
    // And one that only has the password.
    h.call(Req::get("/mfa").customer(BOB, "thief-password"))
        .await
        .expect(200, None);

    h.call(
        Req::post("/admin/customers/bob%40acme.test/mfa/reset")
            .admin()
            .empty_json(),
    )
    .await
    .expect(200, None);
    for session in ["bob", "thief", "thief-password"] {
        h.call(Req::get("/mfa").customer(BOB, session))
            .await
            .expect(401, Some("session_ended"));
        h.call(
            Req::post("/mfa/enrollment")
                .customer(BOB, session)
                .empty_json(),
        )
        .await
        .expect(401, Some("session_ended"));
    }
    // Bob signs in again with his password and sets MFA up anew.
    h.set_up(BOB, "bob-again").await;
}

/// Finding 9: a reset of a customer the store never saw (a typo, another case) is refused as not
/// found and writes nothing, the same answer as `mfa admin customer reset`.
#[tokio::test]
async fn a_reset_of_an_unknown_customer_is_not_found_and_writes_nothing() {
    let h = Harness::new().await;
    h.switch_on().await;
    h.set_up(BOB, "bob").await;
    let before = h.snapshot().await;
    for path in [
        "/admin/customers/nobody%40typo.test/mfa/reset",
        "/admin/customers/Bob%40acme.test/mfa/reset",
    ] {
        h.call(Req::post(path).admin().empty_json())
            .await
            .expect(404, Some("not_found"));
    }
    assert_eq!(h.snapshot().await, before);
    let nobody = h
        .service()
        .store()
        .load_customer(&org(), &id("nobody@typo.test"))
        .await;
    assert!(matches!(nobody, Ok(None)), "no record was written");
}

/// Hardening: a session with only the password checked sees what it needs to go on, not how many
/// backup codes are left.
#[tokio::test]
async fn a_password_only_session_sees_no_backup_code_count() {
    let h = Harness::new().await;
    h.switch_on().await;
    h.set_up(BOB, "bob").await;
    h.clock.advance(30);
    h.call(backup_codes(BOB, "bob")).await.expect(201, None);
    let passed = h.call(Req::get("/mfa").customer(BOB, "bob")).await;
    assert_eq!(passed.json["backup_codes_remaining"], 5);
    assert_eq!(passed.json["next"], "done");
    let pending = h.call(Req::get("/mfa").customer(BOB, "new")).await;
    pending.expect(200, None);
    assert!(
        pending.json["backup_codes_remaining"].is_null(),
        "{}",
        pending.json
    );
    assert_eq!(pending.json["next"], "verify");
    assert_eq!(pending.json["state"], "configured");
}
