//! Hostile input against every route: bodies (huge, wrong types, unknown fields, invalid UTF-8,
//! nested junk), content types, headers, paths and queries. None may answer 5xx, every answer must
//! be documented, and none may change anything: the store's records, the audit log and the host's
//! sessions are compared before and after.

mod common;

use axum::http::Method;
use common::{ALICE, BOB, Harness, Req};
use mfa_http::MAX_BODY_BYTES;
use mfa_http::mfa_core::uri::KeyUri;
use serde_json::json;

const SESSION: &str = "hostile-passed";

/// MFA on; Alice configured with backup codes; Bob pending.
async fn setup() -> (Harness, KeyUri) {
    let h = Harness::new().await;
    h.call(
        Req::put("/admin/mfa")
            .admin()
            .json(&json!({"enabled": true})),
    )
    .await
    .expect(200, None);
    let started = h
        .call(
            Req::post("/mfa/enrollment")
                .customer(ALICE, SESSION)
                .empty_json(),
        )
        .await;
    started.expect(201, None);
    let uri = KeyUri::parse(started.json["otpauth_uri"].as_str().unwrap()).unwrap();
    h.call(
        Req::post("/mfa/enrollment/confirm")
            .customer(ALICE, SESSION)
            .json(&json!({"code": h.app_code(&uri)})),
    )
    .await
    .expect(200, None);
    h.call(
        Req::post("/mfa/backup-codes")
            .customer(ALICE, SESSION)
            .empty_json(),
    )
    .await
    .expect(201, None);
    h.call(
        Req::post("/mfa/enrollment")
            .customer(BOB, "bob")
            .empty_json(),
    )
    .await
    .expect(201, None);
    // A new step, so that a fresh code would pass if anything let it through.
    h.clock.advance(30);
    (h, uri)
}

/// Signed in as everything at once, so that every route gets past the caller to the input.
fn privileged(req: Req) -> Req {
    req.customer(ALICE, SESSION).admin()
}

/// The operations, with a path that names a real customer.
fn routes() -> Vec<(Method, &'static str, bool)> {
    // (method, path, whether an empty body is valid input for it)
    vec![
        (Method::GET, "/mfa", true),
        (Method::POST, "/mfa/enrollment", true),
        (Method::POST, "/mfa/enrollment/confirm", false),
        (Method::POST, "/mfa/backup-codes", true),
        (Method::POST, "/mfa/verify", false),
        (Method::POST, "/mfa/step-up", false),
        (Method::POST, "/mfa/authenticator/replacement", true),
        (
            Method::POST,
            "/mfa/authenticator/replacement/confirm",
            false,
        ),
        (Method::GET, "/mfa/step-up/payment_method", true),
        (Method::GET, "/admin/mfa", true),
        (Method::PUT, "/admin/mfa", false),
        (Method::GET, "/admin/customers/alice%40acme.test/mfa", true),
        (
            Method::POST,
            "/admin/customers/alice%40acme.test/mfa/reset",
            true,
        ),
        (Method::GET, "/admin/audit", true),
        (Method::GET, "/openapi.json", true),
    ]
}

/// Bodies that are never valid input for any route.
fn junk_bodies() -> Vec<Vec<u8>> {
    let nest = |open: &str, close: &str, depth: usize| {
        format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
    };
    let mut bodies: Vec<Vec<u8>> = [
        &b"[]"[..],
        b"\"text\"",
        b"42",
        b"-0.0e-999",
        b"true",
        b"{",
        b"}",
        b"{\"code\":",
        b"{} {}",
        b"{}x",
        b"\xEF\xBB\xBF{}",
        b"\x00",
        b"\xff\xfe\xfd",
        b"{\"code\":\"\xff\xfe\"}",
        b"{\"\xff\":1}",
        b"{\"code\":\"\\ud800\"}",
        b"{'code':'123456'}",
        b"NaN",
        b"{\"code\":123456}",
        b"{\"code\":null}",
        b"{\"code\":[\"123456\"]}",
        b"{\"code\":{\"a\":1}}",
        b"{\"code\":1e999}",
        b"{\"code\":\"123456\",\"extra\":1}",
        b"{\"code\":\"123456\",\"code\":\"654321\"}",
        b"{\"code\":\"1\",\"backup_code\":\"2\"}",
        b"{\"backup_code\":1}",
        b"{\"backup_code\":\"AAAA-AAAA-AAAA\",\"__proto__\":{}}",
        b"{\"enabled\":\"true\"}",
        b"{\"enabled\":1}",
        b"{\"enabled\":null}",
        b"{\"enabled\":true,\"enabled\":false}",
        b"{\"enabled\":true,\"x\":1}",
        b"{\"Enabled\":true}",
        b"[{\"code\":\"123456\"}]",
        b"{\"x\":1}",
        b"{\"purpose\":\"Pay\",\"code\":\"123456\"}",
        b"{\"purpose\":\"\",\"backup_code\":\"AAAA-AAAA-AAAA\"}",
        b"{\"purpose\":[\"payment_method\"],\"code\":\"123456\"}",
        b"{\"purpose\":\"payment_method\"}",
        b"{\"purpose\":\"payment_method\",\"code\":\"1\",\"backup_code\":\"2\"}",
    ]
    .iter()
    .map(|b| b.to_vec())
    .collect();
    bodies.push(nest("[", "]", 2_000));
    bodies.push(nest("{\"a\":", "}", 600));
    bodies.push(nest("{\"code\":[", "]}", 800));
    bodies.push(nest("{\"x\":[", "]}", 800));
    bodies.push(nest("{\"enabled\":{\"a\":", "}}", 600));
    bodies.push(vec![b' '; MAX_BODY_BYTES + 1]);
    bodies
}

#[tokio::test]
async fn hostile_bodies_and_content_types() {
    let (h, uri) = setup().await;
    let before = h.snapshot().await;
    let mut sent = 0;
    let huge = vec![b'a'; 1 << 20];
    let huge_json = format!(r#"{{"code":"{}"}}"#, "1".repeat(1 << 20)).into_bytes();
    let valid_code = json!({"code": h.app_code(&uri)}).to_string().into_bytes();
    let bad_types: [&[u8]; 9] = [
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"application/json; charset=utf-16",
        b"application/json, text/plain",
        b"text/json",
        b"application/jsonp",
        b"\xff\xfe",
        b"",
    ];
    for (method, path, empty_is_valid) in routes() {
        let mut bodies = junk_bodies();
        if !empty_is_valid {
            bodies.extend([
                b"".to_vec(),
                b"{}".to_vec(),
                b"null".to_vec(),
                b" \n".to_vec(),
            ]);
        }
        for body in &bodies {
            let req =
                privileged(Req::new(method.clone(), path)).raw("application/json", body.clone());
            assert_safe(&h, req).await;
            sent += 1;
        }
        for body in [&huge, &huge_json] {
            for content_type in ["application/json", "text/plain"] {
                let req =
                    privileged(Req::new(method.clone(), path)).raw(content_type, body.clone());
                assert_safe(&h, req).await;
                // The declared length, lying both ways.
                for length in ["10", "99999999999", "-1", "abc"] {
                    let req = privileged(Req::new(method.clone(), path))
                        .raw("application/json", body.clone())
                        .header("content-length", length);
                    assert_safe(&h, req).await;
                }
                sent += 5;
            }
        }
        // Input that would be valid, but not sent as JSON (what a cross-site form can send): 415.
        let valid: Vec<&[u8]> = vec![b"", b"{}", b"null", br#"{"enabled":true}"#, &valid_code];
        for body in valid {
            for content_type in bad_types {
                let req =
                    privileged(Req::new(method.clone(), path)).body_with_type(content_type, body);
                let reply = assert_safe(&h, req).await;
                if method != Method::GET {
                    reply.expect(415, Some("unsupported_media_type"));
                }
                sent += 1;
            }
            let untyped = privileged(Req::new(method.clone(), path)).with_body(body);
            let reply = assert_safe(&h, untyped).await;
            if method != Method::GET {
                reply.expect(415, Some("unsupported_media_type"));
            }
            let twice = privileged(Req::new(method.clone(), path))
                .raw("application/json", body.to_vec())
                .header("content-type", "application/json");
            let reply = assert_safe(&h, twice).await;
            if method != Method::GET {
                reply.expect(415, Some("unsupported_media_type"));
            }
            sent += 2;
        }
    }
    assert!(sent > 1_000, "{sent} requests");
    assert_eq!(
        h.snapshot().await,
        before,
        "hostile bodies changed something"
    );
}

#[tokio::test]
async fn hostile_paths_queries_headers_and_methods() {
    let (h, uri) = setup().await;
    let before = h.snapshot().await;
    let long = "a".repeat(256);
    let longer = "%41".repeat(20_000); // 60 KB: near http's limit for a URI
    // Ids that are not ids once decoded: even a reset must refuse them.
    let invalid_ids = [
        "%FF",
        "%00",
        "a%0Ab",
        "%7F",
        "%C2%85",
        "%C0%AF",
        "%ED%A0%80",
        "%E2%80%A8",
        "%20alice",
        "alice%20",
        "",
        long.as_str(),
        longer.as_str(),
    ];
    for id in invalid_ids {
        for req in [
            Req::get(format!("/admin/customers/{id}/mfa")),
            Req::post(format!("/admin/customers/{id}/mfa/reset")).empty_json(),
        ] {
            let reply = assert_safe(&h, privileged(req)).await;
            assert_eq!(reply.status.as_u16(), 400, "{id:.40}: {}", reply.json);
        }
    }
    // Odd but valid ids: reading them is fine and changes nothing.
    for id in [
        "%2e%2e%2f",
        "..",
        "%25",
        "%zz",
        "%",
        "a%E2%80%A8b",
        "'%3B%20DROP%20TABLE%20x",
        "%2F",
    ] {
        let reply = assert_safe(
            &h,
            privileged(Req::get(format!("/admin/customers/{id}/mfa"))),
        )
        .await;
        reply.expect(200, None);
        assert_eq!(reply.json["state"], "unconfigured");
    }
    let deep_path = format!("/mfa/{}", "a/".repeat(10_000));
    for path in [
        "/mfa%2Fverify",
        "/mfa/verify%00",
        "/mfa/./verify",
        "/mfa/../admin/mfa",
        "/%6Dfa",
        "/mfa;x=1",
        "/mfa/verify/",
        "/admin/customers/alice%40acme.test/mfa/reset/",
        "/admin/customers/a/b/mfa",
        &deep_path,
        "/openapi.json/../mfa",
    ] {
        assert_safe(
            &h,
            privileged(Req::post(path).json(&json!({"code": h.app_code(&uri)}))),
        )
        .await;
        assert_safe(&h, privileged(Req::get(path))).await;
    }
    let overlong_query = format!("/admin/audit?customer={}", "b".repeat(300));
    for query in [
        "customer=%FF",
        "customer=%00",
        "customer=",
        "customer=a&customer=b",
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=1e3",
        "limit=99999999999999999999999",
        "limit=",
        "before=x",
        "before=-1",
        "unknown=1",
        "customer[]=a",
        "%FF=1",
        "customer",
    ] {
        let reply = assert_safe(&h, privileged(Req::get(format!("/admin/audit?{query}")))).await;
        assert_eq!(reply.status.as_u16(), 400, "{query}: {}", reply.json);
    }
    assert_safe(&h, privileged(Req::get(overlong_query)))
        .await
        .expect(400, Some("invalid_query"));
    // Empty pairs are no pairs.
    assert_safe(&h, privileged(Req::get("/admin/audit?&&&")))
        .await
        .expect(200, None);
    // Queries on routes that take none are ignored, and change nothing either.
    assert_safe(&h, privileged(Req::get("/mfa?code=123456&x=%FF"))).await;

    // Callers the host cannot make out: 401, whatever the route.
    let overlong_id = "c".repeat(300);
    let strange_callers: [(&str, &[u8]); 6] = [
        ("x-customer", b"\xff\xfe"),
        ("x-customer", b""),
        ("x-customer", overlong_id.as_bytes()),
        ("x-admin", b"\xc3\x28"),
        ("x-org", b"a\tb"),
        ("x-session", b"\xff"),
    ];
    for (method, path, _) in routes() {
        if path == "/openapi.json" {
            continue;
        }
        for (name, value) in &strange_callers {
            let req = Req::new(method.clone(), path)
                .header(name, value)
                .raw("application/json", b"{}".to_vec());
            let reply = assert_safe(&h, req).await;
            assert!(
                matches!(reply.status.as_u16(), 401 | 403),
                "{method} {path} {name}: {}",
                reply.json
            );
        }
        // Headers the API has no use for.
        let req = privileged(Req::new(method.clone(), path))
            .header("content-encoding", "gzip")
            .header("accept", "text/html")
            .header("expect", "100-continue")
            .header("transfer-encoding", "chunked")
            .header("x-forwarded-for", [0xff; 64])
            .raw("application/json", b"\x1f\x8b\x08\x00".to_vec());
        assert_safe(&h, req).await;
        // Methods nobody routes.
        for other in ["DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO"] {
            let req = privileged(Req::new(other.parse().unwrap(), path)).empty_json();
            assert_safe(&h, req)
                .await
                .expect(405, Some("method_not_allowed"));
        }
    }
    assert_eq!(
        h.snapshot().await,
        before,
        "hostile requests changed something"
    );
}

/// Sends `req` (checked against the document by the harness) and insists it was not a 5xx, nor,
/// for anything but a read, a success.
async fn assert_safe(h: &Harness, req: Req) -> common::Reply {
    let what = format!(
        "{} {:.80} {:?} {:?}",
        req.method,
        req.uri,
        req.headers,
        String::from_utf8_lossy(&req.body[..req.body.len().min(80)])
    );
    let reply = h.call(req).await;
    assert!(
        reply.status.as_u16() < 500,
        "{what} -> {}: {}",
        reply.status,
        reply.json
    );
    assert!(
        what.starts_with("GET") || !reply.status.is_success(),
        "{what} -> {}: {}",
        reply.status,
        reply.json
    );
    reply
}

trait BodyExt {
    fn body_with_type(self, content_type: &[u8], body: &[u8]) -> Self;
    fn with_body(self, body: &[u8]) -> Self;
}

impl BodyExt for Req {
    fn body_with_type(self, content_type: &[u8], body: &[u8]) -> Self {
        self.header("content-type", content_type).with_body(body)
    }

    fn with_body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
}
