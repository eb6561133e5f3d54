//! The proof that a sign-in passed its second factor, which only this crate can make.

use serde::{Deserialize, Serialize};

use crate::{CustomerId, MfaSession, OrgId, UnixTime};

/// Proof that this customer's sign-in passed MFA, or needs none.
///
/// Only `mfa-core` can construct it (its fields are private and it has no public constructor), and
/// only the flows that checked a factor, or found that none is required, return it. A host marks a
/// session authenticated when it holds one, so no code path can skip the second factor by accident,
/// in the way rustls's `HandshakeSignatureValid` proves a signature was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a sign-in passed MFA: mark the session authenticated"]
pub struct MfaPassed {
    org: OrgId,
    customer: CustomerId,
    method: PassedBy,
    at: UnixTime,
    session: MfaSession,
}

/// How a sign-in passed MFA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PassedBy {
    /// The organisation has MFA off and the customer never configured it.
    NotRequired,
    /// The customer just confirmed a new authenticator with a code.
    Enrollment,
    /// A TOTP code.
    Totp,
    /// A backup code.
    BackupCode,
}

impl MfaPassed {
    /// The proof for `session`, which records how and when it passed.
    pub(crate) fn new(org: OrgId, customer: CustomerId, session: MfaSession) -> Self {
        let (method, at) = session
            .passed()
            .map_or((PassedBy::NotRequired, session.signed_in_at()), |passed| {
                (passed.by, passed.at)
            });
        Self {
            org,
            customer,
            method,
            at,
            session,
        }
    }

    /// The session as it is now: keep it in the host's session in place of the one it had, so that
    /// later requests carry how and when MFA passed, and for which of the customer's factors.
    #[must_use]
    pub const fn session(&self) -> MfaSession {
        self.session
    }

    /// The organisation.
    #[must_use]
    pub const fn org(&self) -> &OrgId {
        &self.org
    }

    /// The customer who passed.
    #[must_use]
    pub const fn customer(&self) -> &CustomerId {
        &self.customer
    }

    /// How.
    #[must_use]
    pub const fn method(&self) -> PassedBy {
        self.method
    }

    /// Whether a second factor was actually checked (anything but [`PassedBy::NotRequired`]). A host
    /// asking for a fresh second factor before a sensitive change (OWASP ASVS 5 7.5.1) needs this to
    /// be true, not just a proof.
    #[must_use]
    pub const fn is_second_factor(&self) -> bool {
        !matches!(self.method, PassedBy::NotRequired)
    }

    /// When.
    #[must_use]
    pub const fn at(&self) -> UnixTime {
        self.at
    }
}
