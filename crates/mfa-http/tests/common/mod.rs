//! The test host, a harness that sends requests through the router with `oneshot`, and the check
//! that every answer matches the OpenAPI document the router serves.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of the shared harness"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use mfa_http::mfa_core::{
    Actor, Clock, ManualClock, MemoryStore, Service, StatusReport,
    audit::{AuditQuery, StoredEvent},
    uri::KeyUri,
};
use mfa_http::{Caller, CustomerId, HostError, MfaApi, MfaHost, MfaPassed, MfaSession, OrgId};
use mfa_store_tests::fixture::{self, SoftApp};
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};
use tower::ServiceExt;

/// 2026-01-01T00:00:00Z.
pub const T0: u64 = 1_767_225_600;
pub const ORG: &str = "acme";
pub const ALICE: &str = "alice@acme.test";
pub const BOB: &str = "bob@acme.test";
pub const CAROL: &str = "carol@acme.test";
pub const ADMIN: &str = "admin@acme.test";

/// `name` as who did an administrative action.
pub fn actor(name: &str) -> Actor {
    Actor::new(name).unwrap()
}

/// A host whose "sessions" are request headers: `x-customer`, `x-admin`, `x-org` and `x-session`.
/// The harness signs a customer's session id in (the service's `login_step`, as a password sign-in
/// does) the first time a request carries it; `mfa_passed` keeps the session it is given. `x-fail`
/// makes the session store fail.
/// A session of the test host: (org, customer, session id).
type SessionKey = (String, String, String);

#[derive(Clone, Default)]
pub struct TestHost {
    /// (org, customer, session id) to the MFA session the host keeps.
    sessions: Arc<Mutex<HashMap<SessionKey, MfaSession>>>,
    proofs: Arc<Mutex<Vec<MfaPassed>>>,
    /// Every (customer, session id) `session_ended` was told of, in order. The sessions stay known,
    /// so that a test can send them again.
    ended: Arc<Mutex<Vec<(String, String)>>>,
}

impl TestHost {
    /// Every (customer, session id) the router said had ended, in order.
    pub fn ended(&self) -> Vec<(String, String)> {
        self.ended.lock().unwrap().clone()
    }

    /// Every proof `mfa_passed` received, in order.
    pub fn proofs(&self) -> Vec<MfaPassed> {
        self.proofs.lock().unwrap().clone()
    }

    /// The MFA session kept for `customer`'s session `id` (of `acme`), if it signed in.
    pub fn session(&self, customer: &str, id: &str) -> Option<MfaSession> {
        self.sessions
            .lock()
            .unwrap()
            .get(&(ORG.to_owned(), customer.to_owned(), id.to_owned()))
            .copied()
    }

    /// Keeps `session` for `customer`'s session `id` of `org`: what a host's password sign-in does
    /// with the session `login_step` gives.
    pub fn keep(&self, org: &str, customer: &str, id: &str, session: MfaSession) {
        self.sessions.lock().unwrap().insert(
            (org.to_owned(), customer.to_owned(), id.to_owned()),
            session,
        );
    }

    fn knows(&self, org: &str, customer: &str, id: &str) -> bool {
        self.sessions.lock().unwrap().contains_key(&(
            org.to_owned(),
            customer.to_owned(),
            id.to_owned(),
        ))
    }
}

fn text<'a>(parts: &'a Parts, name: &str) -> Result<Option<&'a str>, HostError> {
    parts
        .headers
        .get(name)
        .map(|value| value.to_str().map_err(|_| HostError::Unauthenticated))
        .transpose()
}

impl MfaHost for TestHost {
    async fn caller(&self, parts: &mut Parts) -> Result<Caller, HostError> {
        if text(parts, "x-fail")?.is_some() {
            return Err(HostError::Unavailable("the session store is down".into()));
        }
        let org = OrgId::new(text(parts, "x-org")?.unwrap_or(ORG))
            .map_err(|_| HostError::Unauthenticated)?;
        let customer = text(parts, "x-customer")?
            .map(CustomerId::new)
            .transpose()
            .map_err(|_| HostError::Unauthenticated)?;
        let admin = text(parts, "x-admin")?;
        let id = text(parts, "x-session")?.unwrap_or_default();
        let session = match &customer {
            Some(customer) => Some(
                self.sessions
                    .lock()
                    .unwrap()
                    .get(&(
                        org.as_str().to_owned(),
                        customer.as_str().to_owned(),
                        id.to_owned(),
                    ))
                    .copied()
                    .ok_or(HostError::Unauthenticated)?,
            ),
            None => None,
        };
        match (customer.zip(session), admin) {
            (Some((customer, session)), Some(admin)) => {
                Ok(Caller::customer(org, customer, session).with_admin(actor(admin)))
            }
            (Some((customer, session)), None) => Ok(Caller::customer(org, customer, session)),
            (None, Some(admin)) => Ok(Caller::admin(org, actor(admin))),
            (None, None) => Err(HostError::Unauthenticated),
        }
    }

    async fn mfa_passed(
        &self,
        parts: &mut Parts,
        proof: MfaPassed,
    ) -> Result<HeaderMap, HostError> {
        let session = text(parts, "x-session")?.ok_or(HostError::Unauthenticated)?;
        let customer = text(parts, "x-customer")?.ok_or(HostError::Unauthenticated)?;
        assert_eq!(
            proof.customer().as_str(),
            customer,
            "the proof is the caller's"
        );
        let org = text(parts, "x-org")?.unwrap_or(ORG);
        assert_eq!(proof.org().as_str(), org, "the proof is the caller's");
        self.keep(org, customer, session, proof.session());
        self.proofs.lock().unwrap().push(proof);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&format!("sid={session}-mfa; HttpOnly")).unwrap(),
        );
        Ok(headers)
    }

    async fn session_ended(&self, parts: &mut Parts) -> Result<HeaderMap, HostError> {
        let session = text(parts, "x-session")?.unwrap_or_default().to_owned();
        let customer = text(parts, "x-customer")?.unwrap_or_default().to_owned();
        self.ended.lock().unwrap().push((customer, session));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SET_COOKIE,
            HeaderValue::from_static("sid=; Max-Age=0"),
        );
        Ok(headers)
    }
}

pub type Api = MfaApi<MemoryStore, ManualClock, ChaCha20Rng, TestHost>;

/// A request to send.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub uri: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Self {
            method,
            uri: uri.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(uri: impl Into<String>) -> Self {
        Self::new(Method::GET, uri)
    }

    pub fn post(uri: impl Into<String>) -> Self {
        Self::new(Method::POST, uri)
    }

    pub fn put(uri: impl Into<String>) -> Self {
        Self::new(Method::PUT, uri)
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_ref()).unwrap(),
        ));
        self
    }

    /// A JSON body with its content type.
    pub fn json(self, body: &Value) -> Self {
        self.raw("application/json", serde_json::to_vec(body).unwrap())
    }

    /// Bytes with a content type.
    pub fn raw(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    /// The empty object, as JSON: what the routes without input take.
    pub fn empty_json(self) -> Self {
        self.json(&json!({}))
    }

    pub fn customer(self, customer: &str, session: &str) -> Self {
        self.header("x-customer", customer)
            .header("x-session", session)
    }

    pub fn admin(self) -> Self {
        self.header("x-admin", ADMIN)
    }
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Reply {
    pub fn kind(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }

    /// Asserts the status (and for errors, the kind).
    #[track_caller]
    pub fn expect(&self, status: u16, kind: Option<&str>) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{:#}", self.json);
        if let Some(kind) = kind {
            assert_eq!(self.kind(), kind, "{:#}", self.json);
        }
        self
    }
}

/// The router over a memory store and a manual clock, the test host, and the served document.
pub struct Harness {
    pub api: Api,
    pub app: Router,
    pub clock: ManualClock,
    pub host: TestHost,
    pub doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Harness {
    /// MFA off for `acme`, with cheap backup-code hashing (production keeps argon2's default).
    pub async fn new() -> Self {
        Self::mounted_at(None).await
    }

    /// The same, with the routes under `prefix` through `Router::nest`.
    pub async fn mounted_at(prefix: Option<&str>) -> Self {
        let (service, clock) = fixture::service(MemoryStore::new(), T0, 42);
        let mut settings = fixture::fast_settings();
        settings.issuer = "Acme Billing".into();
        service
            .update_settings(&org(), settings, &actor(ADMIN))
            .await
            .unwrap();
        let host = TestHost::default();
        let api = MfaApi::new(Arc::new(service), host.clone());
        let app = match prefix {
            Some(prefix) => Router::new().nest(prefix, api.router()),
            None => api.router(),
        };
        let mut harness = Self {
            api,
            app,
            clock,
            host,
            doc: Value::Null,
            validators: Mutex::new(HashMap::new()),
        };
        let served = format!("{}/openapi.json", prefix.unwrap_or(""));
        harness.doc = harness.send(Req::get(served)).await.json;
        harness
    }

    pub fn service(&self) -> &Service<MemoryStore, ManualClock, ChaCha20Rng> {
        self.api.service()
    }

    /// Sends the request and checks the answer against the document: JSON, not cacheable, a
    /// documented status for its operation with a body that validates against the documented
    /// schema, or the 404/405 error of the fallback for what is not an operation.
    pub async fn call(&self, req: Req) -> Reply {
        let reply = self.send(req.clone()).await;
        self.check(&req, &reply);
        reply
    }

    /// Signs in the customer's session id the request carries, if it is new: what a host's password
    /// sign-in does.
    pub async fn sign_in_if_new(&self, req: &Req) {
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.to_str().ok())
        };
        let (Some(customer), Some(id)) = (header("x-customer"), header("x-session")) else {
            return;
        };
        let org = header("x-org").unwrap_or(ORG);
        if self.host.knows(org, customer, id) {
            return;
        }
        let (Ok(org_id), Ok(customer_id)) = (OrgId::new(org), CustomerId::new(customer)) else {
            return;
        };
        if let Ok(step) = self.api.login_step(&org_id, &customer_id).await {
            self.host.keep(org, customer, id, step.session());
        }
    }

    async fn send(&self, req: Req) -> Reply {
        if req.headers.iter().all(|(key, _)| key != "x-fail") {
            self.sign_in_if_new(&req).await;
        }
        let mut builder = Request::builder().method(req.method.clone()).uri(&req.uri);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let response = self
            .app
            .clone()
            .oneshot(builder.body(Body::from(req.body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            panic!(
                "{} {}: not JSON ({error}): {:?}",
                req.method,
                req.uri,
                String::from_utf8_lossy(&bytes)
            )
        });
        Reply {
            status: parts.status,
            headers: parts.headers,
            json,
        }
    }

    fn check(&self, req: &Req, reply: &Reply) {
        let what = format!("{} {} -> {}", req.method, req.uri, reply.status);
        assert_eq!(
            reply.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json",
            "{what}"
        );
        assert_eq!(
            reply.headers.get(header::CACHE_CONTROL).unwrap(),
            "no-store",
            "{what}"
        );
        let path = req.uri.split('?').next().unwrap();
        let schema_key = match self.operation(&req.method, path) {
            Some(template) => {
                let status = reply.status.as_u16().to_string();
                let response = &self.doc["paths"][&template][req.method.as_str().to_lowercase()]["responses"]
                    [&status];
                assert!(
                    response.is_object(),
                    "{what}: status {status} is not documented for {template}"
                );
                if reply.status == StatusCode::TOO_MANY_REQUESTS {
                    assert!(response["headers"]["Retry-After"].is_object(), "{what}");
                    assert!(reply.headers.contains_key(header::RETRY_AFTER), "{what}");
                }
                format!("{template}|{}|{status}", req.method)
            }
            None => {
                assert!(
                    matches!(reply.status.as_u16(), 404 | 405),
                    "{what}: answered, yet not a documented operation"
                );
                String::from("error")
            }
        };
        let validator = self.validator(&schema_key);
        if let Err(error) = validator.validate(&reply.json) {
            panic!(
                "{what}: the body does not match the documented schema: {error}\n{:#}",
                reply.json
            );
        }
        if reply.status.as_u16() >= 400 {
            let body: mfa_http::ErrorBody = serde_json::from_value(reply.json.clone())
                .unwrap_or_else(|e| panic!("{what}: not the error shape ({e}): {}", reply.json));
            assert_eq!(body.error.status(), reply.status, "{what}");
        }
    }

    /// The documented path template this request path is an operation of, if any.
    pub fn operation(&self, method: &Method, path: &str) -> Option<String> {
        let path = path.strip_prefix(self.prefix()).unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        self.doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(template, item)| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(part, segment)| {
                        // axum's router matches a parameter to an empty segment too.
                        part == segment || part.starts_with('{')
                    })
                    && item[method.as_str().to_lowercase()].is_object()
            })
            .map(|(template, _)| template.clone())
    }

    fn prefix(&self) -> &str {
        self.doc["servers"][0]["url"].as_str().unwrap_or("")
    }

    /// Every (method, path template) the document lists.
    pub fn documented(&self) -> Vec<(Method, String)> {
        let mut operations = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if let Ok(method) = method.to_uppercase().parse::<Method>() {
                    operations.push((method, path.clone()));
                }
            }
        }
        operations.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
        operations
    }

    /// Whether `body` matches the schema documented for `method template -> status`.
    pub fn matches_document(
        &self,
        method: Method,
        template: &str,
        status: u16,
        body: &Value,
    ) -> bool {
        self.validator(&format!("{template}|{method}|{status}"))
            .is_valid(body)
    }

    fn validator(&self, key: &str) -> Arc<jsonschema::Validator> {
        let mut validators = self.validators.lock().unwrap();
        if let Some(validator) = validators.get(key) {
            return Arc::clone(validator);
        }
        let mut schema = if key == "error" {
            json!({"$ref": "#/components/schemas/ErrorBody"})
        } else {
            let mut fields = key.split('|');
            let (template, method, status) = (
                fields.next().unwrap(),
                fields.next().unwrap().to_lowercase(),
                fields.next().unwrap(),
            );
            self.doc["paths"][template][method]["responses"][status]["content"]["application/json"]
                ["schema"]
                .clone()
        };
        assert!(schema.is_object(), "{key}: no schema documented");
        // Resolve `#/components/...` against a root that carries the document's components.
        schema["components"] = self.doc["components"].clone();
        let validator = Arc::new(
            jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("{key}: the documented schema does not compile: {e}")),
        );
        validators.insert(key.to_owned(), Arc::clone(&validator));
        validator
    }

    /// What the service holds for these customers, the organisation's switch, the whole audit log
    /// and the proofs the host received: equal snapshots mean nothing changed.
    pub async fn snapshot(&self) -> Snapshot {
        let service = self.service();
        let mut customers = Vec::new();
        for customer in [ALICE, BOB, CAROL] {
            customers.push(
                service
                    .status(&org(), &CustomerId::new(customer).unwrap())
                    .await
                    .unwrap(),
            );
        }
        let audit = service
            .audit(
                &org(),
                &AuditQuery {
                    limit: usize::MAX,
                    ..AuditQuery::default()
                },
            )
            .await
            .unwrap();
        Snapshot {
            customers,
            org_enabled: service.org_policy(&org()).await.unwrap().enabled(),
            audit,
            proofs: self.host.proofs().len(),
        }
    }

    /// The administrator switches MFA on.
    pub async fn switch_on(&self) {
        self.call(
            Req::put("/admin/mfa")
                .admin()
                .json(&json!({ "enabled": true })),
        )
        .await
        .expect(200, None);
    }

    /// `customer` enrolls in `session` and confirms with the app's code: their key URI.
    pub async fn set_up(&self, customer: &str, session: &str) -> KeyUri {
        let started = self
            .call(
                Req::post("/mfa/enrollment")
                    .customer(customer, session)
                    .empty_json(),
            )
            .await;
        started.expect(201, None);
        let uri = KeyUri::parse(started.json["otpauth_uri"].as_str().unwrap()).unwrap();
        self.call(
            Req::post("/mfa/enrollment/confirm")
                .customer(customer, session)
                .json(&json!({ "code": self.app_code(&uri) })),
        )
        .await
        .expect(200, None);
        uri
    }

    /// A new set of backup codes for `customer`, made in `session`.
    pub async fn backup_codes(&self, customer: &str, session: &str) -> Vec<String> {
        let reply = self
            .call(
                Req::post("/mfa/backup-codes")
                    .customer(customer, session)
                    .empty_json(),
            )
            .await;
        reply.expect(201, None);
        serde_json::from_value(reply.json["codes"].clone()).unwrap()
    }

    /// The code the app holding `uri` shows now.
    pub fn app_code(&self, uri: &KeyUri) -> String {
        SoftApp::scan(uri).code_now(&self.clock, 0)
    }

    /// A code no step of the default window (one either side) accepts now.
    pub fn wrong_code(&self, uri: &KeyUri) -> String {
        let app = SoftApp::scan(uri);
        app.wrong_code(self.clock.now().as_secs() / 30)
    }
}

#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub customers: Vec<StatusReport>,
    pub org_enabled: bool,
    pub audit: Vec<StoredEvent>,
    pub proofs: usize,
}

pub fn org() -> OrgId {
    OrgId::new(ORG).unwrap()
}

pub fn id(customer: &str) -> CustomerId {
    CustomerId::new(customer).unwrap()
}
