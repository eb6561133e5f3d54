//! The administrator's routes: the organisation's switch, one customer's MFA, resets, the audit log.
//!
//! An administrator acts on the organisation the host's session names, never on one taken from the
//! request, so one portal's administrator cannot reach another's customers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use mfa_core::StateName;

use crate::api::Backend;
use crate::extract::{AdminCaller, AuditQuery, CustomerPath};
use crate::json::{self, JsonBody, NoFields, NoInput};
use crate::model::{AuditEvent, AuditPage, AuditParams, CustomerMfa, OrgMfa, StateChanged};
use crate::{Error, ErrorBody};

/// Whether the organisation has MFA switched on.
#[utoipa::path(
    get,
    path = "/admin/mfa",
    tag = "admin",
    responses(
        (status = 200, description = "The organisation's switch.", body = OrgMfa),
        (status = 401, description = "`unauthenticated`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an administrator.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn org_mfa<A: Backend>(
    State(app): State<Arc<A>>,
    admin: AdminCaller,
) -> Result<Response, Error> {
    let policy = app
        .service()
        .org_policy(&admin.org)
        .await
        .map_err(|error| app.refusal(&error))?;
    Ok(json::response(
        StatusCode::OK,
        &OrgMfa {
            enabled: policy.enabled(),
        },
    ))
}

/// Switches MFA on or off for every customer of the organisation.
///
/// Customers who configured MFA keep being challenged after it is switched off, until an
/// administrator resets them.
#[utoipa::path(
    put,
    path = "/admin/mfa",
    tag = "admin",
    request_body(content = OrgMfa, content_type = "application/json"),
    responses(
        (status = 200, description = "The switch as stored.", body = OrgMfa),
        (status = 400, description = "`malformed_json`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an administrator.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn set_org_mfa<A: Backend>(
    State(app): State<Arc<A>>,
    admin: AdminCaller,
    JsonBody(body): JsonBody<OrgMfa>,
) -> Result<Response, Error> {
    let policy = app
        .service()
        .set_org_mfa(
            &admin.org,
            if body.enabled {
                mfa_core::OrgMfa::On
            } else {
                mfa_core::OrgMfa::Off
            },
            &admin.name,
        )
        .await
        .map_err(|error| app.refusal(&error))?;
    Ok(json::response(
        StatusCode::OK,
        &OrgMfa {
            enabled: policy.enabled(),
        },
    ))
}

/// One customer's MFA.
///
/// A customer this service never saw reads as `unconfigured`: which customers exist is the host's
/// business.
#[utoipa::path(
    get,
    path = "/admin/customers/{id}/mfa",
    tag = "admin",
    params(("id" = String, Path, description = "The customer id (percent-encoded), 1 to 255 bytes, no control characters.")),
    responses(
        (status = 200, description = "The customer's MFA.", body = CustomerMfa),
        (status = 400, description = "`invalid_customer_id`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an administrator.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn customer_mfa<A: Backend>(
    State(app): State<Arc<A>>,
    admin: AdminCaller,
    CustomerPath(customer): CustomerPath,
) -> Result<Response, Error> {
    let report = app
        .service()
        .status(&admin.org, &customer)
        .await
        .map_err(|error| app.refusal(&error))?;
    Ok(json::response(
        StatusCode::OK,
        &CustomerMfa::new(customer.as_str(), &report),
    ))
}

/// Resets one customer's MFA (a lost phone and no backup codes left).
///
/// The secret and backup codes are erased and any lockout cleared; the customer enrolls again at
/// the next sign-in while the organisation has MFA on. Verify who is asking before you do this
/// (NIST SP 800-63B 6.1.2.3). The body is empty, `{}` or `null`, sent as JSON.
#[utoipa::path(
    post,
    path = "/admin/customers/{id}/mfa/reset",
    tag = "admin",
    params(("id" = String, Path, description = "The customer id (percent-encoded).")),
    request_body(content = Option<NoFields>, content_type = "application/json", description = "Empty, `{}` or `null`."),
    responses(
        (status = 200, description = "The customer is unconfigured, and every session of theirs has ended.", body = StateChanged),
        (status = 400, description = "`invalid_customer_id`; `malformed_json`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an administrator.", body = ErrorBody),
        (status = 404, description = "`not_found`: no MFA is stored for this id (ids are exact: `Alice@` is not `alice@`); nothing was written.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn reset<A: Backend>(
    State(app): State<Arc<A>>,
    admin: AdminCaller,
    CustomerPath(customer): CustomerPath,
    _: NoInput,
) -> Result<Response, Error> {
    app.service()
        .reset(&admin.org, &customer, &admin.name)
        .await
        .map_err(|error| app.refusal(&error))?;
    Ok(json::response(
        StatusCode::OK,
        &StateChanged {
            state: StateName::Unconfigured,
        },
    ))
}

/// The organisation's audit log, newest first, a page at a time.
///
/// Every attempt and every change is there, with the real reason for each refusal (a replayed code
/// is `attempt_rejected` with `reason: replayed_code`, though the customer was told `invalid_code`).
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of events, newest first.", body = AuditPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an administrator.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn audit<A: Backend>(
    State(app): State<Arc<A>>,
    admin: AdminCaller,
    AuditQuery(query): AuditQuery,
) -> Result<Response, Error> {
    let events = app
        .service()
        .audit(&admin.org, &query)
        .await
        .map_err(|error| app.refusal(&error))?;
    // A full page may have more behind it; a short one is the last.
    let next_before = if events.len() >= query.limit {
        events.last().map(|event| event.seq)
    } else {
        None
    };
    Ok(json::response(
        StatusCode::OK,
        &AuditPage {
            events: events.iter().map(AuditEvent::from).collect(),
            next_before,
        },
    ))
}
