//! Extractors that ask the host who is calling, and read paths and queries with JSON rejections.
//!
//! Axum runs request-head extractors in the order a handler lists them, before the body: every
//! handler lists the caller first, so an anonymous or unauthorised request is refused before its
//! path, query or body is even looked at.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use mfa_core::{Actor, CustomerId, MfaSession, OrgId, SessionCheck};

use crate::api::Backend;
use crate::model::{AuditParams, DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE};
use crate::{Error, ErrorKind, MfaHost};

/// A signed-in customer, with the MFA session the host keeps for them (every service call checks
/// it against the customer's record).
pub(crate) struct CustomerCaller {
    pub(crate) org: OrgId,
    pub(crate) customer: CustomerId,
    pub(crate) session: MfaSession,
}

impl<A: Backend> FromRequestParts<Arc<A>> for CustomerCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<A>) -> Result<Self, Error> {
        let caller = app
            .host()
            .caller(parts)
            .await
            .map_err(|error| Error::from_host(&error))?;
        let Some((customer, session)) = caller.customer_session() else {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "this route is for a signed-in customer",
            ));
        };
        Ok(Self {
            customer: customer.clone(),
            session: *session,
            org: caller.org().clone(),
        })
    }
}

/// A signed-in administrator.
pub(crate) struct AdminCaller {
    pub(crate) org: OrgId,
    /// Who, for the audit log.
    pub(crate) name: Actor,
}

impl<A: Backend> FromRequestParts<Arc<A>> for AdminCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<A>) -> Result<Self, Error> {
        let caller = app
            .host()
            .caller(parts)
            .await
            .map_err(|error| Error::from_host(&error))?;
        let Some(name) = caller.admin_name() else {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "this route is for administrators",
            ));
        };
        // An administrator who signed in as a customer acts with that session: until its second
        // factor passed (now, not at some earlier sign-in: the organisation may have switched MFA
        // on since), a password alone must not switch MFA off or reset anyone's (its own).
        if let Some((customer, session)) = caller.customer_session() {
            let check = app
                .service()
                .check_session(caller.org(), customer, session)
                .await
                .map_err(|error| app.refusal(&error))?;
            match check {
                SessionCheck::Complete(_) => {}
                SessionCheck::Ended => return Err(crate::error::session_ended()),
                _ => {
                    return Err(Error::new(
                        ErrorKind::MfaRequired,
                        "this session must pass its second factor before administering the portal",
                    ));
                }
            }
        }
        Ok(Self {
            name: name.clone(),
            org: caller.org().clone(),
        })
    }
}

/// The `{id}` of `/admin/customers/{id}/...`: percent-decoded UTF-8 that is a valid customer id.
pub(crate) struct CustomerPath(pub(crate) CustomerId);

impl<S: Send + Sync> FromRequestParts<S> for CustomerPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::InvalidCustomerId,
                    "the customer id in the path is not percent-encoded UTF-8",
                )
            })?;
        CustomerId::new(id).map(Self).map_err(|error| {
            Error::new(
                ErrorKind::InvalidCustomerId,
                format!("the customer id in the path is not valid: {error}"),
            )
        })
    }
}

/// The `{purpose}` of `/mfa/step-up/{purpose}`: a purpose name, or 404 (there is no such resource).
pub(crate) struct PurposePath(pub(crate) mfa_core::Purpose);

impl<S: Send + Sync> FromRequestParts<S> for PurposePath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let not_a_purpose = || {
            Error::new(
                ErrorKind::NotFound,
                "a purpose is 1 to 32 characters of a-z, 0-9, '_', '-' and '.'",
            )
        };
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_a_purpose())?;
        mfa_core::Purpose::new(&name)
            .map(Self)
            .map_err(|_| not_a_purpose())
    }
}

/// The checked query of `GET /admin/audit`.
pub(crate) struct AuditQuery(pub(crate) mfa_core::audit::AuditQuery);

impl<S: Send + Sync> FromRequestParts<S> for AuditQuery {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let invalid = || {
            Error::new(
                ErrorKind::InvalidQuery,
                "the query takes customer (an id), before (a sequence number) and limit (1 to 500), each at most once",
            )
        };
        // The form decoder replaces invalid UTF-8 with U+FFFD; an id must not be read that way.
        if !decodes_to_utf8(parts.uri.query().unwrap_or_default()) {
            return Err(invalid());
        }
        let Query(params) = Query::<AuditParams>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        let customer = params
            .customer
            .map(CustomerId::new)
            .transpose()
            .map_err(|error| {
                Error::new(
                    ErrorKind::InvalidQuery,
                    format!("customer is not a valid id: {error}"),
                )
            })?;
        let limit = params.limit.unwrap_or(DEFAULT_AUDIT_PAGE);
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(Error::new(
                ErrorKind::InvalidQuery,
                format!("limit must be between 1 and {MAX_AUDIT_PAGE}"),
            ));
        }
        Ok(Self(mfa_core::audit::AuditQuery {
            customer,
            before_seq: params.before,
            // A u32 always fits a usize on the targets axum runs on; saturate anyway.
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        }))
    }
}

/// Whether every name and value of a form-encoded query percent-decodes to UTF-8.
fn decodes_to_utf8(query: &str) -> bool {
    query
        .split('&')
        .flat_map(|pair| pair.split('='))
        .all(|part| {
            let mut decoded = Vec::with_capacity(part.len());
            let mut bytes = part.as_bytes().iter();
            while let Some(&byte) = bytes.next() {
                if byte != b'%' {
                    decoded.push(byte);
                    continue;
                }
                // As the form decoder does: a `%` without two hex digits stands for itself.
                let rest = bytes.as_slice();
                let hex = rest
                    .get(..2)
                    .and_then(|digits| core::str::from_utf8(digits).ok())
                    .and_then(|digits| u8::from_str_radix(digits, 16).ok());
                match hex {
                    Some(value) => {
                        decoded.push(value);
                        bytes.nth(1);
                    }
                    None => decoded.push(byte),
                }
            }
            core::str::from_utf8(&decoded).is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::decodes_to_utf8;

    #[test]
    fn queries_that_decode_to_utf8() {
        for good in [
            "",
            "customer=alice%40acme.test",
            "a=%E2%82%AC&b=%",
            "x=%zz",
            "%41",
        ] {
            assert!(decodes_to_utf8(good), "{good}");
        }
        for bad in ["customer=%FF", "a=1&b=%C0%AF", "%ED%A0%80=1", "x=%E2%82"] {
            assert!(!decodes_to_utf8(bad), "{bad}");
        }
    }
}
