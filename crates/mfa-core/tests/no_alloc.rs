//! Verification never touches the heap: a counting global allocator watches it.
//!
//! The allocator counts every thread, so this test runs without the libtest harness (`harness = false`
//! in Cargo.toml): its `main` is the only thread, and nothing else can allocate while it measures.

use std::alloc::System;

use mfa_core::{
    UnixTime,
    otp::{Algorithm, Digits, Period, Secret, Totp, Window},
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    verification_never_allocates();
    println!("test verification_never_allocates ... ok");
}

fn verification_never_allocates() {
    let setups: Vec<(Totp, Secret)> = Algorithm::ALL
        .into_iter()
        .map(|algorithm| {
            let totp = Totp::new(algorithm, Digits::EIGHT, Period::DEFAULT);
            (
                totp,
                Secret::from_bytes(&vec![0x5a; algorithm.key_len()]).unwrap(),
            )
        })
        .collect();
    let widest = Window::symmetric(Window::MAX_SKEW).unwrap();
    let now = UnixTime::from_secs(1_700_000_000);
    let codes: Vec<String> = setups
        .iter()
        .map(|(totp, secret)| totp.generate(secret, now).unwrap().to_string())
        .collect();

    let region = Region::new(GLOBAL);
    let mut accepted = 0;
    for ((totp, secret), code) in setups.iter().zip(&codes) {
        for typed in [code.as_str(), "0000 0000", "1234567", "12a45678", ""] {
            for at in [now, UnixTime::EPOCH, UnixTime::from_secs(u64::MAX)] {
                accepted += usize::from(totp.verify(secret, typed, at, widest).is_ok());
            }
        }
    }
    let during = region.change();
    assert_eq!(accepted, 3, "each genuine code verified at `now`");
    assert_eq!(
        (during.allocations, during.reallocations),
        (0, 0),
        "{during:?}"
    );

    // The counter does see allocations: decoding base32 makes one.
    let region = Region::new(GLOBAL);
    let _secret = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
    assert!(region.change().allocations > 0);
}
