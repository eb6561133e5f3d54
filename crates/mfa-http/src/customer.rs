//! The signed-in customer's routes: status, enrollment, backup codes and the sign-in code.
//!
//! Each handler is the adapter's whole job: ask the host who is calling, hand the input to the
//! service, turn the outcome into JSON, and hand a proof of MFA to the host.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use mfa_core::{MfaPassed, Purpose, SessionCheck, StateName, StepUpCheck};

use crate::api::Backend;
use crate::extract::{CustomerCaller, PurposePath};
use crate::json::{self, JsonBody, NoFields, NoInput};
use crate::model::{
    BackupCodes, CodeRequest, EnrollmentStarted, MfaStatus, Next, StateChanged, StepUpRequest,
    StepUpState, StepUpStatus, SteppedUp, Verified, VerifyRequest,
};
use crate::{Error, ErrorBody, ErrorKind, MfaHost};

/// The signed-in customer's MFA, and what the session must do next.
///
/// A session that has not passed MFA sees only what it needs to go on (no count of backup codes).
#[utoipa::path(
    get,
    path = "/mfa",
    tag = "customer",
    responses(
        (status = 200, description = "The customer's MFA state.", body = MfaStatus),
        (status = 401, description = "`unauthenticated`: no signed-in session; `session_ended`: the customer's MFA was reset or changed since this session signed in.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller is not a customer.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`: a store failed; try again.", body = ErrorBody),
    )
)]
pub(crate) async fn status<A: Backend>(
    State(app): State<Arc<A>>,
    caller: CustomerCaller,
) -> Result<Response, Error> {
    let service = app.service();
    let check = service
        .check_session(&caller.org, &caller.customer, &caller.session)
        .await
        .map_err(|error| app.refusal(&error))?;
    let next = match check {
        SessionCheck::Ended => return Err(crate::error::session_ended()),
        SessionCheck::Complete(_) => Next::Done,
        SessionCheck::Enroll => Next::Enroll,
        _ => Next::Verify,
    };
    let report = service
        .status(&caller.org, &caller.customer)
        .await
        .map_err(|error| app.refusal(&error))?;
    let (status, org_enabled) = (report.customer, report.org_mfa == mfa_core::OrgMfa::On);
    Ok(json::response(
        StatusCode::OK,
        &MfaStatus {
            state: status.state,
            org_enabled,
            backup_codes_remaining: (next == Next::Done).then_some(status.backup_codes_remaining),
            backup_codes_low: (next == Next::Done).then_some(status.backup_codes_low()),
            next,
        },
    ))
}

/// Starts enrolling an authenticator app.
///
/// Issues a fresh secret (replacing a pending one) and returns it once, as a key URI, a QR code and
/// grouped base32 text. Confirm it with a code within `expires_at`. Only while the organisation has
/// MFA on, not once MFA is configured, and for a session signed in with the password since the
/// customer's last reset. The body is empty, `{}` or `null`, sent as JSON.
#[utoipa::path(
    post,
    path = "/mfa/enrollment",
    tag = "customer",
    request_body(content = Option<NoFields>, content_type = "application/json", description = "Empty, `{}` or `null`."),
    responses(
        (status = 201, description = "The new secret, shown once.", body = EnrollmentStarted),
        (status = 400, description = "`malformed_json`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`; `session_ended`: sign in again.", body = ErrorBody),
        (status = 403, description = "`mfa_disabled`: the organisation has MFA off; `forbidden`: not a customer.", body = ErrorBody),
        (status = 409, description = "`already_configured`: an administrator must reset MFA first.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send `Content-Type: application/json`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`: the body is not `{}`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn start_enrollment<A: Backend>(
    State(app): State<Arc<A>>,
    caller: CustomerCaller,
    _: NoInput,
) -> Result<Response, Error> {
    let enrollment = app
        .service()
        .start_enrollment(&caller.org, &caller.customer, &caller.session)
        .await
        .map_err(|error| app.refusal(&error))?;
    enrollment_started(&enrollment)
}

/// The answer that shows a new secret once: the key URI, its QR code and the grouped text.
fn enrollment_started(enrollment: &mfa_core::Enrollment) -> Result<Response, Error> {
    let uri = &enrollment.uri;
    let qr_svg = uri.to_qr_svg().map_err(|error| {
        tracing::error!(%error, "mfa-http: the key URI does not fit in a QR code");
        crate::error::internal()
    })?;
    let body = EnrollmentStarted {
        otpauth_uri: uri.to_uri_string().as_str().to_owned(),
        secret: uri.secret().to_base32_grouped().as_str().to_owned(),
        qr_svg: qr_svg.as_str().to_owned(),
        expires_at: enrollment.expires_at.as_secs(),
    };
    Ok(json::response(StatusCode::CREATED, &body))
}

/// Confirms the pending enrollment with a code from the app.
///
/// On success MFA is configured and the host marks the session as having passed MFA (its headers,
/// such as a rotated session cookie, come with this answer).
#[utoipa::path(
    post,
    path = "/mfa/enrollment/confirm",
    tag = "customer",
    request_body(content = CodeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "MFA is configured.", body = StateChanged),
        (status = 400, description = "`malformed_json`.", body = ErrorBody),
        (status = 401, description = "`invalid_code`: wrong or malformed; `unauthenticated`; `session_ended`.", body = ErrorBody),
        (status = 403, description = "`forbidden`.", body = ErrorBody),
        (status = 409, description = "`not_pending`: no enrollment to confirm; `already_configured`.", body = ErrorBody),
        (status = 410, description = "`enrollment_expired`: start again.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`.", body = ErrorBody),
        (status = 429, description = "`locked`: too many failures.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until attempts are accepted again."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn confirm_enrollment<A: Backend>(
    State(app): State<Arc<A>>,
    caller: CustomerCaller,
    head: Parts,
    JsonBody(body): JsonBody<CodeRequest>,
) -> Result<Response, Error> {
    let passed = app
        .service()
        .confirm_enrollment(&caller.org, &caller.customer, &caller.session, &body.code)
        .await
        .map_err(|error| app.refusal(&error))?;
    configured(&*app, head, passed).await
}

/// Starts replacing the authenticator (a new phone), without an administrator.
///
/// Issues a fresh secret, shown once as at enrollment, pending beside the current one, which keeps
/// working until the new one is confirmed (and if it never is). Needs a code fresh for the purpose
/// `replace_authenticator`: past the step-up age, 403 `step_up_required`, then
/// `POST /mfa/step-up` (with a backup code when the old phone is gone). A second start replaces
/// the pending secret.
#[utoipa::path(
    post,
    path = "/mfa/authenticator/replacement",
    tag = "customer",
    request_body(content = Option<NoFields>, content_type = "application/json", description = "Empty, `{}` or `null`."),
    responses(
        (status = 201, description = "The new secret, shown once.", body = EnrollmentStarted),
        (status = 400, description = "`malformed_json`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`; `session_ended`.", body = ErrorBody),
        (status = 403, description = "`step_up_required`: a fresh code for `replace_authenticator` first; `mfa_required`: the session has not passed MFA; `forbidden`.", body = ErrorBody),
        (status = 409, description = "`not_configured`: there is no authenticator to replace.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn start_replacement<A: Backend>(
    State(app): State<Arc<A>>,
    caller: CustomerCaller,
    _: NoInput,
) -> Result<Response, Error> {
    let enrollment = app
        .service()
        .start_replacement(&caller.org, &caller.customer, &caller.session)
        .await
        .map_err(|error| app.refusal(&error))?;
    enrollment_started(&enrollment)
}

/// Confirms the new authenticator with a code from it.
///
/// The new secret takes the old one's place at once; the backup codes stay; every other session
/// of the customer ends, and the host re-marks this one (its headers come with this answer).
#[utoipa::path(
    post,
    path = "/mfa/authenticator/replacement/confirm",
    tag = "customer",
    request_body(content = CodeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new authenticator is the one now.", body = StateChanged),
        (status = 400, description = "`malformed_json`.", body = ErrorBody),
        (status = 401, description = "`invalid_code`: wrong or malformed; `unauthenticated`; `session_ended`.", body = ErrorBody),
        (status = 403, description = "`mfa_required`: the session has not given a code; `forbidden`.", body = ErrorBody),
        (status = 409, description = "`not_pending`: no replacement to confirm; `not_configured`.", body = ErrorBody),
        (status = 410, description = "`enrollment_expired`: start again (the old authenticator still works).", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`.", body = ErrorBody),
        (status = 429, description = "`locked`: too many failures.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until attempts are accepted again."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn confirm_replacement<A: Backend>(
    State(app): State<Arc<A>>,
    caller: CustomerCaller,
    head: Parts,
    JsonBody(body): JsonBody<CodeRequest>,
) -> Result<Response, Error> {
    let passed = app
        .service()
        .confirm_replacement(&caller.org, &caller.customer, &caller.session, &body.code)
        .await
        .map_err(|error| app.refusal(&error))?;
    configured(&*app, head, passed).await
}

/// Generates a new set of backup codes, shown once; the previous set stops working.
///
/// Needs a second factor (a code, a backup code or the enrollment) that passed in this session
/// within the last ten minutes: a password alone, or a session that needed no MFA when it signed
/// in, must not mint a way around the second factor. A change of factor: every other session of
/// the customer ends, and the host re-marks this one (its headers come with this answer).
#[utoipa::path(
    post,
    path = "/mfa/backup-codes",
    tag = "customer",
    request_body(content = Option<NoFields>, content_type = "application/json", description = "Empty, `{}` or `null`."),
    responses(
        (status = 201, description = "The new codes, shown once.", body = BackupCodes),
        (status = 400, description = "`malformed_json`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`; `session_ended`.", body = ErrorBody),
        (status = 403, description = "`mfa_required`: give a code in this session first; `forbidden`.", body = ErrorBody),
        (status = 409, description = "`not_configured`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn generate_backup_codes<A: Backend>(
    State(app): State<Arc<A>>,
    caller: CustomerCaller,
    head: Parts,
    _: NoInput,
) -> Result<Response, Error> {
    let issued = off_the_workers(app.service().generate_backup_codes(
        &caller.org,
        &caller.customer,
        &caller.session,
    ))
    .await
    .map_err(|error| app.refusal(&error))?;
    let body = BackupCodes {
        codes: issued
            .codes
            .iter()
            .map(|code| code.as_str().to_owned())
            .collect(),
    };
    passed_to_host(
        &*app,
        head,
        issued.passed,
        json::response(StatusCode::CREATED, &body),
    )
    .await
}

/// Gives the sign-in's second factor: a TOTP code, or a backup code.
///
/// A wrong, malformed, replayed or already used code all answer 401 `invalid_code`; the audit log
/// records which it was. Failures count toward a lockout (429 with `Retry-After`). On success the
/// host marks the session as having passed MFA.
#[utoipa::path(
    post,
    path = "/mfa/verify",
    tag = "customer",
    request_body(content = VerifyRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The code was accepted; the session passed MFA.", body = Verified),
        (status = 400, description = "`malformed_json`.", body = ErrorBody),
        (status = 401, description = "`invalid_code`: wrong, malformed, replayed or used; `unauthenticated`; `session_ended`.", body = ErrorBody),
        (status = 403, description = "`forbidden`.", body = ErrorBody),
        (status = 409, description = "`not_configured`: there is nothing to verify.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`: not exactly one of `code` and `backup_code`.", body = ErrorBody),
        (status = 429, description = "`locked`: too many failures.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until attempts are accepted again."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn verify<A: Backend>(
    State(app): State<Arc<A>>,
    caller: CustomerCaller,
    head: Parts,
    JsonBody(body): JsonBody<VerifyRequest>,
) -> Result<Response, Error> {
    let given = match &body {
        VerifyRequest::Code(CodeRequest { code }) => Given::Totp(code),
        VerifyRequest::BackupCode(request) => Given::BackupCode(&request.backup_code),
    };
    let (passed, backup_codes_remaining) = give(&*app, &caller, given, None).await?;
    let verified = Verified {
        next: Next::Done,
        backup_codes_remaining,
        suggest_new_backup_codes: matches!(body, VerifyRequest::BackupCode(_))
            || backup_codes_remaining <= mfa_core::LOW_BACKUP_CODES,
    };
    passed_to_host(
        &*app,
        head,
        passed,
        json::response(StatusCode::OK, &verified),
    )
    .await
}

/// Gives a fresh code for a sensitive action without signing out (step-up).
///
/// The code is checked and used up as at sign-in (a code used once serves no other purpose, and
/// failures count toward the lockout); the session then counts as fresh for `purpose` for the
/// organisation's step-up age (ten minutes by default), and the host re-marks it (its headers come
/// with this answer). The code given at sign-in counts for every purpose while it is fresh; a
/// step-up, for its own. `backup_codes` is the purpose `POST /mfa/backup-codes` asks for.
#[utoipa::path(
    post,
    path = "/mfa/step-up",
    tag = "customer",
    request_body(content = StepUpRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The code was accepted; the session is fresh for the purpose.", body = SteppedUp),
        (status = 400, description = "`malformed_json`.", body = ErrorBody),
        (status = 401, description = "`invalid_code`: wrong, malformed, replayed or used; `unauthenticated`; `session_ended`.", body = ErrorBody),
        (status = 403, description = "`forbidden`.", body = ErrorBody),
        (status = 409, description = "`not_configured`: the customer has no second factor.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`: no valid `purpose`, or not exactly one of `code` and `backup_code`.", body = ErrorBody),
        (status = 429, description = "`locked`: too many failures.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until attempts are accepted again."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn step_up<A: Backend>(
    State(app): State<Arc<A>>,
    caller: CustomerCaller,
    head: Parts,
    JsonBody(body): JsonBody<StepUpRequest>,
) -> Result<Response, Error> {
    let (name, given) = match &body {
        StepUpRequest::Code(request) => (&request.purpose, Given::Totp(&request.code)),
        StepUpRequest::BackupCode(request) => {
            (&request.purpose, Given::BackupCode(&request.backup_code))
        }
    };
    let purpose = Purpose::new(name)
        .map_err(|error| Error::new(ErrorKind::InvalidBody, format!("purpose: {error}")))?;
    let (passed, backup_codes_remaining) = give(&*app, &caller, given, Some(purpose)).await?;
    let stepped_up = SteppedUp {
        purpose: purpose.as_str().to_owned(),
        backup_codes_remaining,
    };
    passed_to_host(
        &*app,
        head,
        passed,
        json::response(StatusCode::OK, &stepped_up),
    )
    .await
}

/// Whether an action for `purpose` may go ahead in this session now, or needs a fresh code first.
#[utoipa::path(
    get,
    path = "/mfa/step-up/{purpose}",
    tag = "customer",
    params(("purpose" = String, Path, description = "The purpose: 1 to 32 characters of a-z, 0-9, `_`, `-` and `.`.")),
    responses(
        (status = 200, description = "`fresh`, `required` (with `max_age_secs`) or `no_factor`.", body = StepUpStatus),
        (status = 401, description = "`unauthenticated`; `session_ended`.", body = ErrorBody),
        (status = 403, description = "`mfa_required`: the session has not passed MFA; `forbidden`.", body = ErrorBody),
        (status = 404, description = "`not_found`: not a purpose name.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(crate) async fn step_up_status<A: Backend>(
    State(app): State<Arc<A>>,
    caller: CustomerCaller,
    PurposePath(purpose): PurposePath,
) -> Result<Response, Error> {
    let check = app
        .service()
        .check_step_up(&caller.org, &caller.customer, &caller.session, purpose)
        .await
        .map_err(|error| app.refusal(&error))?;
    let (status, max_age_secs) = match check {
        StepUpCheck::Fresh => (StepUpState::Fresh, None),
        StepUpCheck::Required { max_age_secs } => (StepUpState::Required, Some(max_age_secs)),
        StepUpCheck::NoFactor => (StepUpState::NoFactor, None),
        StepUpCheck::Session(check) => return Err(session_refusal(check)),
        _ => return Err(Error::new(ErrorKind::Forbidden, "the request is refused")),
    };
    Ok(json::response(
        StatusCode::OK,
        &StepUpStatus {
            purpose: purpose.as_str().to_owned(),
            status,
            max_age_secs,
        },
    ))
}

/// The answer for a session that is not signed in to MFA (or is over), on a route that needs it.
pub(crate) fn session_refusal(check: SessionCheck) -> Error {
    match check {
        SessionCheck::Ended => crate::error::session_ended(),
        _ => Error::new(
            ErrorKind::MfaRequired,
            "give the second factor in this session first",
        ),
    }
}

/// A code the customer gave.
enum Given<'a> {
    Totp(&'a str),
    BackupCode(&'a str),
}

/// Checks a code the customer gave, at sign-in or at a step-up for `purpose`: the proof, and the
/// backup codes left.
async fn give<A: Backend>(
    app: &A,
    caller: &CustomerCaller,
    given: Given<'_>,
    purpose: Option<Purpose>,
) -> Result<(MfaPassed, u32), Error> {
    let service = app.service();
    let (org, customer, session) = (&caller.org, &caller.customer, &caller.session);
    match (given, purpose) {
        (Given::Totp(code), None) => service
            .verify_totp(org, customer, session, code)
            .await
            .map(|accepted| (accepted.passed, accepted.backup_codes_remaining)),
        (Given::Totp(code), Some(purpose)) => service
            .step_up_totp(org, customer, session, purpose, code)
            .await
            .map(|accepted| (accepted.passed, accepted.backup_codes_remaining)),
        (Given::BackupCode(code), None) => {
            off_the_workers(service.verify_backup_code(org, customer, session, code))
                .await
                .map(|accepted| (accepted.passed, accepted.remaining))
        }
        (Given::BackupCode(code), Some(purpose)) => {
            off_the_workers(service.step_up_backup_code(org, customer, session, purpose, code))
                .await
                .map(|accepted| (accepted.passed, accepted.remaining))
        }
    }
    .map_err(|error| app.refusal(&error))
}

/// Runs a step that hashes backup codes with argon2id (about 15 ms of CPU per code with the default
/// parameters: one to check a code, one per code of a new set) without holding up the other
/// requests of the worker thread it lands on. On a multi-thread runtime it runs inside
/// [`tokio::task::block_in_place`], which hands them to another thread first; elsewhere it simply
/// runs.
async fn off_the_workers<F: Future>(step: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| runtime.block_on(step))
        }
        _ => step.await,
    }
}

/// The answer to a confirmation (of an enrollment, or of a replacement): configured, with the
/// session handed to the host.
async fn configured<A: Backend>(
    app: &A,
    head: Parts,
    passed: MfaPassed,
) -> Result<Response, Error> {
    let state = StateChanged {
        state: StateName::Configured,
    };
    passed_to_host(app, head, passed, json::response(StatusCode::OK, &state)).await
}

/// Hands the proof to the host, and adds the host's headers to the success answer.
async fn passed_to_host<A: Backend>(
    app: &A,
    mut head: Parts,
    passed: MfaPassed,
    success: Response,
) -> Result<Response, Error> {
    let headers = app
        .host()
        .mfa_passed(&mut head, passed)
        .await
        .map_err(|error| Error::from_host(&error))?;
    Ok((headers, success).into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::off_the_workers;

    /// While a hashing step holds its thread, the runtime's other tasks still run, even with one
    /// worker thread: the step blocks until another task has run, which without `block_in_place`
    /// could never happen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_hashing_step_leaves_the_worker_threads() {
        let (started, has_started) = mpsc::channel();
        let (ran, other_ran) = mpsc::channel();
        let step = tokio::spawn(off_the_workers(async move {
            started.send(()).unwrap();
            other_ran.recv_timeout(Duration::from_secs(5))
        }));
        has_started.recv_timeout(Duration::from_secs(5)).unwrap();
        let other = tokio::spawn(async move { ran.send(()).unwrap() });
        step.await
            .unwrap()
            .expect("another task ran while the step held its thread");
        other.await.unwrap();
    }

    /// On a current-thread runtime there is nowhere else to go: the step simply runs.
    #[tokio::test(flavor = "current_thread")]
    async fn a_hashing_step_runs_on_a_current_thread_runtime() {
        assert_eq!(off_the_workers(async { 7 }).await, 7);
    }
}
