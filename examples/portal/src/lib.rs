//! The customer portal of a billing service, with MFA from `mfa-core` and its JSON API from
//! `mfa-http`: HTML pages, the JSON API, the portal's own accounts and sessions.
//!
//! `cargo run -p portal` starts it (see the README next to this crate); the tests build the same
//! [`Portal`] over a temporary database and drive its [`router`](Portal::router) directly.
//!
//! The portal is the *host* application: it owns the passwords, the sessions and the pages, and asks
//! `mfa-core`'s service what a sign-in must do next. MFA's rules, its records and its audit log are
//! all the library's.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The workspace's API lints are for the library crates, which others build on; the portal is an
// application that nothing depends on, so it may match its own enums and take its config's flags.
#![allow(
    clippy::exhaustive_enums,
    clippy::fn_params_excessive_bools,
    reason = "an application, not a library: no downstream crate to keep compatible"
)]
// As in the library crates: an error means bad input, a panic means a broken invariant, and no
// request may cause one.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod accounts;
mod api;
pub mod database;
mod headers;
mod html;
pub mod keys;
mod pages;
mod portal;
pub mod sessions;
mod signin_token;
mod throttle;

pub use portal::{Config, DEMO_ACCOUNTS, Portal, PortalClock, StartError};
