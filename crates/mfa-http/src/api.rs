//! The API value a host builds once: the service, the host's sessions, the router and its OpenAPI
//! document.

use core::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use mfa_core::{
    Clock, CustomerId, LoginStep, MfaSession, OrgId, Purpose, Service, ServiceError, StepUpCheck,
    Store,
};
use rand_core::CryptoRng;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::{OpenApi, Paths};

use crate::{Error, ErrorKind, MfaHost, admin, customer, openapi};

/// The MFA flows as a JSON API over `service`, for the customers and administrators `host` says are
/// calling. Cheap to clone (one `Arc`).
///
/// `S`, `C` and `R` are the [`Service`]'s store, clock and RNG; `H` is the host's [`MfaHost`].
pub struct MfaApi<S, C, R, H> {
    inner: Arc<Inner<S, C, R, H>>,
}

struct Inner<S, C, R, H> {
    service: Arc<Service<S, C, R>>,
    host: H,
    openapi: OpenApi,
}

impl<S, C, R, H> Clone for MfaApi<S, C, R, H> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, C, R, H> fmt::Debug for MfaApi<S, C, R, H> {
    // Nothing of the service (its keyring) or the host's state belongs in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaApi").finish_non_exhaustive()
    }
}

/// What the handlers need, behind one type parameter instead of four.
pub(crate) trait Backend: Send + Sync + 'static {
    type Store: Store + 'static;
    type Clock: Clock + 'static;
    type Rng: CryptoRng + Send + 'static;
    type Host: MfaHost;

    fn service(&self) -> &Service<Self::Store, Self::Clock, Self::Rng>;
    fn host(&self) -> &Self::Host;
    fn openapi(&self) -> &OpenApi;

    /// The answer to a failed service call, now.
    fn refusal(&self, error: &ServiceError<<Self::Store as Store>::Error>) -> Error {
        Error::from_service(error, self.service().clock().now())
    }
}

impl<S, C, R, H> Backend for Inner<S, C, R, H>
where
    S: Store + 'static,
    C: Clock + 'static,
    R: CryptoRng + Send + 'static,
    H: MfaHost,
{
    type Store = S;
    type Clock = C;
    type Rng = R;
    type Host = H;

    fn service(&self) -> &Service<S, C, R> {
        &self.service
    }

    fn host(&self) -> &H {
        &self.host
    }

    fn openapi(&self) -> &OpenApi {
        &self.openapi
    }
}

impl<S, C, R, H> MfaApi<S, C, R, H>
where
    S: Store + 'static,
    C: Clock + 'static,
    R: CryptoRng + Send + 'static,
    H: MfaHost,
{
    /// The API over `service` (shared with the host's own code, such as its sign-in handler), for
    /// the callers `host` identifies.
    pub fn new(service: Arc<Service<S, C, R>>, host: H) -> Self {
        let (_, openapi) = table::<Inner<S, C, R, H>>();
        Self {
            inner: Arc::new(Inner {
                service,
                host,
                openapi,
            }),
        }
    }

    /// The routes, to mount in the host's router: `Router::nest("/api", api.router())`. Any host
    /// state type works: the API carries its own.
    ///
    /// Customer routes: `GET /mfa`, `POST /mfa/enrollment`, `POST /mfa/enrollment/confirm`,
    /// `POST /mfa/backup-codes`, `POST /mfa/verify`, `POST /mfa/step-up`,
    /// `GET /mfa/step-up/{purpose}`, `POST /mfa/authenticator/replacement` and
    /// `POST /mfa/authenticator/replacement/confirm`. Administrator routes: `GET` and
    /// `PUT /admin/mfa`, `GET /admin/customers/{id}/mfa`, `POST /admin/customers/{id}/mfa/reset`,
    /// `GET /admin/audit`. And `GET /openapi.json`, the description of them all. Unknown paths
    /// and methods under the mount point answer with the JSON error shape too (so `merge` it only
    /// into a router without a fallback of its own: axum allows one), and every answer carries
    /// `Cache-Control: no-store`.
    pub fn router<HostState>(&self) -> Router<HostState>
    where
        HostState: Clone + Send + Sync + 'static,
    {
        let (router, _) = table::<Inner<S, C, R, H>>();
        router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.inner),
                ended_sessions::<Inner<S, C, R, H>>,
            ))
            .layer(middleware::from_fn(no_store))
            .with_state(Arc::clone(&self.inner))
    }

    /// The OpenAPI 3.1 description of [`router`](Self::router)'s routes, paths relative to the
    /// mount point (`GET /openapi.json` serves it with the mount point as its server URL). Merge it
    /// into the host's own document with [`OpenApi::merge`].
    #[must_use]
    pub fn openapi(&self) -> OpenApi {
        self.inner.openapi.clone()
    }

    /// The service.
    #[must_use]
    pub fn service(&self) -> &Arc<Service<S, C, R>> {
        &self.inner.service
    }

    /// The host.
    #[must_use]
    pub fn host(&self) -> &H {
        &self.inner.host
    }

    /// For the host's password sign-in handler, once the password checked out: what the session
    /// must do next, with this crate's error answers.
    ///
    /// Keep [`LoginStep::session`] in the new session: [`MfaHost::caller`] reports it from then on.
    /// [`LoginStep::Done`] carries the [`MfaPassed`](mfa_core::MfaPassed) proof (the organisation
    /// has MFA off and the customer never set it up); enroll and challenge leave the session to
    /// pass its second factor through the API's routes. [`Next::from`](crate::model::Next) gives
    /// the `"next"` value for a JSON answer. This is not routed through `mfa_passed` because at
    /// sign-in the host is creating the session the proof belongs to, which the request does not
    /// carry yet.
    ///
    /// # Errors
    /// 503 `unavailable` or 500 `internal` when the store fails; it is logged.
    pub async fn login_step(&self, org: &OrgId, customer: &CustomerId) -> Result<LoginStep, Error> {
        self.inner
            .service
            .login_step(org, customer)
            .await
            .map_err(|error| self.inner.refusal(&error))
    }

    /// For the host's own sensitive routes (changing the card on file, say): whether `session` may
    /// do what `purpose` names now, with this crate's error answers. Call it before the action, on
    /// every request: it reads the customer's record, so a reset or a change of factor elsewhere
    /// takes effect at once.
    ///
    /// `Ok` when a second factor is fresh for `purpose` ([`Service::check_step_up`]), and when
    /// the customer has none to give (the organisation has MFA off and they never set it up: a
    /// host that wants more, such as the password again, asks for it itself).
    ///
    /// # Errors
    /// 403 `step_up_required` (answer it by asking for a code and sending it to
    /// `POST /mfa/step-up` with this purpose, then retry); 403 `mfa_required` for a session that
    /// has not passed MFA; 401 `session_ended`; 503 or 500 when the store fails.
    pub async fn require_step_up(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        session: &MfaSession,
        purpose: Purpose,
    ) -> Result<(), Error> {
        let check = self
            .inner
            .service
            .check_step_up(org, customer, session, purpose)
            .await
            .map_err(|error| self.inner.refusal(&error))?;
        match check {
            StepUpCheck::Fresh | StepUpCheck::NoFactor => Ok(()),
            StepUpCheck::Required { max_age_secs } => {
                Err(crate::error::step_up_required(purpose, max_age_secs))
            }
            StepUpCheck::Session(check) => Err(crate::customer::session_refusal(check)),
            // A check this version does not know: refused, not guessed at.
            _ => Err(Error::new(ErrorKind::Forbidden, "the request is refused")),
        }
    }
}

/// Every route and its documentation, from one list: each handler's `#[utoipa::path]` gives both
/// the path and methods it is routed at and its operation in the document, so the two cannot
/// disagree.
fn table<A: Backend>() -> (Router<Arc<A>>, OpenApi) {
    Table::new()
        .add::<customer::__path_status, _, _>(customer::status::<A>)
        .add::<customer::__path_start_enrollment, _, _>(customer::start_enrollment::<A>)
        .add::<customer::__path_confirm_enrollment, _, _>(customer::confirm_enrollment::<A>)
        .add::<customer::__path_generate_backup_codes, _, _>(customer::generate_backup_codes::<A>)
        .add::<customer::__path_verify, _, _>(customer::verify::<A>)
        .add::<customer::__path_step_up, _, _>(customer::step_up::<A>)
        .add::<customer::__path_start_replacement, _, _>(customer::start_replacement::<A>)
        .add::<customer::__path_confirm_replacement, _, _>(customer::confirm_replacement::<A>)
        .add::<customer::__path_step_up_status, _, _>(customer::step_up_status::<A>)
        .add::<admin::__path_org_mfa, _, _>(admin::org_mfa::<A>)
        .add::<admin::__path_set_org_mfa, _, _>(admin::set_org_mfa::<A>)
        .add::<admin::__path_customer_mfa, _, _>(admin::customer_mfa::<A>)
        .add::<admin::__path_reset, _, _>(admin::reset::<A>)
        .add::<admin::__path_audit, _, _>(admin::audit::<A>)
        .add::<openapi::__path_document, _, _>(openapi::document::<A>)
        .finish()
}

struct Table<A> {
    router: Router<Arc<A>>,
    paths: Paths,
}

impl<A: Backend> Table<A> {
    fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Paths::new(),
        }
    }

    fn add<P, H, T>(self, handler: H) -> Self
    where
        P: utoipa::Path,
        H: Handler<T, Arc<A>>,
        T: 'static,
    {
        let path = P::path();
        let methods = P::methods();
        let routed = methods.iter().fold(MethodRouter::new(), |routed, method| {
            routed.on(filter(method), handler.clone())
        });
        let mut paths = self.paths;
        paths.add_path_operation(&path, methods, P::operation());
        Self {
            router: self.router.route(&path, routed),
            paths,
        }
    }

    fn finish(self) -> (Router<Arc<A>>, OpenApi) {
        let mut document = openapi::base();
        document.paths = self.paths;
        (self.router, document)
    }
}

fn filter(method: &HttpMethod) -> MethodFilter {
    match method {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

async fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "no such route")
}

async fn method_not_allowed() -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        "this route does not take this method",
    )
}

/// Hands a session the router found over (401 `session_ended`) to the host to drop, and adds the
/// host's headers (a cleared cookie) to the answer.
async fn ended_sessions<A: Backend>(
    axum::extract::State(app): axum::extract::State<Arc<A>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let mut head = parts.clone();
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if response.extensions().get::<ErrorKind>() == Some(&ErrorKind::SessionEnded) {
        match app.host().session_ended(&mut head).await {
            Ok(headers) => response.headers_mut().extend(headers),
            Err(error) => tracing::warn!(
                error = &error as &dyn core::error::Error,
                "mfa-http: the host could not drop an ended session"
            ),
        }
    }
    response
}

/// Every answer is about one caller's account (and some hold secrets): no cache may keep it, and no
/// browser may guess its type.
async fn no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
