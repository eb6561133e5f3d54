//! TOTP (RFC 6238): HOTP over the number of time steps since T0.

use core::num::NonZeroU64;

use hmac::Hmac;
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::hotp::Prf;
use crate::{Algorithm, Code, CodeError, Digits, ParamError, Secret, UnixTime, hotp};

/// The length of a time step X (RFC 6238 section 4.1), from 1 to 120 seconds.
///
/// The upper bound is NIST SP 800-63B 5.1.4.1: the time nonce "SHALL be changed at least once every
/// 2 minutes".
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct Period(NonZeroU64);

impl TryFrom<u64> for Period {
    type Error = ParamError;
    fn try_from(secs: u64) -> Result<Self, ParamError> {
        Self::new(secs)
    }
}

impl From<Period> for u64 {
    fn from(period: Period) -> u64 {
        period.as_secs()
    }
}

impl Period {
    /// The longest period allowed, in seconds.
    pub const MAX_SECS: u64 = 120;
    /// 30 seconds, the RFC's default and the only period most apps honour.
    pub const DEFAULT: Self = Self(NonZeroU64::new(30).expect("30 is not zero"));

    /// A period of `secs` seconds.
    ///
    /// # Errors
    /// [`ParamError::Period`] unless `1 <= secs <= 120`.
    pub const fn new(secs: u64) -> Result<Self, ParamError> {
        match NonZeroU64::new(secs) {
            Some(secs) if secs.get() <= Self::MAX_SECS => Ok(Self(secs)),
            _ => Err(ParamError::Period),
        }
    }

    /// The period in seconds.
    #[must_use]
    pub const fn as_secs(self) -> u64 {
        self.0.get()
    }
}

impl Default for Period {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How many time steps around the current one a verification accepts.
///
/// RFC 6238 section 5.2 recommends "at most one time step" of network delay, which is the default
/// (one step behind, the current step, one step ahead). [`Window::STRICT`] accepts the current step only
/// (OWASP ASVS 5.0 6.5.5). Each side is bounded by [`Window::MAX_SKEW`]: every step added multiplies the
/// chance that a guess succeeds (RFC 4226 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "WindowFields", into = "WindowFields")]
pub struct Window {
    behind: u8,
    ahead: u8,
}

/// The serialised form of [`Window`], checked on the way in.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct WindowFields {
    behind: u8,
    ahead: u8,
}

impl TryFrom<WindowFields> for Window {
    type Error = ParamError;
    fn try_from(fields: WindowFields) -> Result<Self, ParamError> {
        Self::new(fields.behind, fields.ahead)
    }
}

impl From<Window> for WindowFields {
    fn from(window: Window) -> Self {
        Self {
            behind: window.behind,
            ahead: window.ahead,
        }
    }
}

impl Window {
    /// The most steps a window may reach on either side.
    pub const MAX_SKEW: u8 = 10;
    /// The current step only.
    pub const STRICT: Self = Self {
        behind: 0,
        ahead: 0,
    };

    /// A window of `behind` steps into the past and `ahead` steps into the future.
    ///
    /// # Errors
    /// [`ParamError::Window`] when either side is more than [`Window::MAX_SKEW`].
    pub const fn new(behind: u8, ahead: u8) -> Result<Self, ParamError> {
        if behind > Self::MAX_SKEW || ahead > Self::MAX_SKEW {
            return Err(ParamError::Window);
        }
        Ok(Self { behind, ahead })
    }

    /// A window of `steps` on each side.
    ///
    /// # Errors
    /// [`ParamError::Window`] when `steps` is more than [`Window::MAX_SKEW`].
    pub const fn symmetric(steps: u8) -> Result<Self, ParamError> {
        Self::new(steps, steps)
    }

    /// Steps accepted before the current one.
    #[must_use]
    pub const fn behind(self) -> u8 {
        self.behind
    }

    /// Steps accepted after the current one.
    #[must_use]
    pub const fn ahead(self) -> u8 {
        self.ahead
    }
}

impl Default for Window {
    fn default() -> Self {
        Self {
            behind: 1,
            ahead: 1,
        }
    }
}

/// The TOTP parameters both sides must agree on (RFC 6238 section 3 R4): the HMAC algorithm, the number
/// of digits, the time step X and the start time T0.
///
/// ```
/// use mfa_core::UnixTime;
/// use mfa_core::otp::{Algorithm, Digits, Period, Secret, Totp, Window};
/// let totp = Totp::new(Algorithm::Sha1, Digits::EIGHT, Period::DEFAULT);
/// let secret = Secret::from_bytes(b"12345678901234567890")?;
/// let now = UnixTime::from_secs(59);
/// assert_eq!(totp.generate(&secret, now)?.to_string(), "94287082"); // RFC 6238 Appendix B
/// let matched = totp.verify(&secret, "9428 7082", UnixTime::from_secs(89), Window::default())?;
/// assert_eq!((matched.step, matched.offset), (1, -1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Totp {
    algorithm: Algorithm,
    digits: Digits,
    period: Period,
    t0: UnixTime,
}

impl Totp {
    /// TOTP with these parameters and T0 = 0 (the Unix epoch).
    #[must_use]
    pub const fn new(algorithm: Algorithm, digits: Digits, period: Period) -> Self {
        Self {
            algorithm,
            digits,
            period,
            t0: UnixTime::EPOCH,
        }
    }

    /// The same parameters with another T0 (RFC 6238 section 4.1). Key URIs cannot carry T0, so only
    /// the default of 0 can be enrolled in an app.
    #[must_use]
    pub const fn with_t0(self, t0: UnixTime) -> Self {
        Self { t0, ..self }
    }

    /// The HMAC algorithm.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The number of digits of a code.
    #[must_use]
    pub const fn digits(&self) -> Digits {
        self.digits
    }

    /// The time step X.
    #[must_use]
    pub const fn period(&self) -> Period {
        self.period
    }

    /// The start of step 0.
    #[must_use]
    pub const fn t0(&self) -> UnixTime {
        self.t0
    }

    /// The time step T at `now`: `floor((now - T0) / X)` (RFC 6238 section 4.2), a full 64-bit number.
    ///
    /// # Errors
    /// [`TimeError::BeforeT0`] when `now` is before T0, where no step is defined.
    pub fn step_at(&self, now: UnixTime) -> Result<u64, TimeError> {
        match now.as_secs().checked_sub(self.t0.as_secs()) {
            Some(elapsed) => Ok(elapsed / self.period.0),
            None => Err(TimeError::BeforeT0),
        }
    }

    /// When `step` begins, or `None` past the end of time (`u64` seconds).
    #[must_use]
    pub const fn step_start(&self, step: u64) -> Option<UnixTime> {
        match step.checked_mul(self.period.as_secs()) {
            Some(offset) => match offset.checked_add(self.t0.as_secs()) {
                Some(secs) => Some(UnixTime::from_secs(secs)),
                None => None,
            },
            None => None,
        }
    }

    /// The code at `now`.
    ///
    /// # Errors
    /// [`TimeError::BeforeT0`] when `now` is before T0.
    pub fn generate(&self, secret: &Secret, now: UnixTime) -> Result<Code, TimeError> {
        Ok(self.generate_at_step(secret, self.step_at(now)?))
    }

    /// The code of time step `step` (RFC 6238 section 4.2: `TOTP = HOTP(K, T)`).
    #[must_use]
    pub fn generate_at_step(&self, secret: &Secret, step: u64) -> Code {
        hotp(self.algorithm, self.digits, secret, step)
    }

    /// Checks a code as a person typed it against every step of `window` around `now`.
    ///
    /// The HMAC is keyed once; every step in the window is computed and compared in constant time, with
    /// no early exit, so the time taken does not depend on whether or where the code matched. It never
    /// allocates and never overflows: steps before 0 or past `u64::MAX` do not exist and are skipped.
    /// If two steps of the window share the code, the earliest is reported.
    ///
    /// This function does not know which steps were used before, so on its own it lets a code pass
    /// twice. To accept each code once (RFC 6238 section 5.2), call
    /// [`verify_after`](Self::verify_after) with the last accepted step and store the step it
    /// matched; refusing this function's match when it is at or before that step would turn away a
    /// customer's fresh code that happens to equal an older one. The
    /// [`Service`](crate::Service) does all of that for you.
    ///
    /// # Errors
    /// [`VerifyError::InvalidCode`] when the text is not a code of the right length,
    /// [`VerifyError::NoMatch`] when no step in the window has this code, [`VerifyError::Time`] when
    /// `now` is before T0.
    pub fn verify(
        &self,
        secret: &Secret,
        typed: &str,
        now: UnixTime,
        window: Window,
    ) -> Result<Match, VerifyError> {
        self.verify_steps(secret, typed, now, window, None)
    }

    /// Checks a code as [`verify`](Self::verify) does, against the steps of `window` after
    /// `last_used` only: the steps a code may still be accepted for (RFC 6238 section 5.2).
    ///
    /// Two steps of a window can share a code (one pair in a million for 6 digits). Had the earlier
    /// one been used, [`verify`](Self::verify) would report it, and a caller refusing it as a
    /// replay would turn away the customer's fresh code; this reports the later step.
    ///
    /// # Errors
    /// As [`verify`](Self::verify); [`VerifyError::NoMatch`] also when the code matches only steps
    /// at or before `last_used`.
    pub fn verify_after(
        &self,
        secret: &Secret,
        typed: &str,
        now: UnixTime,
        window: Window,
        last_used: u64,
    ) -> Result<Match, VerifyError> {
        self.verify_steps(secret, typed, now, window, Some(last_used))
    }

    fn verify_steps(
        &self,
        secret: &Secret,
        typed: &str,
        now: UnixTime,
        window: Window,
        last_used: Option<u64>,
    ) -> Result<Match, VerifyError> {
        let code = Code::parse(typed, self.digits)?;
        let current = self.step_at(now)?;
        let found = match self.algorithm {
            Algorithm::Sha1 => scan::<Hmac<Sha1>>(secret, code, current, window, last_used),
            Algorithm::Sha256 => scan::<Hmac<Sha256>>(secret, code, current, window, last_used),
            Algorithm::Sha512 => scan::<Hmac<Sha512>>(secret, code, current, window, last_used),
        };
        found.ok_or(VerifyError::NoMatch)
    }
}

/// Compares `code` with every step of `window` around `current` (after `last_used`, if given), in
/// constant time.
fn scan<P: Prf>(
    secret: &Secret,
    code: Code,
    current: u64,
    window: Window,
    last_used: Option<u64>,
) -> Option<Match> {
    let prf = P::keyed(secret.as_bytes());
    let modulus = code.digits().modulus();
    let mut found = Choice::from(0);
    let mut step_found = 0u64;
    let mut offset_found = 0i64;
    for offset in i64::from(window.behind).wrapping_neg()..=i64::from(window.ahead) {
        // Which steps are compared depends on `now`, the window and the last used step only, never
        // on the secret or the code.
        let Some(step) = current.checked_add_signed(offset) else {
            continue;
        };
        if last_used.is_some_and(|used| step <= used) {
            continue;
        }
        let candidate = Code::new(prf.truncated(step) % modulus, code.digits());
        let first_hit = candidate.ct_eq(&code) & !found;
        step_found.conditional_assign(&step, first_hit);
        offset_found.conditional_assign(&offset, first_hit);
        found |= first_hit;
    }
    bool::from(found).then_some(Match {
        step: step_found,
        offset: offset_found,
    })
}

/// A code that matched: the time step it belongs to and where that step lies from the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Match {
    /// The time step T of the matching code. Store it: no code at or before it may be accepted again.
    pub step: u64,
    /// `step` minus the current step: negative for a code from the past (a slow typist or a clock
    /// behind), positive for one from the future (a clock ahead).
    pub offset: i64,
}

/// `now` does not fall on any time step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// `now` is earlier than T0.
    #[error("the time is before T0")]
    BeforeT0,
}

/// Why a code was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The text is not a code of the expected form.
    #[error(transparent)]
    InvalidCode(#[from] CodeError),
    /// No step in the window has this code.
    #[error("the code does not match")]
    NoMatch,
    /// The time falls on no step.
    #[error(transparent)]
    Time(#[from] TimeError),
}
