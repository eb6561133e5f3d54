//! One job, four implementations, for the `verify_window1` benchmark.
//!
//! The job: verify a 6-digit HMAC-SHA-1 TOTP code, period 30 s, over a window of one step on each side
//! (three steps), for a 20-byte secret. Each `verify_*` function does exactly that with one library
//! (or, for [`verify_raw_reference`], with nothing but the SHA-1 compression function) and returns the
//! time step that matched, so that [`Fixture::assert_agreement`] can prove they all do the same job
//! before anything is timed.
//!
//! # Which code is verified, and why that is fair to everyone
//!
//! The typed code is the code of the step *after* the current one (a phone clock running a little
//! ahead), so every verification succeeds at offset +1. `mfa-core` computes every step of the window
//! whatever happens (constant time, no early exit). `totp-rs` (`Iterator::find`) and the `totp-lite`
//! loop below stop at the first match, but both walk the window from the oldest step to the newest, so
//! a match on the *last* step means they, too, compute all three steps; the fixture also checks that
//! the three steps have three different codes, so no earlier step can match by accident. A code that
//! matches no step would cost the same three steps everywhere, but this choice also exercises the
//! success path (the one a real login takes) and lets the start-up check assert *which* step matched,
//! which a `None` from every implementation could not.
//!
//! The functions are `#[inline(never)]` so that each shows up as one function in a profile
//! (`callgrind_annotate`); one call costs about a nanosecond against hundreds for the job.

use mfa_core::{
    UnixTime,
    otp::{Secret, Totp, Window},
};

/// The 20-byte secret (the RFC 4226 Appendix D / RFC 6238 Appendix B SHA-1 seed).
pub const SECRET: [u8; 20] = *b"12345678901234567890";

/// The time step X, in seconds.
pub const PERIOD: u64 = 30;

/// The number of digits of a code.
pub const DIGITS: u32 = 6;

/// "Now", in seconds since the Unix epoch: the middle of a step (15 s into it) in November 2023.
pub const NOW: u64 = 1_700_000_025;

/// The SHA-1 initial hash value H0 (FIPS 180-4 section 5.3.1).
const SHA1_H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// The SHA-1 block length, which is also HMAC's padded key length (RFC 2104 section 2).
const BLOCK_LEN: usize = 64;

/// Everything built once, outside the timed loop, as a server would keep it between logins.
pub struct Fixture {
    /// The `mfa-core` parameters (SHA-1, 6 digits, 30 s, T0 = 0).
    pub mfa_totp: Totp,
    /// The secret as `mfa-core` holds it.
    pub mfa_secret: Secret,
    /// The `totp-rs` object: parameters and a copy of the secret. Building it (a heap copy of the
    /// secret and parameter checks) is *not* part of the timed work.
    pub totp_rs: totp_rs::Totp,
    /// The secret as raw bytes, for `totp-lite` and the raw reference.
    pub secret_bytes: [u8; 20],
    /// The typed code: the code of the step after the current one.
    pub code: String,
    /// The time of the verification.
    pub now: u64,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// The fixture for [`SECRET`] at [`NOW`], with the code of step `NOW / PERIOD + 1`.
    ///
    /// # Panics
    /// If a library refuses the fixed parameters, which would be a bug in this file.
    #[must_use]
    pub fn new() -> Self {
        #[allow(clippy::expect_used, reason = "a fixed, non-empty secret")]
        let mfa_secret = Secret::from_bytes(&SECRET).expect("the secret is not empty");
        #[allow(clippy::expect_used, reason = "fixed parameters that totp-rs accepts")]
        let totp_rs = totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(PERIOD)
            .with_secret(SECRET.as_slice())
            .build()
            .expect("valid totp-rs parameters");
        let next_step = NOW / PERIOD + 1;
        let code = Totp::default()
            .generate_at_step(&mfa_secret, next_step)
            .to_string();
        Self {
            mfa_totp: Totp::default(),
            mfa_secret,
            totp_rs,
            secret_bytes: SECRET,
            code,
            now: NOW,
        }
    }

    /// Panics unless all four implementations compute the same codes for the three steps of the
    /// window and all match the fixture's code at the step after the current one (and all reject a
    /// code of no step), so the benchmark cannot silently compare different jobs.
    ///
    /// # Panics
    /// On any disagreement.
    pub fn assert_agreement(&self) {
        let current = self.now / PERIOD;
        let steps = [current - 1, current, current + 1];
        let codes = steps.map(|step| {
            let mfa = self
                .mfa_totp
                .generate_at_step(&self.mfa_secret, step)
                .to_string();
            let rs = self.totp_rs.generate(step * PERIOD).to_string();
            let lite = totp_lite::totp_custom::<totp_lite::Sha1>(
                PERIOD,
                DIGITS,
                &self.secret_bytes,
                step * PERIOD,
            );
            let raw = format!(
                "{:06}",
                raw_code_at_step(&raw_key_setup(&self.secret_bytes), step)
            );
            assert_eq!(mfa, rs, "mfa-core and totp-rs disagree at step {step}");
            assert_eq!(mfa, lite, "mfa-core and totp-lite disagree at step {step}");
            assert_eq!(
                mfa, raw,
                "mfa-core and the raw reference disagree at step {step}"
            );
            mfa
        });
        assert!(
            codes[0] != codes[1] && codes[0] != codes[2] && codes[1] != codes[2],
            "the three steps must have three different codes, or an early exit could skip a step: {codes:?}"
        );
        assert_eq!(
            self.code, codes[2],
            "the typed code must be the code of the step after the current one"
        );

        let expected = Some(current + 1);
        assert_eq!(self.verify_mfa_core(&self.code), expected, "mfa-core");
        assert_eq!(self.verify_totp_rs(&self.code), expected, "totp-rs");
        assert_eq!(self.verify_totp_lite(&self.code), expected, "totp-lite");
        assert_eq!(self.verify_raw(&self.code), expected, "raw reference");

        // A code of no step in the window: everyone says no.
        let mut wrong: u32 = 0;
        while codes.contains(&format!("{wrong:06}")) {
            wrong += 1;
        }
        let wrong = format!("{wrong:06}");
        assert_eq!(
            self.verify_mfa_core(&wrong),
            None,
            "mfa-core accepted a wrong code"
        );
        assert_eq!(
            self.verify_totp_rs(&wrong),
            None,
            "totp-rs accepted a wrong code"
        );
        assert_eq!(
            self.verify_totp_lite(&wrong),
            None,
            "totp-lite accepted a wrong code"
        );
        assert_eq!(
            self.verify_raw(&wrong),
            None,
            "the raw reference accepted a wrong code"
        );
    }

    /// [`verify_mfa_core`] on this fixture.
    #[must_use]
    pub fn verify_mfa_core(&self, code: &str) -> Option<u64> {
        verify_mfa_core(&self.mfa_totp, &self.mfa_secret, code, self.now)
    }

    /// [`verify_totp_rs`] on this fixture.
    #[must_use]
    pub fn verify_totp_rs(&self, code: &str) -> Option<u64> {
        verify_totp_rs(&self.totp_rs, code, self.now)
    }

    /// [`verify_totp_lite`] on this fixture.
    #[must_use]
    pub fn verify_totp_lite(&self, code: &str) -> Option<u64> {
        verify_totp_lite(&self.secret_bytes, code, self.now)
    }

    /// [`verify_raw_reference`] on this fixture.
    #[must_use]
    pub fn verify_raw(&self, code: &str) -> Option<u64> {
        verify_raw_reference(&self.secret_bytes, code, self.now)
    }
}

/// `mfa-core`: [`Totp::verify`] over [`Window::default`] (one step on each side). Returns the matched
/// step.
#[inline(never)]
#[must_use]
pub fn verify_mfa_core(totp: &Totp, secret: &Secret, code: &str, now: u64) -> Option<u64> {
    totp.verify(secret, code, UnixTime::from_secs(now), Window::default())
        .ok()
        .map(|m| m.step)
}

/// `totp-rs` 6: [`totp_rs::Totp::check`], whose window is the object's skew (1). Returns the matched
/// step. It keys a fresh HMAC for every step (`Algorithm::sign` calls `new_from_slice` per counter).
#[inline(never)]
#[must_use]
pub fn verify_totp_rs(totp: &totp_rs::Totp, code: &str, now: u64) -> Option<u64> {
    totp.check(code, now)
}

/// `totp-lite` 2: it has no verification, so a user computes the code (a `String`) of each step of the
/// window, oldest first, and compares it with the typed text, stopping at the first match (not in
/// constant time: that is what its API invites). Returns the matched step.
#[inline(never)]
#[must_use]
pub fn verify_totp_lite(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    [now - PERIOD, now, now + PERIOD]
        .into_iter()
        .find(|&time| {
            totp_lite::totp_custom::<totp_lite::Sha1>(PERIOD, DIGITS, secret, time) == code
        })
        .map(|time| time / PERIOD)
}

/// The least work the job needs: HMAC-SHA-1 straight on the SHA-1 compression function, eight
/// compressions in all. Keying (the ipad and opad blocks) costs two, once; each of the three steps
/// costs two more (the inner block: the 8-byte counter and padding; the outer block: the 20-byte inner
/// digest and padding). Parsing is six digits, comparison a plain `==`; every step is computed.
/// Returns the matched step (the earliest, if several).
#[inline(never)]
#[must_use]
pub fn verify_raw_reference(secret: &[u8; 20], code: &str, now: u64) -> Option<u64> {
    let typed = parse_six_digits(code)?;
    let key = raw_key_setup(secret);
    let current = now / PERIOD;
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        let matches = raw_code_at_step(&key, step) == typed;
        if matches && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Exactly six ASCII digits, as a number.
fn parse_six_digits(code: &str) -> Option<u32> {
    if code.len() != 6 {
        return None;
    }
    code.bytes().try_fold(0u32, |value, byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u32::from(byte - b'0'))
    })
}

/// The HMAC inner and outer SHA-1 states after the ipad and opad blocks: two compressions.
fn raw_key_setup(secret: &[u8; 20]) -> [[u32; 5]; 2] {
    let mut ipad = [0x36u8; BLOCK_LEN];
    let mut opad = [0x5cu8; BLOCK_LEN];
    for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(secret) {
        *i ^= k;
        *o ^= k;
    }
    let mut inner = SHA1_H0;
    let mut outer = SHA1_H0;
    sha1::block_api::compress(&mut inner, &[ipad]);
    sha1::block_api::compress(&mut outer, &[opad]);
    [inner, outer]
}

/// The 6-digit HOTP value of `step` from keyed states: two compressions and dynamic truncation.
fn raw_code_at_step(key: &[[u32; 5]; 2], step: u64) -> u32 {
    // Inner: the 8-byte counter after the 64-byte ipad block, so 72 bytes = 576 bits in all.
    let mut block = [0u8; BLOCK_LEN];
    block[..8].copy_from_slice(&step.to_be_bytes());
    block[8] = 0x80;
    block[56..].copy_from_slice(&(72u64 * 8).to_be_bytes());
    let mut inner = key[0];
    sha1::block_api::compress(&mut inner, &[block]);

    // Outer: the 20-byte inner digest after the 64-byte opad block, so 84 bytes = 672 bits in all.
    let mut block = [0u8; BLOCK_LEN];
    for (chunk, word) in block.chunks_exact_mut(4).zip(inner) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    block[20] = 0x80;
    block[56..].copy_from_slice(&(84u64 * 8).to_be_bytes());
    let mut outer = key[1];
    sha1::block_api::compress(&mut outer, &[block]);

    let mut mac = [0u8; 20];
    for (chunk, word) in mac.chunks_exact_mut(4).zip(outer) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    let offset = usize::from(mac[19] & 0x0f);
    let value = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    value % 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_implementations_do_the_same_job() {
        Fixture::new().assert_agreement();
    }

    #[test]
    fn raw_reference_matches_rfc_4226_appendix_d() {
        let key = raw_key_setup(&SECRET);
        let want = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, want) in (0u64..).zip(want) {
            assert_eq!(raw_code_at_step(&key, counter), want, "counter {counter}");
        }
    }
}
