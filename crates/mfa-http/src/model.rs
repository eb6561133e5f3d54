//! The JSON bodies of the API as Rust types, for clients and tests as much as for the router.
//!
//! Requests refuse unknown fields. Times are whole seconds since the Unix epoch. The types that carry
//! a secret or a code (an enrollment, backup codes, codes typed by a customer) redact it from `Debug`
//! and zeroize it when dropped; copies the HTTP stack makes while sending or receiving are beyond
//! this crate's reach.

use core::fmt;

use mfa_core::{LoginStep, StateName, StatusReport};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroize;

/// The schema of [`StateName`], which `mfa-core` serialises as these three strings.
fn state_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["unconfigured", "pending", "configured"]))
        .description(Some(
            "The customer's MFA: `unconfigured`, `pending` (enrollment started, not confirmed) or `configured`.",
        ))
        .build()
}

/// `GET /mfa`: the signed-in customer's MFA at a glance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MfaStatus {
    /// The customer's state.
    #[schema(schema_with = state_schema)]
    pub state: StateName,
    /// Whether the organisation has MFA switched on. A configured customer is challenged either way.
    pub org_enabled: bool,
    /// Unused backup codes; only for a session that passed MFA (`null` before: a password alone
    /// learns no more than it needs to go on).
    #[schema(required = true)]
    pub backup_codes_remaining: Option<u32>,
    /// Whether the customer should make a new set: configured with one unused backup code or
    /// none. Only for a session that passed MFA, as `backup_codes_remaining`.
    #[schema(required = true)]
    pub backup_codes_low: Option<bool>,
    /// What the session must do next: `enroll`, `verify`, or `done` when it passed MFA (or needs
    /// none).
    pub next: Next,
}

/// `POST /mfa/enrollment`: a fresh secret to show the customer once, as a QR code and as text.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentStarted {
    /// The `otpauth://totp/...` key URI the QR code holds.
    pub otpauth_uri: String,
    /// The secret in base32, in groups of four, for typing into an app by hand.
    pub secret: String,
    /// The key URI as an SVG QR code, rendered on the server (the secret never goes to a chart
    /// service).
    pub qr_svg: String,
    /// Until when the enrollment can be confirmed.
    pub expires_at: u64,
}

impl fmt::Debug for EnrollmentStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentStarted")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Drop for EnrollmentStarted {
    fn drop(&mut self) {
        self.otpauth_uri.zeroize();
        self.secret.zeroize();
        self.qr_svg.zeroize();
    }
}

/// A TOTP code from the customer's app (`POST /mfa/enrollment/confirm`, `POST /mfa/verify`).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The code, as typed: spaces are ignored.
    #[schema(example = "123456", max_length = 64)]
    pub code: String,
}

/// A backup code (`POST /mfa/verify`).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupCodeRequest {
    /// The backup code, as typed: case and dashes do not matter.
    #[schema(example = "7K2M-Q9XD-4TRW", max_length = 64)]
    pub backup_code: String,
}

macro_rules! redacted {
    ($($name:ident . $field:ident),*) => {$(
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(redacted)"))
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.$field.zeroize();
            }
        }
    )*};
}

/// `POST /mfa/step-up` with a TOTP code.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpCodeRequest {
    /// What the fresh code is for: a name the host chooses (`payment_method`; `backup_codes` for
    /// `POST /mfa/backup-codes`).
    #[schema(example = "payment_method", pattern = "^[a-z0-9_.-]{1,32}$")]
    pub purpose: String,
    /// The code, as typed: spaces are ignored.
    #[schema(example = "123456", max_length = 64)]
    pub code: String,
}

/// `POST /mfa/step-up` with a backup code.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpBackupCodeRequest {
    /// What the fresh code is for.
    #[schema(example = "payment_method", pattern = "^[a-z0-9_.-]{1,32}$")]
    pub purpose: String,
    /// The backup code, as typed: case and dashes do not matter. It is used up.
    #[schema(example = "7K2M-Q9XD-4TRW", max_length = 64)]
    pub backup_code: String,
}

redacted!(
    CodeRequest.code,
    BackupCodeRequest.backup_code,
    StepUpCodeRequest.code,
    StepUpBackupCodeRequest.backup_code
);

/// `POST /mfa/step-up`: a purpose, and a TOTP code or a backup code, exactly one of them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(
    clippy::exhaustive_enums,
    reason = "a factor the route does not take is refused as an invalid body, not matched"
)]
pub enum StepUpRequest {
    /// `{"purpose": "payment_method", "code": "123456"}`.
    Code(StepUpCodeRequest),
    /// `{"purpose": "payment_method", "backup_code": "7K2M-Q9XD-4TRW"}`.
    BackupCode(StepUpBackupCodeRequest),
}

/// `POST /mfa/step-up`: the fresh code was accepted; the session counts as fresh for `purpose`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SteppedUp {
    /// What it is fresh for.
    pub purpose: String,
    /// Unused backup codes left.
    pub backup_codes_remaining: u32,
}

/// `GET /mfa/step-up/{purpose}`: whether an action for `purpose` may go ahead now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepUpStatus {
    /// The purpose asked about.
    pub purpose: String,
    /// `fresh`: go ahead; `required`: `POST /mfa/step-up` first; `no_factor`: the customer has
    /// no second factor (MFA is off for the organisation and they never set it up), so the host
    /// decides.
    pub status: StepUpState,
    /// With `required`: how recent the code must be, in seconds.
    pub max_age_secs: Option<u64>,
}

/// [`StepUpStatus::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepUpState {
    /// A second factor is fresh for the purpose.
    Fresh,
    /// A fresh code is needed first.
    Required,
    /// The customer has no second factor to give.
    NoFactor,
}

/// `POST /mfa/verify`: a TOTP code or a backup code, exactly one of them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(
    clippy::exhaustive_enums,
    reason = "a factor the route does not take is refused as an invalid body, not matched"
)]
pub enum VerifyRequest {
    /// `{"code": "123456"}`.
    Code(CodeRequest),
    /// `{"backup_code": "7K2M-Q9XD-4TRW"}`.
    BackupCode(BackupCodeRequest),
}

/// The customer's state after a change (`POST /mfa/enrollment/confirm`, an admin reset).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateChanged {
    /// The new state.
    #[schema(schema_with = state_schema)]
    pub state: StateName,
}

/// `POST /mfa/backup-codes`: a new set of backup codes, shown once. The previous set stops working.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupCodes {
    /// The codes, as `XXXX-XXXX-XXXX`.
    pub codes: Vec<String>,
}

impl fmt::Debug for BackupCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupCodes")
            .field("count", &self.codes.len())
            .finish_non_exhaustive()
    }
}

impl Drop for BackupCodes {
    fn drop(&mut self) {
        self.codes.zeroize();
    }
}

/// What a sign-in must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Next {
    /// Set up an authenticator (`POST /mfa/enrollment`, then confirm).
    Enroll,
    /// Give a TOTP or a backup code (`POST /mfa/verify`).
    Verify,
    /// Nothing: the session passed.
    Done,
}

impl From<&LoginStep> for Next {
    fn from(step: &LoginStep) -> Self {
        match step {
            LoginStep::Enroll(_) => Self::Enroll,
            LoginStep::Challenge(_) => Self::Verify,
            LoginStep::Done(_) => Self::Done,
            // A step this version does not know is not "done": it asks for a code.
            _ => Self::Verify,
        }
    }
}

/// `POST /mfa/verify`: the code was accepted and the host marked the session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verified {
    /// Always `done`.
    pub next: Next,
    /// Unused backup codes left.
    pub backup_codes_remaining: u32,
    /// Offer the customer a new set of backup codes now: they signed in with one (it is used up,
    /// and the phone may be lost), or one or none is left.
    pub suggest_new_backup_codes: bool,
}

/// `PUT /admin/mfa` and `GET /admin/mfa`: whether the organisation has MFA on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgMfa {
    /// MFA on for every customer. Switching it off leaves configured customers challenged until an
    /// administrator resets them.
    pub enabled: bool,
}

/// `GET /admin/customers/{id}/mfa`: one customer's MFA, as an administrator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CustomerMfa {
    /// The customer id.
    pub customer: String,
    /// The state.
    #[schema(schema_with = state_schema)]
    pub state: StateName,
    /// Whether the organisation has MFA on.
    pub org_enabled: bool,
    /// Since when MFA is configured.
    pub configured_since: Option<u64>,
    /// Unused backup codes.
    pub backup_codes_remaining: u32,
    /// Until when the customer is locked out, if now.
    pub locked_until: Option<u64>,
    /// Consecutive failed attempts.
    pub failures: u32,
}

impl CustomerMfa {
    pub(crate) fn new(customer: &str, report: &StatusReport) -> Self {
        let status = &report.customer;
        Self {
            customer: customer.to_owned(),
            state: status.state,
            org_enabled: report.org_mfa == mfa_core::OrgMfa::On,
            configured_since: status.configured_since.map(|at| at.as_secs()),
            backup_codes_remaining: status.backup_codes_remaining,
            locked_until: status.locked_until.map(|at| at.as_secs()),
            failures: status.failures,
        }
    }
}

/// The most audit events one page holds.
pub const MAX_AUDIT_PAGE: u32 = 500;
/// The audit events a page holds when the query does not say.
pub const DEFAULT_AUDIT_PAGE: u32 = 50;

/// `GET /admin/audit`: which events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this customer's events (all of the organisation's when absent).
    #[param(max_length = 255, min_length = 1)]
    pub customer: Option<String>,
    /// Only events older than this sequence number: pass the previous page's `next_before`.
    pub before: Option<u64>,
    /// At most this many events (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// `GET /admin/audit`: a page of audit events, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<AuditEvent>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<u64>,
}

/// One audit event, as `mfa admin audit --format jsonl` shows it too. It never holds a secret or
/// a code.
pub use mfa_ops::audit::AuditEvent;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let enrollment = EnrollmentStarted {
            otpauth_uri: "otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP".into(),
            secret: "JBSW Y3DP EHPK 3PXP".into(),
            qr_svg: "<svg>JBSWY3DPEHPK3PXP</svg>".into(),
            expires_at: 9,
        };
        let codes = BackupCodes {
            codes: vec!["7K2M-Q9XD-4TRW".into()],
        };
        let verify = VerifyRequest::Code(CodeRequest {
            code: "123456".into(),
        });
        let backup = VerifyRequest::BackupCode(BackupCodeRequest {
            backup_code: "7K2M-Q9XD-4TRW".into(),
        });
        let shown = format!("{enrollment:?} {codes:?} {verify:?} {backup:?}");
        for secret in ["JBSW", "7K2M", "123456"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("expires_at: 9") && shown.contains("count: 1"),
            "{shown}"
        );
    }
}
