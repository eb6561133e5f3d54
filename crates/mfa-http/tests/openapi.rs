//! The served OpenAPI document against the router: the same operations both ways, every reference
//! resolves, and the mount point is the server URL. (Every answer of every test is also validated
//! against the document by the harness.)

mod common;

use axum::http::Method;
use common::{Harness, Req};
use serde_json::{Value, json};

/// The operations of issue 5, plus reading the switch and the document itself.
const EXPECTED: &[(&str, &str)] = &[
    ("GET", "/admin/audit"),
    ("GET", "/admin/customers/{id}/mfa"),
    ("POST", "/admin/customers/{id}/mfa/reset"),
    ("GET", "/admin/mfa"),
    ("PUT", "/admin/mfa"),
    ("GET", "/mfa"),
    ("POST", "/mfa/authenticator/replacement"),
    ("POST", "/mfa/authenticator/replacement/confirm"),
    ("POST", "/mfa/backup-codes"),
    ("POST", "/mfa/enrollment"),
    ("POST", "/mfa/enrollment/confirm"),
    ("POST", "/mfa/step-up"),
    ("GET", "/mfa/step-up/{purpose}"),
    ("POST", "/mfa/verify"),
    ("GET", "/openapi.json"),
];

const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::TRACE,
];

fn concrete(template: &str) -> String {
    template
        .replace("{id}", "bob%40acme.test")
        .replace("{purpose}", "payment_method")
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_served() {
    let h = Harness::new().await;
    assert_eq!(h.doc["openapi"], "3.1.0");
    let documented: Vec<(String, String)> = h
        .documented()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path))
        .collect();
    let expected: Vec<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    for (path, item) in h.doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let req = Req::new(method.clone(), concrete(path));
            let reply = h.call(req).await;
            if item[method.as_str().to_lowercase()].is_object() {
                // Served: the caller is asked for before anything else (the document is public).
                let expected = if path == "/openapi.json" { 200 } else { 401 };
                assert_eq!(reply.status.as_u16(), expected, "{method} {path}");
            } else {
                reply.expect(405, Some("method_not_allowed"));
            }
        }
    }
    for stray in [
        "/",
        "/mfa/",
        "/MFA",
        "/mfa/enrollment/confirm/extra",
        "/admin",
        "/admin/customers/bob/mfa/reset/now",
        "/openapi.yaml",
        "//mfa",
    ] {
        h.call(Req::get(stray).admin())
            .await
            .expect(404, Some("not_found"));
    }
}

#[tokio::test]
async fn every_reference_resolves_and_every_operation_is_described() {
    let h = Harness::new().await;
    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target);
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&h.doc, &mut found);
    assert!(!found.is_empty());
    for target in found {
        let pointer = target.strip_prefix('#').expect("local references only");
        assert!(h.doc.pointer(pointer).is_some(), "{target} resolves");
    }
    let mut ids = std::collections::HashSet::new();
    for (method, path) in h.documented() {
        let operation = &h.doc["paths"][&path][method.as_str().to_lowercase()];
        assert!(operation["summary"].is_string(), "{method} {path}: summary");
        assert!(ids.insert(operation["operationId"].as_str().unwrap().to_owned()));
        let responses = operation["responses"].as_object().unwrap();
        let success = responses.keys().filter(|s| s.starts_with('2')).count();
        assert_eq!(success, 1, "{method} {path}: one success answer");
        for (status, response) in responses {
            assert!(
                response["content"]["application/json"]["schema"].is_object(),
                "{method} {path} {status}: a JSON schema"
            );
        }
        if method == Method::POST || method == Method::PUT {
            assert!(
                operation["requestBody"]["content"]["application/json"].is_object(),
                "{method} {path}: a JSON request body"
            );
        }
    }
    assert_eq!(
        serde_json::to_value(h.api.openapi()).unwrap(),
        h.doc,
        "MfaApi::openapi is what the router serves at the root"
    );
}

#[tokio::test]
async fn under_a_prefix_the_mount_point_is_the_server() {
    let h = Harness::mounted_at(Some("/api")).await;
    assert_eq!(h.doc["servers"], serde_json::json!([{"url": "/api"}]));
    h.call(Req::get("/api/mfa"))
        .await
        .expect(401, Some("unauthenticated"));
    h.call(Req::get("/api/mfa").customer(common::ALICE, "s1"))
        .await
        .expect(200, None);
    h.call(Req::get("/api/nowhere"))
        .await
        .expect(404, Some("not_found"));
    h.call(Req::new(Method::DELETE, "/api/admin/mfa"))
        .await
        .expect(405, Some("method_not_allowed"));
}

#[tokio::test]
async fn the_schemas_tell_a_wrong_answer_from_a_right_one() {
    let h = Harness::new().await;
    let status = json!({"state": "configured", "org_enabled": true, "backup_codes_remaining": 3, "backup_codes_low": false, "next": "done"});
    assert!(h.matches_document(Method::GET, "/mfa", 200, &status));
    let pending = json!({"state": "configured", "org_enabled": true, "backup_codes_remaining": null, "backup_codes_low": null, "next": "verify"});
    assert!(h.matches_document(Method::GET, "/mfa", 200, &pending));
    for wrong in [
        json!({"state": "enabled", "org_enabled": true, "backup_codes_remaining": 3, "backup_codes_low": false, "next": "done"}),
        json!({"state": "configured", "org_enabled": "yes", "backup_codes_remaining": 3, "backup_codes_low": false, "next": "done"}),
        json!({"state": "configured", "org_enabled": true, "backup_codes_remaining": -1, "backup_codes_low": false, "next": "done"}),
        json!({"state": "configured", "org_enabled": true, "backup_codes_remaining": 3, "backup_codes_low": false, "next": "later"}),
        json!({"state": "configured", "org_enabled": true, "backup_codes_low": false, "next": "done"}),
        json!({"state": "configured", "org_enabled": true, "backup_codes_remaining": 3, "backup_codes_low": false}),
        json!({"state": "configured", "org_enabled": true, "backup_codes_remaining": 3, "next": "done"}),
        json!({"state": "configured", "org_enabled": true, "backup_codes_remaining": 3, "backup_codes_low": "no", "next": "done"}),
        json!([]),
    ] {
        assert!(
            !h.matches_document(Method::GET, "/mfa", 200, &wrong),
            "{wrong}"
        );
    }
    let error = json!({"error": "invalid_code", "message": "the code is not valid"});
    assert!(h.matches_document(Method::POST, "/mfa/verify", 401, &error));
    for wrong in [
        json!({"error": "no_such_kind", "message": "x"}),
        json!({"error": "invalid_code"}),
        json!({"error": "invalid_code", "message": "x", "extra": 1}),
    ] {
        assert!(
            !h.matches_document(Method::POST, "/mfa/verify", 401, &wrong),
            "{wrong}"
        );
    }
    let page = json!({"events": [{"seq": 2, "at": "1970-01-01T00:00:01Z", "org": "acme", "customer": null, "kind": "reset", "details": {"by": "a"}}], "next_before": null});
    assert!(h.matches_document(Method::GET, "/admin/audit", 200, &page));
    for wrong in [
        json!({"seq": "2", "at": "1970-01-01T00:00:01Z", "org": "acme", "customer": null, "kind": "reset", "details": {}}),
        json!({"seq": 2, "at": 1, "org": "acme", "customer": null, "kind": "reset", "details": {}}),
        json!({"seq": 2, "at": "1970-01-01T00:00:01Z", "customer": null, "kind": "reset", "details": {}}),
    ] {
        let page = json!({"events": [wrong], "next_before": null});
        assert!(
            !h.matches_document(Method::GET, "/admin/audit", 200, &page),
            "{page}"
        );
    }
}
