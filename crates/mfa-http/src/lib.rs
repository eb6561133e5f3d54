#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Panic policy (as mfa-core states it): an error means bad input, a panic means a broken invariant,
// and no request may cause one.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod admin;
mod api;
mod customer;
mod error;
mod extract;
mod host;
mod json;
pub mod model;
mod openapi;
#[cfg(feature = "tower-sessions")]
pub mod tower_sessions;

pub use api::MfaApi;
pub use error::{Error, ErrorBody, ErrorKind};
pub use host::{Caller, HostError, MfaHost};
pub use json::{JsonBody, MAX_BODY_BYTES, NoInput};
/// The core this crate adapts: its ids, proofs and login steps are this API's own types.
pub use mfa_core;
pub use mfa_core::{CustomerId, LoginStep, MfaPassed, MfaSession, OrgId, PassedBy, SessionCheck};

/// The workspace README's examples (embedding the service on SQLite behind this API), compiled and
/// run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct WorkspaceReadme;
