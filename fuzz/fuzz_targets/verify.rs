//! `Totp::verify` over every parameter it takes: any non-empty secret, SHA-1/256/512, 6 to 8 digits,
//! a period of 1 to 120 s, a window of 0 to 10 steps on each side, any `now` and T0 (0 and `u64::MAX`
//! included) and any typed text (or, so that matches are not left to chance, the real code of a step
//! near the window, with spaces and anything appended).
//!
//! It must never panic, and what it answers must be right:
//!
//! * `Ok(m)`: `m.offset` lies in `[-behind, ahead]`, `m.step == current_step + m.offset`, the code
//!   `generate_at_step(m.step)` is the typed text with its spaces removed, and no earlier step of the
//!   window has that code (the earliest match is reported).
//! * `Err(InvalidCode)` exactly when `Code::parse` refuses the text, `Err(Time)` exactly when `now` is
//!   before T0, and `Err(NoMatch)` only when no existing step of the window has the code.
//! * Round trip: the code `generate_at_step` gives for any existing step inside the window, typed with
//!   spaces anywhere, always verifies, at that step or at an earlier one with the same code.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mfa_core::{
    UnixTime,
    otp::{Algorithm, Code, Digits, Match, Period, Secret, TimeError, Totp, VerifyError, Window},
};

#[derive(Debug, Arbitrary)]
enum AlgorithmChoice {
    Sha1,
    Sha256,
    Sha512,
}

impl AlgorithmChoice {
    fn get(&self) -> Algorithm {
        match self {
            Self::Sha1 => Algorithm::Sha1,
            Self::Sha256 => Algorithm::Sha256,
            Self::Sha512 => Algorithm::Sha512,
        }
    }
}

/// An instant, with the edges of time one choice away rather than one in 2^64.
#[derive(Debug, Arbitrary)]
enum Instant {
    Zero,
    Max,
    AfterZero(u16),
    BeforeMax(u16),
    Any(u64),
}

impl Instant {
    fn secs(&self) -> u64 {
        match *self {
            Self::Zero => 0,
            Self::Max => u64::MAX,
            Self::AfterZero(n) => u64::from(n),
            Self::BeforeMax(n) => u64::MAX - u64::from(n),
            Self::Any(n) => n,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// The first byte of the secret, so that it is never empty.
    secret_first: u8,
    secret_rest: Vec<u8>,
    algorithm: AlgorithmChoice,
    /// 6 + this % 3.
    digits: u8,
    /// 1 + this % 120.
    period: u8,
    /// This % 11.
    behind: u8,
    /// This % 11.
    ahead: u8,
    now: Instant,
    t0: Instant,
    /// Which step of the window the round trip generates a code for (taken modulo the window's width).
    round_trip_step: u8,
    /// Where the round trip puts spaces in its code: bit i set means a space before digit i; bit 8
    /// means one at the end.
    round_trip_spaces: u16,
    /// The text a person typed.
    typed: Typed,
}

/// What the person typed: any text, or (so that matches are not left to chance) the real code of a
/// step near the current one, inside or just outside the window, with spaces and anything appended.
#[derive(Debug, Arbitrary)]
enum Typed {
    Text(String),
    CodeNear {
        /// The step's offset from the current one (any `i8`, so from well outside the window).
        offset: i8,
        spaces: u16,
        suffix: String,
    },
}

/// `code` with a space before digit i when bit i of `spaces` is set, and one at the end for bit 8.
fn spaced(code: &str, spaces: u16) -> String {
    let mut typed = String::new();
    for (i, c) in code.chars().enumerate() {
        if spaces & (1 << i) != 0 {
            typed.push(' ');
        }
        typed.push(c);
    }
    if spaces & (1 << 8) != 0 {
        typed.push(' ');
    }
    typed
}

fn without_spaces(text: &str) -> String {
    text.chars().filter(|&c| c != ' ').collect()
}

/// The code of every step of the window that exists, earliest first, as `(offset, step, code)`.
fn window_codes(
    totp: &Totp,
    secret: &Secret,
    current: u64,
    behind: u8,
    ahead: u8,
) -> Vec<(i64, u64, Code)> {
    (-i64::from(behind)..=i64::from(ahead))
        .filter_map(|offset| {
            let step = current.checked_add_signed(offset)?;
            Some((offset, step, totp.generate_at_step(secret, step)))
        })
        .collect()
}

/// Everything `Ok(m)` promises for `typed`.
fn check_match(
    totp: &Totp,
    secret: &Secret,
    typed: &str,
    current: u64,
    (behind, ahead): (u8, u8),
    m: Match,
) {
    assert!(
        (-i64::from(behind)..=i64::from(ahead)).contains(&m.offset),
        "offset {} outside the window [-{behind}, {ahead}]",
        m.offset
    );
    assert_eq!(
        current.checked_add_signed(m.offset),
        Some(m.step),
        "step {} is not current step {current} + offset {}",
        m.step,
        m.offset
    );
    let generated = totp.generate_at_step(secret, m.step).to_string();
    assert_eq!(
        generated,
        without_spaces(typed),
        "matched step {} has another code",
        m.step
    );
    for (offset, step, code) in window_codes(totp, secret, current, behind, ahead) {
        if offset >= m.offset {
            break;
        }
        assert_ne!(
            code.to_string(),
            generated,
            "step {step} (offset {offset}) has the code too, but {} (offset {}) was reported",
            m.step,
            m.offset
        );
    }
}

fuzz_target!(|input: Input| {
    let mut secret_bytes = vec![input.secret_first];
    secret_bytes.extend_from_slice(&input.secret_rest);
    let secret = Secret::from_bytes(&secret_bytes).expect("a non-empty secret is accepted");
    let digits = Digits::new(6 + input.digits % 3).expect("6..=8 digits are accepted");
    let period = Period::new(1 + u64::from(input.period % 120)).expect("1..=120 s are accepted");
    let (behind, ahead) = (input.behind % 11, input.ahead % 11);
    let window = Window::new(behind, ahead).expect("0..=10 steps are accepted");
    let now = UnixTime::from_secs(input.now.secs());
    let t0 = UnixTime::from_secs(input.t0.secs());
    let totp = Totp::new(input.algorithm.get(), digits, period).with_t0(t0);

    // 1. Whatever was typed: never a panic, and a correct answer.
    let current = totp.step_at(now);
    let typed = match &input.typed {
        Typed::Text(text) => text.clone(),
        Typed::CodeNear {
            offset,
            spaces,
            suffix,
        } => {
            let step = current
                .ok()
                .and_then(|c| c.checked_add_signed(i64::from(*offset)));
            let code = step.map_or_else(String::new, |s| {
                totp.generate_at_step(&secret, s).to_string()
            });
            spaced(&code, *spaces) + suffix
        }
    };
    let result = totp.verify(&secret, &typed, now, window);
    let parsed = Code::parse(&typed, digits);
    assert_eq!(
        current.is_err(),
        now < t0,
        "step_at refuses exactly the instants before T0"
    );
    match result {
        Ok(m) => {
            assert!(
                parsed.is_ok(),
                "verify accepted text that Code::parse refuses"
            );
            let current = current.expect("verify succeeded, so now is not before T0");
            check_match(&totp, &secret, &typed, current, (behind, ahead), m);
        }
        Err(VerifyError::InvalidCode(e)) => {
            assert_eq!(
                parsed.err(),
                Some(e),
                "verify and Code::parse disagree on the text"
            );
        }
        Err(VerifyError::Time(TimeError::BeforeT0)) => {
            assert!(parsed.is_ok(), "the code is checked before the time");
            assert!(
                now < t0,
                "BeforeT0 for now = {} >= T0 = {}",
                now.as_secs(),
                t0.as_secs()
            );
        }
        Err(VerifyError::NoMatch) => {
            let code = parsed.expect("NoMatch for text that Code::parse refuses");
            let current = current.expect("NoMatch although now is before T0");
            for (offset, step, candidate) in window_codes(&totp, &secret, current, behind, ahead) {
                assert!(
                    candidate != code,
                    "NoMatch, but step {step} (offset {offset}) has this code"
                );
            }
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }

    // 2. Round trip: a code generated for a step inside the window always verifies.
    let Ok(current) = current else { return };
    let width = u16::from(behind) + u16::from(ahead) + 1;
    let offset = i64::from(u16::from(input.round_trip_step) % width) - i64::from(behind);
    let Some(step) = current.checked_add_signed(offset) else {
        return;
    };
    let code = totp.generate_at_step(&secret, step).to_string();
    assert_eq!(
        code.len(),
        usize::from(digits.get()),
        "generate_at_step gave {code:?}"
    );
    let typed = spaced(&code, input.round_trip_spaces);
    match totp.verify(&secret, &typed, now, window) {
        Ok(m) => {
            check_match(&totp, &secret, &typed, current, (behind, ahead), m);
            assert!(
                m.offset <= offset,
                "reported offset {} after the generated one {offset}",
                m.offset
            );
        }
        Err(e) => {
            panic!("the code of step {step} (offset {offset}) typed as {typed:?} failed: {e:?}")
        }
    }
});
