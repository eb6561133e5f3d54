//! `verify_window1`: verify a 6-digit HMAC-SHA-1 TOTP code (30 s period, 20-byte secret) over a window
//! of one step on each side, with `mfa-core`, `totp-rs` 6, `totp-lite` 2 and a raw reference built on
//! the SHA-1 compression function alone (eight compressions, the least work the job needs).
//!
//! The typed code is the code of the step *after* the current one: `mfa-core` always computes all
//! three steps, and the early-exit implementations (`totp-rs`, the `totp-lite` loop) walk the window
//! oldest first, so they reach the match only after computing all three steps too. See the crate
//! documentation of `mfa-benches` for why this is fair to all; before anything is timed,
//! [`Fixture::assert_agreement`] checks that the four compute the same codes and match the same step.
//!
//! What is built outside the timed loop, as a server would keep it between logins: the `mfa-core`
//! `Secret` and `Totp`, the `totp-rs` `Totp` object (its construction is *not* timed), the secret bytes
//! and the typed code. Every input goes through `black_box` on every iteration.
//!
//! Run: `cargo bench -p mfa-benches --bench verify_window1`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mfa_benches::{
    Fixture, verify_mfa_core, verify_raw_reference, verify_totp_lite, verify_totp_rs,
};

fn verify_window1(c: &mut Criterion) {
    let fixture = Fixture::new();
    // Not timed: the four implementations must agree, or the comparison below means nothing.
    fixture.assert_agreement();
    let code = fixture.code.as_str();

    let mut group = c.benchmark_group("verify_window1");
    group.bench_function("mfa-core", |b| {
        b.iter(|| {
            verify_mfa_core(
                black_box(&fixture.mfa_totp),
                black_box(&fixture.mfa_secret),
                black_box(code),
                black_box(fixture.now),
            )
        });
    });
    group.bench_function("totp-rs", |b| {
        b.iter(|| {
            verify_totp_rs(
                black_box(&fixture.totp_rs),
                black_box(code),
                black_box(fixture.now),
            )
        });
    });
    group.bench_function("totp-lite", |b| {
        b.iter(|| {
            verify_totp_lite(
                black_box(&fixture.secret_bytes),
                black_box(code),
                black_box(fixture.now),
            )
        });
    });
    group.bench_function("raw_reference_8_compressions", |b| {
        b.iter(|| {
            verify_raw_reference(
                black_box(&fixture.secret_bytes),
                black_box(code),
                black_box(fixture.now),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, verify_window1);
criterion_main!(benches);
