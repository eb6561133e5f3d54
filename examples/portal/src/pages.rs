//! The HTML pages: sign-in, the MFA set-up and the code prompt, the account, the administrator's
//! settings. Plain server-rendered HTML; `/static/app.js` drives the MFA steps through the JSON API.
//!
//! The forms that post here carry a CSRF token in a hidden field, checked in constant time before
//! anything else: the session's on the signed-in pages (sign-out, the administrator's), and on the
//! sign-in form, which visitors load before they have a session, a signed token that needs none
//! (see `signin_token`): loading the form stores nothing. The cookies are `SameSite=Strict` as
//! well.

// Helpers return the page to answer with as their error, once per request: boxing it would only add
// an allocation to every refusal.
#![allow(
    clippy::result_large_err,
    reason = "an error here is the response itself, built once per request"
)]

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mfa_core::{
    Actor, CustomerStatus, OrgMfa, PassedBy, Purpose, Refusal, ServiceError, SessionCheck,
    StateName, StepUpCheck, Store, audit::AuditQuery,
};
use mfa_http::ErrorKind;
use mfa_http::model::{AuditEvent, Next};
use serde::Deserialize;
use zeroize::Zeroize;

use crate::accounts::Role;
use crate::html::{self, Header, escape, slug};
use crate::portal::{DEMO_ACCOUNTS, Portal, PortalClock, SignInError, accounts_failed};
use crate::sessions::{Session, SessionId, SignedIn};

/// The largest form body read (the sign-in form is well under 2 KiB).
pub(crate) const MAX_FORM_BYTES: usize = 16 * 1024;

/// Audit events shown on the settings page.
const AUDIT_SHOWN: usize = 25;

type Shared<S, C> = State<Arc<Portal<S, C>>>;

/// The request's session, looked up once.
struct Visit {
    id: Option<SessionId>,
    session: Option<Session>,
}

impl Visit {
    fn of<S: Store + 'static, C: PortalClock>(portal: &Portal<S, C>, headers: &HeaderMap) -> Self {
        match portal.sessions.lookup(headers, portal.now()) {
            Some((id, session)) => Self {
                id: Some(id),
                session: Some(session),
            },
            None => Self {
                id: None,
                session: None,
            },
        }
    }

    fn user(&self) -> Option<&SignedIn> {
        self.session
            .as_ref()
            .and_then(|session| session.user.as_ref())
    }

    fn csrf(&self) -> &str {
        self.session.as_ref().map_or("", Session::csrf)
    }

    /// Whether the form's token is this session's.
    fn csrf_ok(&self, token: &str) -> bool {
        self.session
            .as_ref()
            .is_some_and(|session| session.csrf_matches(token))
    }

    fn header(&self) -> Option<Header<'_>> {
        self.user().map(|user| Header {
            email: user.email.as_str(),
            csrf: self.csrf(),
            admin: user.role == Role::Admin,
            complete: user.looks_complete(),
        })
    }

    /// The one-time message, taken from the session.
    fn take_flash<S: Store + 'static, C: PortalClock>(
        &self,
        portal: &Portal<S, C>,
    ) -> Option<String> {
        let id = self.id.as_ref()?;
        self.session.as_ref()?.flash.as_ref()?;
        let mut flash = None;
        portal
            .sessions
            .update(id, |session| flash = session.flash.take());
        flash
    }
}

fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// Where a signed-in user's account lives.
const fn home(user: &SignedIn) -> &'static str {
    match user.role {
        Role::Admin => "/admin",
        Role::Customer => "/account",
    }
}

/// The error page for a store that failed (the error is logged, not shown).
/// The page for a service call that failed, classified (and logged, once) as `mfa-http`'s routes
/// classify it: a database that is away is worth retrying, a record that cannot be read is not.
fn failed<S: Store + 'static, C: PortalClock>(
    portal: &Portal<S, C>,
    error: &ServiceError<<S as Store>::Error>,
) -> Response {
    error_page(&mfa_http::Error::from_service(
        error,
        portal.service().clock().now(),
    ))
}

/// The page for an error already classified and logged.
fn error_page(error: &mfa_http::Error) -> Response {
    let mut response = match error.kind() {
        ErrorKind::Corrupt => message_page(
            error.status(),
            "Your sign-in settings cannot be read",
            "The portal cannot read what it stored about your second factor, so it lets no one \
             in with it. Its administrator can see which record in the server's log; contact \
             support. Trying again will not help.",
        ),
        ErrorKind::Unavailable => message_page(
            error.status(),
            "Try again shortly",
            "The portal cannot reach its database right now. Try again in a moment.",
        ),
        _ => message_page(error.status(), "Something went wrong", error.message()),
    };
    if let Some(secs) = error.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        r#"<section class="card narrow"><h1>{}</h1><p>{}</p><p><a href="/">Back to the portal</a></p></section>"#,
        escape(title),
        escape(text)
    );
    html::page(status, title, "message", None, &body)
}

/// Sends a signed-in customer to the page for where their sign-in stands now: the account, the
/// set-up (also for a session that needed no MFA, once the organisation switched it on), the code
/// prompt, or, for a session that a reset or a change of factor ended, the sign-in page.
fn route_customer<S: Store + 'static, C: PortalClock>(
    portal: &Portal<S, C>,
    visit: &Visit,
    check: SessionCheck,
) -> Response {
    match check {
        // A session let in without a factor of its own (the organisation switched MFA off after its
        // password check) gained a privilege: it gets a fresh id, as a passed factor would give.
        SessionCheck::Complete(_)
            if visit
                .user()
                .is_some_and(|user| user.mfa.is_some_and(|mfa| mfa.passed().is_none())) =>
        {
            match visit
                .id
                .as_ref()
                .and_then(|id| portal.sessions.rotate(id, portal.now(), |_| true))
            {
                Some(new_id) => {
                    with_cookie(see_other("/account"), portal.sessions.set_cookie(&new_id))
                }
                None => see_other("/signin"),
            }
        }
        SessionCheck::Complete(_) => see_other("/account"),
        SessionCheck::Enroll => see_other("/mfa/setup"),
        SessionCheck::Challenge => see_other("/mfa/verify"),
        _ => end_session(portal, visit),
    }
}

/// Ends the visit's session (a reset or a change of factor ended it) and sends the browser to sign
/// in again.
fn end_session<S: Store + 'static, C: PortalClock>(
    portal: &Portal<S, C>,
    visit: &Visit,
) -> Response {
    if let Some(id) = &visit.id {
        portal.sessions.remove(id);
    }
    with_cookie(see_other("/signin"), portal.sessions.clear_cookie())
}

/// `GET /`: wherever the visitor's session stands.
pub(crate) async fn root<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    match customer_of(&portal, &visit).await {
        Ok((_, check)) => route_customer(&portal, &visit, check),
        Err(response) => response,
    }
}

/// The sign-in form.
#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

impl Drop for SignInForm {
    fn drop(&mut self) {
        self.password.zeroize();
    }
}

fn signin_form(csrf: &str, email: &str, notice: Option<(&str, &str)>) -> String {
    let mut body = String::from(
        r#"<section class="card narrow" id="signin">
<h1>Sign in</h1>
<p class="muted">to the Acme Billing customer portal</p>
"#,
    );
    if let Some((class, text)) = notice {
        let _ = writeln!(
            body,
            r#"<p id="notice" class="{class}" role="alert">{}</p>"#,
            escape(text)
        );
    }
    let _ = write!(
        body,
        r#"<form method="post" action="/signin" id="signin-form">
<input type="hidden" name="csrf" value="{csrf}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required maxlength="254" value="{email}" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<div class="actions"><button type="submit" id="sign-in" class="primary">Sign in</button></div>
</form>
</section>
<section class="card narrow demo" id="demo-accounts">
<h2>Demo accounts</h2>
<table><tbody>
"#,
        csrf = escape(csrf),
        email = escape(email),
    );
    for (email, password, role) in DEMO_ACCOUNTS {
        let role = match role {
            Role::Admin => "administrator",
            Role::Customer => "customer",
        };
        let _ = writeln!(
            body,
            "<tr><td><code>{email}</code></td><td><code>{password}</code></td><td>{role}</td></tr>"
        );
    }
    body.push_str("</tbody></table>\n</section>");
    body
}

/// The sign-in page, with a form token for the browser (and the cookie it is bound to, when the
/// browser has none yet). No session is made for it.
fn signin_response<S: Store + 'static, C: PortalClock>(
    portal: &Portal<S, C>,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    notice: Option<(&str, &str)>,
) -> Response {
    let (csrf, cookie) = portal.signin_tokens.issue(headers, portal.now());
    let response = html::page(
        status,
        "Sign in",
        "signin",
        None,
        &signin_form(&csrf, email, notice),
    );
    match cookie {
        Some(cookie) => with_cookie(response, cookie),
        None => response,
    }
}

/// `GET /signin`.
pub(crate) async fn signin_page<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    if let Some(user) = visit.user() {
        let complete = match user.role {
            Role::Admin => true,
            Role::Customer => match portal.check(user).await {
                Ok(check) => check.is_complete(),
                Err(error) => return failed(&portal, &error),
            },
        };
        if complete {
            return see_other(home(user));
        }
    }
    let flash = visit.take_flash(&portal);
    let notice = flash.as_deref().map(|text| ("notice", text));
    signin_response(&portal, &headers, StatusCode::OK, "", notice)
}

/// `POST /signin` (form: `csrf`, `email`, `password`).
pub(crate) async fn signin_submit<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return signin_response(
            &portal,
            &headers,
            StatusCode::BAD_REQUEST,
            "",
            Some(("error", "The form could not be read. Please try again.")),
        );
    };
    if !portal
        .signin_tokens
        .verify(&headers, &form.csrf, portal.now())
    {
        // No token, an old one, or one made for another browser: a stale tab, or a cross-site post.
        // The form comes back with a token this browser's cookie makes good.
        return signin_response(
            &portal,
            &headers,
            StatusCode::FORBIDDEN,
            &form.email,
            Some(("error", "This sign-in form has expired. Please try again.")),
        );
    }
    let visit = Visit::of(&portal, &headers);
    match portal.sign_in(&form.email, &form.password).await {
        Ok((user, next)) => {
            let path = match next {
                Next::Enroll => "/mfa/setup",
                Next::Done => home(&user),
                // A step this version does not know is not "done": it asks for a code.
                _ => "/mfa/verify",
            };
            let id = portal.open_session(visit.id.as_ref(), user);
            with_cookie(see_other(path), portal.sessions.set_cookie(&id))
        }
        Err(SignInError::Wrong) => signin_response(
            &portal,
            &headers,
            StatusCode::UNAUTHORIZED,
            &form.email,
            Some(("error", "Wrong email or password.")),
        ),
        Err(SignInError::Throttled(secs)) => must_wait(
            &portal,
            &headers,
            &form.email,
            secs,
            "Too many wrong passwords.",
        ),
        Err(SignInError::Busy(secs)) => must_wait(
            &portal,
            &headers,
            &form.email,
            secs,
            "Too many sign-in attempts right now.",
        ),
        Err(SignInError::Failed(error)) => error_page(&error),
    }
}

/// The sign-in page again, 429 with `Retry-After`: `why`, then try again in `secs` seconds.
fn must_wait<S: Store + 'static, C: PortalClock>(
    portal: &Portal<S, C>,
    headers: &HeaderMap,
    email: &str,
    secs: u64,
    why: &str,
) -> Response {
    let text = format!("{why} Try again in {secs} seconds.");
    let mut response = signin_response(
        portal,
        headers,
        StatusCode::TOO_MANY_REQUESTS,
        email,
        Some(("error", &text)),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// A form that carries only the CSRF token.
#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /signout` (form: `csrf`).
pub(crate) async fn signout<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    let Some(id) = &visit.id else {
        return see_other("/signin");
    };
    if !form.is_ok_and(|Form(form)| visit.csrf_ok(&form.csrf)) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Sign out again",
            "This page has expired. Go back, reload it, and sign out again.",
        );
    }
    portal.sessions.remove(id);
    // A session for the message on the sign-in page: one that never signed in, the first a full
    // store lets go, and one per sign-out at most (the form itself needs none).
    let (new_id, _) = portal.sessions.create(None, portal.now());
    portal.sessions.update(&new_id, |session| {
        session.flash = Some("You have signed out.".to_owned());
    });
    with_cookie(see_other("/signin"), portal.sessions.set_cookie(&new_id))
}

/// The signed-in customer of this visit with what their session may do now (checked against their
/// record), or the answer that sends everyone else away.
async fn customer_of<S: Store + 'static, C: PortalClock>(
    portal: &Portal<S, C>,
    visit: &Visit,
) -> Result<(SignedIn, SessionCheck), Response> {
    let user = match visit.user() {
        None => return Err(see_other("/signin")),
        Some(user) if user.role == Role::Admin => return Err(see_other("/admin")),
        Some(user) => user.clone(),
    };
    match portal.check(&user).await {
        Ok(SessionCheck::Ended) => Err(end_session(portal, visit)),
        Ok(check) => Ok((user, check)),
        Err(error) => Err(failed(portal, &error)),
    }
}

/// `GET /mfa/setup`: "Enable MFA for your account", then the QR code and key, the code, and the
/// backup codes, one step at a time (`/static/app.js` calls the API).
pub(crate) async fn setup<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    // Also a session that signed in while MFA was off, once the organisation switched it on.
    let user = match customer_of(&portal, &visit).await {
        Ok((user, SessionCheck::Enroll)) => user,
        Ok((_, check)) => return route_customer(&portal, &visit, check),
        Err(response) => return response,
    };
    let body = format!(
        r#"<section class="card narrow" id="setup" data-account="{email}">
<noscript><p class="error">This page needs JavaScript to show the QR code.</p></noscript>
<div class="step" id="step-start">
<p class="eyebrow">Step 1 of 4</p>
<h1>Enable MFA for your account</h1>
<p>Acme Billing asks for a second step at sign-in: a code from an authenticator app on your phone
(Google Authenticator, Microsoft Authenticator, 1Password, Authy or any other TOTP app).</p>
<p class="error" id="configure-error" role="alert" hidden></p>
<div class="actions"><button type="button" id="configure" class="primary">Configure</button></div>
</div>
<div class="step" id="step-scan" hidden>
<p class="eyebrow">Step 2 of 4</p>
<h1>Scan the QR code</h1>
<p>In your authenticator app, add an account and scan this code.</p>
<div id="qr" class="qr"></div>
<p>Can't scan it? Enter this key by hand (time-based, 6 digits, 30 seconds):</p>
<p class="key-line"><code id="secret" class="key"></code></p>
<p class="muted small"><a id="otpauth-link" href="/mfa/setup">Open in an authenticator app on this device</a></p>
<div class="actions"><button type="button" id="next" class="primary">Next</button></div>
</div>
<div class="step" id="step-code" hidden>
<p class="eyebrow">Step 3 of 4</p>
<h1>Enter the code</h1>
<p>Enter the 6-digit code your app now shows for Acme Billing.</p>
<label for="code">Code</label>
<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" maxlength="10" placeholder="123456" spellcheck="false">
<p class="error" id="code-error" role="alert" hidden></p>
<div class="actions"><button type="button" id="back">Back</button><button type="button" id="verify" class="primary">Verify</button></div>
</div>
<div class="step" id="step-enabled" hidden>
<p class="eyebrow">Step 4 of 4</p>
<h1>MFA is enabled</h1>
<p class="success" id="enabled-message">Your app is verified and MFA is on for your account. From now on, signing in takes your password and a code from your app.</p>
<p>Backup codes let you sign in when your phone is not at hand. Each works once.</p>
<p class="error" id="backup-error" role="alert" hidden></p>
<div class="actions"><button type="button" id="generate-backup-codes" class="primary">Generate Backup Codes</button></div>
</div>
{backup}
</section>"#,
        email = escape(user.email.as_str()),
        backup = backup_codes_step(true),
    );
    let header = visit.header();
    html::page(
        StatusCode::OK,
        "Enable MFA",
        "setup",
        header.as_ref(),
        &body,
    )
}

/// The backup codes, filled in by the script once generated.
fn backup_codes_step(continue_to_sign_in: bool) -> String {
    // At set-up the customer goes on only once they say the codes are saved: without them, a lost
    // phone means a support ticket.
    let finish = if continue_to_sign_in {
        r#"<label class="check"><input type="checkbox" id="codes-saved"> I have saved my backup codes somewhere safe</label>
<div class="actions"><button type="button" id="continue" class="primary" disabled>Continue to Sign In</button></div>"#
    } else {
        ""
    };
    format!(
        r#"<div class="step" id="step-backup" hidden>
<h2>Your backup codes</h2>
<p>Keep these somewhere safe, such as a password manager. Each code signs you in once without your
phone. They are shown only now; generating a new set makes these stop working.</p>
<ol id="backup-codes" class="codes"></ol>
<div class="actions"><button type="button" id="download">Download</button><button type="button" id="copy">Copy</button><span id="copy-status" class="muted" role="status"></span></div>
{finish}
</div>"#
    )
}

/// `GET /mfa/verify`: the code prompt at sign-in, with "use a backup code instead".
pub(crate) async fn verify<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    match customer_of(&portal, &visit).await {
        Ok((_, SessionCheck::Challenge)) => {}
        Ok((_, check)) => return route_customer(&portal, &visit, check),
        Err(response) => return response,
    }
    let body = r#"<section class="card narrow" id="challenge">
<noscript><p class="error">This page needs JavaScript.</p></noscript>
<div id="totp-panel">
<h1>Two-step verification</h1>
<p>Open your authenticator app and enter the 6-digit code for Acme Billing.</p>
<label for="code">Code</label>
<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" maxlength="10" placeholder="123456" spellcheck="false" autofocus>
<div class="actions"><button type="button" id="verify" class="primary">Verify</button></div>
<p><button type="button" id="use-backup-code" class="link">Use a backup code instead</button></p>
</div>
<div id="backup-panel" hidden>
<h1>Use a backup code</h1>
<p>Enter one of the backup codes you saved when you set up MFA. Each code works once.</p>
<label for="backup-code">Backup code</label>
<input id="backup-code" name="backup-code" type="text" autocomplete="off" maxlength="40" placeholder="XXXX-XXXX-XXXX" spellcheck="false">
<div class="actions"><button type="button" id="verify-backup" class="primary">Verify</button></div>
<p><button type="button" id="use-code" class="link">Use your authenticator app instead</button></p>
</div>
<p class="error" id="error" role="alert" hidden></p>
</section>"#;
    let header = visit.header();
    html::page(
        StatusCode::OK,
        "Two-step verification",
        "verify",
        header.as_ref(),
        body,
    )
}

fn state_label(status: &CustomerStatus) -> &'static str {
    match status.state {
        StateName::Configured => "On",
        StateName::Pending => "Being set up",
        StateName::Unconfigured => "Not set up",
        _ => "Unknown",
    }
}

/// `GET /account`: what MFA protects.
pub(crate) async fn account<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    let user = match customer_of(&portal, &visit).await {
        Ok((user, SessionCheck::Complete(_))) => user,
        Ok((_, check)) => return route_customer(&portal, &visit, check),
        Err(response) => return response,
    };
    let (status, org_enabled) = match portal.service().status(&user.org, &user.email).await {
        Ok(report) => (report.customer, report.org_mfa == OrgMfa::On),
        Err(error) => return failed(&portal, &error),
    };
    // A new set is offered when this session signed in with a backup code (used up now, and the
    // phone may be gone), and whenever one or none is left.
    let signed_in_with_backup_code = user
        .mfa
        .and_then(|mfa| mfa.passed())
        .is_some_and(|passed| passed.by == PassedBy::BackupCode);
    let renew = if signed_in_with_backup_code {
        r#"<p class="notice" id="renew-backup-codes" role="status">You signed in with a backup code, which is now used up. If your phone is lost, generate a new set of codes and keep it safe.</p>"#.to_owned()
    } else if status.backup_codes_low() {
        format!(
            r#"<p class="notice" id="backup-codes-low" role="status">{}</p>"#,
            match status.backup_codes_remaining {
                0 =>
                    "You have no backup codes. Generate a set and keep it safe: without your phone, they are the only way in.",
                _ => "You have one backup code left. Generate a new set and keep it safe.",
            }
        )
    } else {
        String::new()
    };
    let action = match (status.state, org_enabled) {
        (StateName::Configured, _) => format!(
            r#"{renew}<p class="error" id="backup-error" role="alert" hidden></p>
<p class="muted small">Lost them, or used most? A new set replaces the old one.</p>
<div class="actions"><button type="button" id="generate-backup-codes">Generate Backup Codes</button></div>
{}
{}"#,
            step_up_panel(Purpose::BACKUP_CODES, "Making new backup codes", true),
            backup_codes_step(false)
        ) + REPLACE_AUTHENTICATOR,
        (_, true) => r#"<p class="notice">Acme Billing now requires MFA.</p>
<div class="actions"><a class="button primary" id="setup-mfa" href="/mfa/setup">Set up MFA</a></div>"#
            .to_owned(),
        (_, false) => {
            r#"<p class="muted">Your organisation has not switched on MFA.</p>"#.to_owned()
        }
    };
    let flash = visit
        .take_flash(&portal)
        .map(|text| format!(r#"<p class="success" role="status">{}</p>"#, escape(&text)))
        .unwrap_or_default();
    let body = format!(
        r#"<section class="card" id="account">
{flash}<h1>Your account</h1>
<p class="muted">Signed in as <strong id="account-email">{email}</strong></p>
</section>
<section class="card" id="security">
<h2>Sign-in security</h2>
<dl class="facts">
<dt>Multi-factor authentication</dt><dd id="mfa-state">{state}</dd>
<dt>Backup codes left</dt><dd id="backup-codes-remaining">{remaining}</dd>
</dl>
{action}
</section>
<section class="card" id="billing">
<h2>Billing</h2>
<p class="muted">Invoices would be here. This page, and <code>GET /api/me</code>, answer only once the
session has passed every required sign-in step.</p>
<div class="actions"><a class="button" id="payment-method-link" href="/billing/payment-method">Payment method</a></div>
</section>"#,
        email = escape(user.email.as_str()),
        state = state_label(&status),
        remaining = status.backup_codes_remaining,
    );
    let header = visit.header();
    html::page(
        StatusCode::OK,
        "Your account",
        "account",
        header.as_ref(),
        &body,
    )
}

/// "Replace authenticator" on the account page: a new phone's app set up beside the current one,
/// which keeps working until the new one is confirmed (`/static/app.js` drives the API).
const REPLACE_AUTHENTICATOR: &str = r#"
<div id="replace">
<h3>Authenticator app</h3>
<p class="muted small">New phone? Set up the app on it here. The old one keeps working until you
confirm the new one; your backup codes stay as they are.</p>
<div class="actions"><button type="button" id="replace-authenticator">Replace authenticator</button></div>
<p class="error" id="replace-error" role="alert" hidden></p>
<div id="replace-scan" hidden>
<p>Scan this QR code with the app on your new phone, or type the key.</p>
<div id="replace-qr" class="qr"></div>
<p class="key-line"><code id="replace-secret" class="key"></code></p>
<label for="replace-code">Code from the new app</label>
<input id="replace-code" type="text" inputmode="numeric" autocomplete="one-time-code" maxlength="10" placeholder="123456" spellcheck="false">
<div class="actions"><button type="button" id="replace-confirm" class="primary">Confirm new authenticator</button></div>
</div>
<p class="success" id="replace-done" role="status" hidden>Your new authenticator app is set up. The old one no longer works, and every other session was signed out.</p>
</div>"#;

/// "Confirm it's you": a fresh code for `purpose`, from the app or a backup code, without
/// signing out (`/static/app.js` sends it to `POST /api/mfa/step-up`). `action` names what it
/// unlocks, for the customer.
fn step_up_panel(purpose: Purpose, action: &str, hidden: bool) -> String {
    format!(
        r#"<div id="step-up" class="step-up" data-purpose="{purpose}"{hidden}>
<h2>Confirm it's you</h2>
<p><span id="step-up-action">{action}</span> needs a fresh code. Open your authenticator app and enter
the code for Acme Billing, or enter one of your backup codes.</p>
<label for="step-up-code">Code</label>
<input id="step-up-code" type="text" autocomplete="one-time-code" maxlength="40" placeholder="123456" spellcheck="false">
<div class="actions"><button type="button" id="step-up-verify" class="primary">Confirm</button></div>
<p class="error" id="step-up-error" role="alert" hidden></p>
</div>"#,
        purpose = escape(purpose.as_str()),
        action = escape(action),
        hidden = if hidden { " hidden" } else { "" },
    )
}

/// `GET /billing/payment-method`: the card on file, and a form to change it (a demo: nothing is
/// charged). Changing it needs a second factor fresh for `payment_method`: past the organisation's
/// step-up age the page asks for a code first.
pub(crate) async fn payment_method<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    let user = match customer_of(&portal, &visit).await {
        Ok((user, SessionCheck::Complete(_))) => user,
        Ok((_, check)) => return route_customer(&portal, &visit, check),
        Err(response) => return response,
    };
    let Some(session) = user.mfa else {
        return see_other("/signin");
    };
    let check = match portal
        .service()
        .check_step_up(&user.org, &user.email, &session, Purpose::PAYMENT_METHOD)
        .await
    {
        Ok(check) => check,
        Err(error) => return failed(&portal, &error),
    };
    let card = portal
        .cards
        .lock()
        .ok()
        .and_then(|cards| cards.get(&user.email).cloned())
        .unwrap_or_else(|| "none".to_owned());
    let form = r#"<div id="card-form">
<label for="card-number">Card number</label>
<input id="card-number" type="text" inputmode="numeric" autocomplete="cc-number" maxlength="23" placeholder="4242 4242 4242 4242" spellcheck="false">
<label for="card-expiry">Expiry (MM/YY)</label>
<input id="card-expiry" type="text" inputmode="numeric" autocomplete="cc-exp" maxlength="5" placeholder="12/30" spellcheck="false">
<div class="actions"><button type="button" id="save-card" class="primary">Save card</button></div>
<p class="error" id="card-error" role="alert" hidden></p>
<p class="success" id="card-saved" role="status" hidden></p>
</div>"#;
    let action = match check {
        StepUpCheck::Fresh | StepUpCheck::NoFactor => form.to_owned(),
        StepUpCheck::Required { .. } => {
            step_up_panel(Purpose::PAYMENT_METHOD, "Changing the card on file", false)
        }
        StepUpCheck::Session(check) => return route_customer(&portal, &visit, check),
        _ => return see_other("/account"),
    };
    let body = format!(
        r#"<section class="card narrow" id="payment">
<h1>Payment method</h1>
<p>Card on file: <strong id="card-on-file">{card}</strong></p>
{action}
<p class="muted small">A demo: nothing is charged, and only the card's last four digits are kept.</p>
<p><a href="/account" id="back-to-account">Back to your account</a></p>
</section>"#,
        card = escape(&card),
    );
    let header = visit.header();
    html::page(
        StatusCode::OK,
        "Payment method",
        "payment",
        header.as_ref(),
        &body,
    )
}

/// The signed-in administrator of this visit, or the answer that sends everyone else away.
fn admin_of(visit: &Visit) -> Result<SignedIn, Response> {
    match visit.user() {
        Some(user) if user.role == Role::Admin => Ok(user.clone()),
        Some(_) => Err(message_page(
            StatusCode::FORBIDDEN,
            "Administrators only",
            "This page is for the portal's administrators.",
        )),
        None => Err(see_other("/signin")),
    }
}

/// One audit event's details as `name: value` pairs.
fn details(event: &AuditEvent) -> String {
    match &event.details {
        serde_json::Value::Object(fields) => fields
            .iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(text) => format!("{name}: {text}"),
                other => format!("{name}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

/// `GET /admin`: the organisation's MFA switch, its customers, and its audit log.
pub(crate) async fn admin<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    let admin = match admin_of(&visit) {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let service = portal.service();
    let policy = match service.org_policy(&admin.org).await {
        Ok(policy) => policy,
        Err(error) => return failed(&portal, &error),
    };
    let customers = match portal.accounts.list(&admin.org, Role::Customer).await {
        Ok(customers) => customers,
        Err(error) => return error_page(&accounts_failed(&error)),
    };
    let csrf = escape(visit.csrf());
    let mut rows = String::new();
    for customer in &customers {
        let status = match service.status(&admin.org, customer).await {
            Ok(status) => status.customer,
            // One record that cannot be read is that row's trouble, not the page's: it is logged
            // (naming it) and shown as such, and the other customers stay in reach.
            Err(error @ ServiceError::Corrupt(_)) => {
                let _logged = mfa_http::Error::from_service(&error, service.clock().now());
                let email = escape(customer.as_str());
                let _ = write!(
                    rows,
                    r#"<tr id="customer-{row_id}" data-customer="{email}">
<td>{email}</td>
<td class="state" data-state="corrupt">cannot be read (see the server's log)</td>
<td></td>
<td></td>
</tr>
"#,
                    row_id = slug(customer.as_str()),
                );
                continue;
            }
            Err(error) => return failed(&portal, &error),
        };
        let locked = status
            .locked_until
            .map(|until| {
                format!(
                    r#"<br><span class="small muted">locked until {}</span>"#,
                    escape(&mfa_ops::audit::rfc3339(until))
                )
            })
            .unwrap_or_default();
        let email = escape(customer.as_str());
        let row_id = slug(customer.as_str());
        let _ = write!(
            rows,
            r#"<tr id="customer-{row_id}" data-customer="{email}">
<td>{email}</td>
<td class="state" data-state="{state}">{label}{locked}</td>
<td>{remaining}</td>
<td class="right"><form method="post" action="/admin/customers/reset" class="inline">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="customer" value="{email}">
<button type="submit" id="reset-{row_id}" class="danger" data-customer="{email}"{disabled}>Reset Portal MFA</button>
</form></td>
</tr>
"#,
            state = status.state.as_str(),
            label = state_label(&status),
            remaining = status.backup_codes_remaining,
            disabled = if status.state == StateName::Unconfigured {
                " disabled"
            } else {
                ""
            },
        );
    }
    let query = AuditQuery {
        limit: AUDIT_SHOWN,
        ..AuditQuery::default()
    };
    let events = match service.audit(&admin.org, &query).await {
        Ok(events) => events,
        Err(error) => return failed(&portal, &error),
    };
    let mut audit = String::new();
    for stored in &events {
        let event = AuditEvent::from(stored);
        let _ = writeln!(
            audit,
            r#"<tr data-kind="{kind}"><td class="nowrap small">{at}</td><td>{customer}</td><td><code>{kind}</code></td><td class="small">{details}</td></tr>"#,
            at = escape(&event.at),
            customer = escape(event.customer.as_deref().unwrap_or("")),
            kind = escape(&event.kind),
            details = escape(&details(&event)),
        );
    }
    let flash = visit
        .take_flash(&portal)
        .map(|text| {
            format!(
                r#"<p class="success" id="flash" role="status">{}</p>"#,
                escape(&text)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"<section class="card" id="settings">
{flash}<h1>Settings</h1>
<h2>Security</h2>
<form method="post" action="/admin/settings" id="settings-form">
<input type="hidden" name="csrf" value="{csrf}">
<label class="check"><input type="checkbox" id="mfa-enabled" name="mfa_enabled" value="on"{checked}> Enable multi-factor authentication (MFA)</label>
<p class="muted small">Every customer then sets up an authenticator app at their next sign-in. Switching it
off again does not remove MFA from customers who set it up: reset them below.</p>
<label for="step-up-minutes">Ask for a fresh code before sensitive changes after (minutes)</label>
<input id="step-up-minutes" name="step_up_minutes" type="number" min="1" max="1440" required value="{step_up_minutes}">
<p class="muted small">Changing the card on file or making new backup codes needs a code from the
last this many minutes; customers give a fresh one without signing out.</p>
<div class="actions"><button type="submit" id="save" class="primary">Save</button></div>
</form>
</section>
<section class="card" id="customers-card">
<h2>Customers</h2>
<table id="customers">
<thead><tr><th>Customer</th><th>MFA</th><th>Backup codes</th><th></th></tr></thead>
<tbody>
{rows}</tbody>
</table>
</section>
<section class="card" id="audit-card">
<h2>Audit log</h2>
<p class="muted small">The latest {AUDIT_SHOWN} events, newest first; all of them at <code>GET /api/admin/audit</code>.</p>
<table id="audit">
<thead><tr><th>When</th><th>Customer</th><th>Event</th><th>Details</th></tr></thead>
<tbody>
{audit}</tbody>
</table>
</section>"#,
        checked = if policy.enabled() { " checked" } else { "" },
        step_up_minutes = policy.settings().step_up_max_age_secs.div_ceil(60),
    );
    let header = visit.header();
    html::page(StatusCode::OK, "Settings", "admin", header.as_ref(), &body)
}

/// `POST /admin/settings` (form: `csrf`, `mfa_enabled=on` when ticked).
#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    mfa_enabled: Option<String>,
    /// Absent from forms of before the setting: the age is left as it is.
    step_up_minutes: Option<String>,
}

/// Checks that the visit is an administrator's and the form's token is the session's.
fn admin_post(visit: &Visit, csrf: Option<&str>) -> Result<SignedIn, Response> {
    let admin = admin_of(visit)?;
    if csrf.is_some_and(|csrf| visit.csrf_ok(csrf)) {
        Ok(admin)
    } else {
        Err(message_page(
            StatusCode::FORBIDDEN,
            "Try again",
            "This page has expired. Go back, reload it, and try again.",
        ))
    }
}

fn flash_and_return<S: Store + 'static, C: PortalClock>(
    portal: &Portal<S, C>,
    visit: &Visit,
    text: String,
) -> Response {
    if let Some(id) = &visit.id {
        portal
            .sessions
            .update(id, |session| session.flash = Some(text));
    }
    see_other("/admin")
}

/// The answer to a form post whose fields could not be read.
fn unreadable_form() -> Response {
    message_page(
        StatusCode::BAD_REQUEST,
        "Try again",
        "The form could not be read.",
    )
}

/// `POST /admin/settings`: switches MFA on or off for the organisation.
pub(crate) async fn admin_settings<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    let form = form.ok().map(|Form(form)| form);
    let admin = match admin_post(&visit, form.as_ref().map(|form| form.csrf.as_str())) {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let Some(form) = form else {
        return unreadable_form();
    };
    let enabled = match form.mfa_enabled.as_deref() {
        None => false,
        Some("on") => true,
        Some(_) => {
            return unreadable_form();
        }
    };
    let step_up_secs = match form.step_up_minutes.as_deref().map(str::trim) {
        None => None,
        Some(minutes) => match minutes.parse::<u64>() {
            Ok(minutes @ 1..=1440) => Some(minutes * 60),
            _ => {
                return message_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Not saved",
                    "The step-up age must be a whole number of minutes from 1 to 1440.",
                );
            }
        },
    };
    let service = portal.service();
    let policy = match service.org_policy(&admin.org).await {
        Ok(policy) => policy,
        Err(error) => return failed(&portal, &error),
    };
    let current = policy.enabled();
    if let Some(secs) = step_up_secs
        && secs != policy.settings().step_up_max_age_secs
    {
        let mut settings = policy.settings().clone();
        settings.step_up_max_age_secs = secs;
        if let Err(error) = service
            .update_settings(&admin.org, settings, &Actor::from(&admin.email))
            .await
        {
            return failed(&portal, &error);
        }
    }
    if current != enabled
        && let Err(error) = service
            .set_org_mfa(
                &admin.org,
                if enabled { OrgMfa::On } else { OrgMfa::Off },
                &Actor::from(&admin.email),
            )
            .await
    {
        return failed(&portal, &error);
    }
    let text = if enabled {
        "Saved: MFA is on. Customers set it up at their next sign-in."
    } else {
        "Saved: MFA is off. Customers who set it up still give a code until you reset them."
    };
    flash_and_return(&portal, &visit, text.to_owned())
}

/// `POST /admin/customers/reset` (form: `csrf`, `customer`).
#[derive(Deserialize)]
pub(crate) struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    customer: String,
}

/// `POST /admin/customers/reset`: "Reset Portal MFA" for one customer.
pub(crate) async fn admin_reset<S: Store + 'static, C: PortalClock>(
    State(portal): Shared<S, C>,
    headers: HeaderMap,
    form: Result<Form<ResetForm>, FormRejection>,
) -> Response {
    let visit = Visit::of(&portal, &headers);
    let form = form.ok().map(|Form(form)| form);
    let admin = match admin_post(&visit, form.as_ref().map(|form| form.csrf.as_str())) {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let Some(form) = form else {
        return unreadable_form();
    };
    // Only the organisation's own customers.
    let customer = match portal.accounts.find(&form.customer).await {
        Ok(Some(account)) if account.role == Role::Customer && account.org == admin.org => {
            account.email
        }
        Ok(_) => {
            return message_page(
                StatusCode::NOT_FOUND,
                "No such customer",
                "There is no such customer in this portal.",
            );
        }
        Err(error) => return error_page(&accounts_failed(&error)),
    };
    match portal
        .service()
        .reset(&admin.org, &customer, &Actor::from(&admin.email))
        .await
    {
        Ok(()) => {}
        Err(error) if error.refusal() == Some(&Refusal::NotFound) => {
            let text = format!(
                "{} never set up MFA: there is nothing to reset.",
                customer.as_str()
            );
            return flash_and_return(&portal, &visit, text);
        }
        Err(error) => return failed(&portal, &error),
    }
    let text = format!(
        "MFA was reset for {}: they set it up again at their next sign-in.",
        customer.as_str()
    );
    flash_and_return(&portal, &visit, text)
}

/// Every other path.
pub(crate) async fn not_found() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
    )
}

/// `GET /static/app.js`.
pub(crate) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../static/app.js"),
    )
        .into_response()
}

/// `GET /static/style.css`.
pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../static/style.css"),
    )
        .into_response()
}
