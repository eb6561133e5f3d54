//! The proof that a sign-in passed its second factor, which only this crate can make.

use serde::{Deserialize, Serialize};

use crate::{CustomerId, MfaSession, OrgId, UnixTime};

/// Proof that this customer's sign-in passed MFA, or needs none.
///
/// Only the [`Service`](crate::Service) makes one: from a [`Pass`] the policy machine decided on,
/// and only once the write that consumes the factor (the code's time step, the backup code) has
/// been stored by a compare-and-swap that won. Its fields are private and it has no public
/// constructor. A host marks a
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

/// A pass the policy machine decided on, not yet a proof: what the pure transitions
/// ([`CustomerRecord::verify_totp`](crate::CustomerRecord::verify_totp) and the others) return in
/// place of an [`MfaPassed`].
///
/// Nothing outside this crate can turn it into one. The [`Service`](crate::Service) does, after its
/// conditional write of the record that consumes the factor reports
/// [`Written::Stored`](crate::Written::Stored); so a host that loads a record and calls the machine
/// itself learns whether the code was right, but cannot mark a session passed for a code that was
/// never consumed (and could pass again).
///
/// ```compile_fail
/// # use mfa_core::MfaPassed;
/// # use mfa_core::machine::Pass;
/// fn mark_passed(pass: Pass) -> MfaPassed {
///     pass.into() // no conversion exists: only the Service mints the proof
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a pass is not a proof: write the record through the Service"]
pub struct Pass {
    org: OrgId,
    customer: CustomerId,
    session: MfaSession,
}

impl Pass {
    /// The pass decided for `session` (which records how and when it passed).
    pub(crate) const fn new(org: OrgId, customer: CustomerId, session: MfaSession) -> Self {
        Self {
            org,
            customer,
            session,
        }
    }

    /// How it passed.
    #[must_use]
    pub fn method(&self) -> PassedBy {
        self.session
            .passed()
            .map_or(PassedBy::NotRequired, |p| p.by)
    }
}

/// What the [`Service`](crate::Service) turns a pure outcome into once its write is stored: a
/// [`Pass`] becomes an [`MfaPassed`], wherever it sits; outcomes without one stay as they are.
/// Crate-private, so no other code can mint.
#[cfg_attr(
    not(feature = "std"),
    allow(dead_code, reason = "the Service mints; it needs std")
)]
pub(crate) trait Mint {
    /// The outcome as the Service returns it.
    type Minted;

    /// Mint: call only after the write that goes with the outcome was stored.
    fn mint(self) -> Self::Minted;
}

impl Mint for Pass {
    type Minted = MfaPassed;

    fn mint(self) -> MfaPassed {
        MfaPassed::new(self.org, self.customer, self.session)
    }
}

/// Outcomes that carry no proof.
macro_rules! mint_as_is {
    ($($outcome:ty),*) => {$(
        impl Mint for $outcome {
            type Minted = Self;

            fn mint(self) -> Self {
                self
            }
        }
    )*};
}

mint_as_is!((), crate::Enrollment, crate::Resealed);

impl MfaPassed {
    /// The proof for `session`, which records how and when it passed.
    #[cfg_attr(
        not(feature = "std"),
        allow(dead_code, reason = "the Service mints; it needs std")
    )]
    fn new(org: OrgId, customer: CustomerId, session: MfaSession) -> Self {
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
