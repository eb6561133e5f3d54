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
mod backup;
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
mod seal;
mod secret;
#[cfg(feature = "std")]
mod service;
mod session;
mod store;
mod time;
mod totp;

pub use backup::{
    BackupAttempt, BackupCode, BackupCodeSet, BackupError, BackupHashParams, BackupOwner,
    BackupSlot, MAX_BACKUP_CODES,
};
#[cfg(feature = "std")]
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "std")]
pub use coalesce::COALESCE_WINDOW_SECS;
pub use code::{Code, CodeError};
pub use customer::{
    BackupAccepted, BackupCodesIssued, Configured, Context, CustomerMfa, CustomerRecord,
    CustomerStatus, Decision, Enrollment, LoginStep, MAX_LEARNT_DRIFT, Pending, Resealed,
    StateName, TotpAccepted, Unconfigured,
};
pub use encoding::DecodeError;
pub use error::{CorruptRecord, Fault, MfaError, Refusal};
pub use event::{Event, EventKind, Factor, Rejection, StoredEvent};
pub use hotp::{Algorithm, Digits, ParamError, hotp};
pub use ids::{Actor, CustomerId, IdError, MAX_ID_LEN, OrgId};
pub use lockout::{Failures, LockoutRule};
#[cfg(feature = "std")]
pub use memory::MemoryStore;
pub use otpauth::{KeyUri, OtpKind, Part, UriError};
pub use policy::{
    MAX_ENROLLMENT_LIFETIME_SECS, MAX_FAILURES_PER_HOUR, MAX_FREE_FAILURES, OrgMfa, OrgPolicy,
    Settings, SettingsError,
};
pub use proof::{MfaPassed, Pass, PassedBy};
#[cfg(feature = "qr")]
pub use qr::{QrError, qr_svg};
pub use seal::{KeyId, KeyRing, SealError, SealedSecret, SealingKey};
pub use secret::{MIN_ENROLL_SECRET_BITS, Secret, SecretError};
#[cfg(feature = "std")]
pub use service::{DEFAULT_MAX_ATTEMPTS, Service, ServiceError, StatusReport};
pub use session::{FactorPassed, MfaSession, RECENT_FACTOR_SECS, SessionCheck};
pub use store::{
    AuditExport, AuditQuery, CustomerKey, Encoded, OrgAndCustomer, Store, Version, Versioned,
    Written,
};
pub use time::UnixTime;
pub use totp::{Match, Period, TimeError, Totp, VerifyError, Window};

/// The workspace README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct WorkspaceReadme;
