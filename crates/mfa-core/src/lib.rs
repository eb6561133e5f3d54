#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Panic policy (as str0m states it): an error means bad input, a panic means a broken invariant, and no
// input may cause one. Outside tests, every `expect` carries an `allow` with the reason it holds.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

mod ascii;
pub mod backup;
#[cfg(feature = "std")]
mod clock;
#[cfg(feature = "std")]
mod coalesce;
mod code;
mod customer;
mod encoding;
mod error;
mod event;
mod hotp;
mod ids;
mod lockout;
#[cfg(feature = "std")]
mod memory;
mod otpauth;
mod policy;
mod proof;
#[cfg(feature = "qr")]
mod qr;
pub mod seal;
mod secret;
#[cfg(feature = "std")]
mod service;
mod session;
pub mod store;
mod time;
mod totp;

// Start here: what a host embedding MFA in its portal names.

#[cfg(feature = "std")]
pub use clock::{Clock, ManualClock, SystemClock};
pub use customer::{
    BackupAccepted, BackupCodesIssued, CustomerStatus, Enrollment, LOW_BACKUP_CODES, LoginStep,
    Resealed, StateName, TotpAccepted,
};
pub use error::{CorruptRecord, Fault, MfaError, Refusal};
pub use ids::{Actor, CustomerId, IdError, MAX_ID_LEN, OrgId};
#[cfg(feature = "std")]
pub use memory::MemoryStore;
pub use policy::{OrgMfa, OrgPolicy, Settings, SettingsError};
pub use proof::{MfaPassed, PassedBy};
pub use seal::{KeyId, KeyRing, SealingKey};
#[cfg(feature = "std")]
pub use service::{DEFAULT_MAX_ATTEMPTS, Service, ServiceError, StatusReport};
pub use session::{
    FactorPassed, MAX_PURPOSE_LEN, MfaSession, Purpose, PurposeError, RECENT_FACTOR_SECS,
    SessionCheck, StepUp, StepUpCheck,
};
pub use store::Store;
pub use time::UnixTime;

pub mod otp {
    //! One-time passwords, the primitives under the [`Service`](crate::Service): HOTP (RFC 4226)
    //! and TOTP (RFC 6238) with SHA-1, SHA-256 and SHA-512, codes and secrets.
    //!
    //! A host that signs customers in never needs these: the service verifies each code once, after
    //! the last one accepted. Verifying by hand, use [`Totp::verify_after`] with the last accepted
    //! step, and store the step it matched: [`Totp::verify`] alone lets a code pass twice.
    pub use crate::code::{Code, CodeError};
    pub use crate::hotp::{Algorithm, Digits, ParamError, hotp};
    pub use crate::secret::{MIN_ENROLL_SECRET_BITS, Secret, SecretError};
    pub use crate::totp::{Match, Period, TimeError, Totp, VerifyError, Window};
}

pub mod uri {
    //! The `otpauth://` key URIs authenticator apps scan, and (feature `qr`) their QR codes.
    pub use crate::otpauth::{KeyUri, OtpKind, Part, UriError};
    #[cfg(feature = "qr")]
    pub use crate::qr::{QrError, qr_svg};
}

pub mod machine {
    //! The policy state machine the [`Service`](crate::Service) drives: a customer's record, its
    //! three states and the pure transitions between them.
    //!
    //! Each transition is a pure function of the record, its input and a [`Context`] (who, and
    //! when: the machine reads no clock and takes no lock). It returns a [`Decision`]: the record
    //! and audit events to write together, and what happened. A pass is a [`Pass`], not a proof:
    //! only the service turns it into an [`MfaPassed`](crate::MfaPassed), once its conditional
    //! write is stored.
    pub use crate::customer::{
        Configured, Context, CustomerMfa, CustomerRecord, Decision, MAX_LEARNT_DRIFT, Pending,
        Unconfigured,
    };
    pub use crate::lockout::{Failures, LockoutRule};
    pub use crate::policy::{
        MAX_ENROLLMENT_LIFETIME_SECS, MAX_FAILURES_PER_HOUR, MAX_FREE_FAILURES, MAX_STEP_UP_SECS,
        MIN_STEP_UP_SECS,
    };
    pub use crate::proof::Pass;
}

pub mod audit {
    //! The audit log: what happened, to whom, when, written with the change it describes.
    #[cfg(feature = "std")]
    pub use crate::coalesce::COALESCE_WINDOW_SECS;
    pub use crate::event::{Event, EventKind, Factor, Rejection, StoredEvent};
    pub use crate::store::{AuditExport, AuditQuery};
}

// The crate's own code names everything from the root, as before the modules.
#[allow(
    unused_imports,
    reason = "each is used by some module, not all by this one"
)]
pub(crate) use {
    audit::{AuditExport, AuditQuery, Event, EventKind, Factor, Rejection, StoredEvent},
    backup::{
        BackupAttempt, BackupCode, BackupCodeSet, BackupError, BackupHashParams, BackupOwner,
        MAX_BACKUP_CODES,
    },
    encoding::DecodeError,
    machine::{
        Context, CustomerRecord, Decision, Failures, LockoutRule, MAX_ENROLLMENT_LIFETIME_SECS,
        MAX_FAILURES_PER_HOUR, MAX_FREE_FAILURES, Pass,
    },
    otp::{
        Algorithm, Code, CodeError, Digits, MIN_ENROLL_SECRET_BITS, Match, ParamError, Period,
        Secret, SecretError, TimeError, Totp, VerifyError, Window, hotp,
    },
    seal::{SealError, SealedSecret},
    store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
    uri::{KeyUri, UriError},
};

// The workspace README's examples run as doctests of `mfa-http`, which has the stores and axum
// they use.
