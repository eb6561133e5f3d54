//! When the store fails or stays contended, the API answers 503 with a generic message that names
//! no internals, and a failing host hook is reported without the session being marked.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, request::Parts};
use axum::http::{Request, StatusCode, header};
use common::{ADMIN, ALICE, ORG, T0, TestHost};
use mfa_http::mfa_core::{
    CustomerId, ManualClock, MemoryStore, OrgId,
    audit::AuditQuery,
    store::{Encoded, Versioned},
};
use mfa_http::{Caller, HostError, MfaApi, MfaHost, MfaPassed};
use mfa_store_tests::fixture::{self, SoftApp};
use mfa_store_tests::{Before, Call, Hooked, Hooks, Logs};
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};
use tower::ServiceExt;

const WORKS: u8 = 0;
const FAILS: u8 = 1;
const CONFLICTS: u8 = 2;
/// Stored records read back as bytes no version wrote (a damaged row).
const GARBLED: u8 = 3;

/// What the in-memory store under the API does: works, fails every call, loses every write race,
/// or reads records back as bytes no version wrote.
#[derive(Default)]
struct Flaky {
    mode: AtomicU8,
}

/// What a real driver might say, with something nobody outside should see.
#[derive(Debug)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connect postgres://mfa:hunter2@10.1.2.3/mfa: refused")
    }
}

impl std::error::Error for Down {}

impl Hooks for Flaky {
    async fn before(&self, _: Call) -> Before {
        match self.mode.load(Ordering::SeqCst) {
            FAILS => Before::Fail(Box::new(Down)),
            CONFLICTS => Before::Lose,
            _ => Before::Proceed,
        }
    }

    fn loaded<T>(
        &self,
        _: &OrgId,
        customer: Option<&CustomerId>,
        loaded: Option<Versioned<Encoded<T>>>,
    ) -> Option<Versioned<Encoded<T>>> {
        match loaded {
            Some(stored) if customer.is_some() && self.mode.load(Ordering::SeqCst) == GARBLED => {
                Some(Versioned {
                    value: Encoded::new(vec![2, 0xFF, 0xFF, 0xFF]),
                    version: stored.version,
                })
            }
            other => other,
        }
    }
}

type FlakyStore = Hooked<MemoryStore, Flaky>;

/// A host whose session store fails when it is asked to mark a session.
#[derive(Clone, Default)]
struct ForgetfulHost(TestHost);

impl MfaHost for ForgetfulHost {
    async fn caller(&self, parts: &mut Parts) -> Result<Caller, HostError> {
        self.0.caller(parts).await
    }

    async fn mfa_passed(&self, _: &mut Parts, _: MfaPassed) -> Result<HeaderMap, HostError> {
        Err(HostError::Unavailable(
            "redis://:hunter2@cache: timeout".into(),
        ))
    }
}

type FlakyApi = MfaApi<Arc<FlakyStore>, ManualClock, ChaCha20Rng, ForgetfulHost>;

/// The API over a store that works until told otherwise, with alice's session `s1` signed in.
async fn api() -> (FlakyApi, Arc<FlakyStore>) {
    let store = Arc::new(Hooked::new(MemoryStore::new(), Flaky::default()));
    let (service, _) = fixture::service(Arc::clone(&store), T0, 2);
    let service = service.with_max_attempts(3);
    let host = ForgetfulHost::default();
    let alice = service
        .login_step(&OrgId::new(ORG).unwrap(), &CustomerId::new(ALICE).unwrap())
        .await
        .unwrap();
    host.0.keep(ORG, ALICE, "s1", alice.session());
    (MfaApi::new(Arc::new(service), host), store)
}

async fn send(api: &FlakyApi, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = api.router().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap(),
    )
}

fn as_alice(request: axum::http::request::Builder) -> axum::http::request::Builder {
    request
        .header("x-customer", ALICE)
        .header("x-session", "s1")
        .header(header::CONTENT_TYPE, "application/json")
}

fn as_admin(request: axum::http::request::Builder) -> axum::http::request::Builder {
    request
        .header("x-admin", ADMIN)
        .header(header::CONTENT_TYPE, "application/json")
}

#[tokio::test]
async fn a_failing_store_is_a_generic_503() {
    let (api, store) = api().await;
    store.hooks.mode.store(FAILS, Ordering::SeqCst);
    let requests = [
        as_alice(Request::get("/mfa")).body(Body::empty()),
        as_alice(Request::post("/mfa/enrollment")).body(Body::from("{}")),
        as_alice(Request::post("/mfa/verify")).body(Body::from(r#"{"code":"123456"}"#)),
        as_alice(Request::post("/mfa/verify"))
            .body(Body::from(r#"{"backup_code":"AAAA-AAAA-AAAA"}"#)),
        as_admin(Request::put("/admin/mfa")).body(Body::from(r#"{"enabled":true}"#)),
        as_admin(Request::get("/admin/audit")).body(Body::empty()),
    ];
    for request in requests {
        let (status, _, body) = send(&api, request.unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "unavailable");
        assert!(!body.to_string().contains("hunter2"), "{body}");
        assert!(!body.to_string().contains("postgres"), "{body}");
    }
    // The sign-in helper answers the same way.
    let error = api
        .login_step(&OrgId::new(ORG).unwrap(), &CustomerId::new(ALICE).unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!error.to_string().contains("hunter2"));
}

/// MFA switched on, and alice's enrollment started: its answer.
async fn switch_on_and_start_enrolling(api: &FlakyApi) -> Value {
    let on = as_admin(Request::put("/admin/mfa")).body(Body::from(r#"{"enabled":true}"#));
    let (status, _, _) = send(api, on.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let start = as_alice(Request::post("/mfa/enrollment")).body(Body::empty());
    let (status, _, started) = send(api, start.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED);
    started
}

/// A record that cannot be read is not an outage: 500 `corrupt` (no retry invited, nothing of the
/// record shown), for the customer's routes and the administrator's alike, and nothing changes.
#[tokio::test]
async fn a_corrupt_record_is_a_500_corrupt_not_a_503() {
    let (api, store) = api().await;
    let logs = Logs::capture();
    let _started = switch_on_and_start_enrolling(&api).await;
    let audit = api
        .service()
        .audit(&OrgId::new(ORG).unwrap(), &AuditQuery::default())
        .await
        .unwrap();
    store.hooks.mode.store(GARBLED, Ordering::SeqCst);
    let requests = [
        as_alice(Request::get("/mfa")).body(Body::empty()),
        as_alice(Request::post("/mfa/enrollment")).body(Body::from("{}")),
        as_alice(Request::post("/mfa/enrollment/confirm")).body(Body::from(r#"{"code":"123456"}"#)),
        as_alice(Request::post("/mfa/verify")).body(Body::from(r#"{"code":"123456"}"#)),
        as_admin(Request::get(format!("/admin/customers/{ALICE}/mfa"))).body(Body::empty()),
        as_admin(Request::post(format!("/admin/customers/{ALICE}/mfa/reset"))).body(Body::empty()),
    ];
    for request in requests {
        let (status, headers, body) = send(&api, request.unwrap()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body["error"], "corrupt", "{body}");
        assert!(headers.get(header::RETRY_AFTER).is_none());
        // One line a request, naming whose record it is, never its bytes.
        assert_eq!(
            logs.errors_naming(&["org=acme", ALICE, "cannot be read"]),
            1,
            "{}",
            logs.text()
        );
        assert!(!logs.text().contains("255"), "{}", logs.text());
        logs.clear();
    }
    store.hooks.mode.store(WORKS, Ordering::SeqCst);
    let after = api
        .service()
        .audit(&OrgId::new(ORG).unwrap(), &AuditQuery::default())
        .await
        .unwrap();
    assert_eq!(after, audit, "nothing was logged");
    let (status, _, body) = send(
        &api,
        as_alice(Request::get("/mfa")).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("pending")),
        "{body}"
    );
}

#[tokio::test]
async fn a_contended_record_asks_for_a_retry() {
    let (api, store) = api().await;
    store.hooks.mode.store(CONFLICTS, Ordering::SeqCst);
    let request = as_admin(Request::put("/admin/mfa"))
        .body(Body::from(r#"{"enabled":true}"#))
        .unwrap();
    let (status, headers, body) = send(&api, request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "unavailable");
    assert_eq!(headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn a_host_that_cannot_mark_the_session_is_reported() {
    let (api, store) = api().await;
    store.hooks.mode.store(WORKS, Ordering::SeqCst);
    let started = switch_on_and_start_enrolling(&api).await;
    let uri =
        mfa_http::mfa_core::uri::KeyUri::parse(started["otpauth_uri"].as_str().unwrap()).unwrap();
    let code = SoftApp::scan(&uri).code(T0 / 30);
    let (status, _, body) = send(
        &api,
        as_alice(Request::post("/mfa/enrollment/confirm"))
            .body(Body::from(json!({ "code": code }).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    assert!(api.host().0.proofs().is_empty(), "no session was marked");
}
