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
mod code;
mod hotp;
mod ids;
mod otpauth;
#[cfg(feature = "qr")]
mod qr;
mod secret;
mod time;
mod totp;

pub use code::{Code, CodeError};
pub use hotp::{Algorithm, Digits, ParamError, hotp};
pub use ids::{CustomerId, IdError, MAX_ID_LEN, OrgId};
pub use otpauth::{KeyUri, OtpKind, Part, UriError};
#[cfg(feature = "qr")]
pub use qr::{QrError, qr_svg};
pub use secret::{MIN_ENROLL_SECRET_BITS, Secret, SecretError};
pub use time::UnixTime;
pub use totp::{Match, Period, TimeError, Totp, VerifyError, Window};

/// The workspace README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct WorkspaceReadme;
