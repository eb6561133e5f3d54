//! HOTP (RFC 4226): the HMAC-based one-time password that TOTP is built on.

use core::fmt;
use core::num::NonZeroU32;
use core::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use crate::ascii::strip_prefix_ignore_ascii_case;
use crate::{Code, Secret};

/// The hash function under the HMAC (RFC 6238 section 1.2: SHA-1, SHA-256 or SHA-512).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
#[allow(
    clippy::exhaustive_enums,
    reason = "RFC 6238 defines exactly these three; an app that meets a fourth refuses the key"
)]
pub enum Algorithm {
    /// HMAC-SHA-1, the default and the only one every authenticator app honours.
    #[default]
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    /// Every algorithm, in the order the RFC lists them.
    pub const ALL: [Self; 3] = [Self::Sha1, Self::Sha256, Self::Sha512];

    /// The HMAC output length in bytes, which is also the recommended secret length
    /// (RFC 4226 section 4 R6 for SHA-1; RFC 6238 section 5.1 and Appendix A for all three).
    #[must_use]
    pub const fn key_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The name used by the otpauth key URI (`SHA1`, `SHA256`, `SHA512`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = ParamError;

    /// Accepts `SHA1`, `SHA256`, `SHA512` in any case, with or without a dash (`sha-256`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = strip_prefix_ignore_ascii_case(s.trim(), "sha").ok_or(ParamError::Algorithm)?;
        let name = rest.strip_prefix('-').unwrap_or(rest);
        match name {
            "1" => Ok(Self::Sha1),
            "256" => Ok(Self::Sha256),
            "512" => Ok(Self::Sha512),
            _ => Err(ParamError::Algorithm),
        }
    }
}

/// How many decimal digits a code has: 6, 7 or 8.
///
/// RFC 4226 section 5.3 requires at least 6 and suggests considering 7 or more; 8 is the most the
/// 31-bit truncated value can fill evenly enough to be worth offering (RFC 6238 Appendix B uses 8).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct Digits(u8);

impl TryFrom<u8> for Digits {
    type Error = ParamError;
    fn try_from(n: u8) -> Result<Self, ParamError> {
        Self::new(n)
    }
}

impl From<Digits> for u8 {
    fn from(digits: Digits) -> u8 {
        digits.0
    }
}

impl Digits {
    /// Six digits, the default every authenticator app supports.
    pub const SIX: Self = Self(6);
    /// Seven digits.
    pub const SEVEN: Self = Self(7);
    /// Eight digits (RFC 6238 Appendix B).
    pub const EIGHT: Self = Self(8);

    /// `n` digits.
    ///
    /// # Errors
    /// [`ParamError::Digits`] unless `n` is 6, 7 or 8.
    pub const fn new(n: u8) -> Result<Self, ParamError> {
        match n {
            6..=8 => Ok(Self(n)),
            _ => Err(ParamError::Digits),
        }
    }

    /// The number of digits.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }

    /// `10^digits`, the modulus of RFC 4226 section 5.3 step 3.
    #[allow(clippy::expect_used, reason = "powers of ten are not zero")]
    pub(crate) const fn modulus(self) -> NonZeroU32 {
        match self.0 {
            6 => NonZeroU32::new(1_000_000),
            7 => NonZeroU32::new(10_000_000),
            _ => NonZeroU32::new(100_000_000),
        }
        .expect("powers of ten are not zero")
    }
}

impl Default for Digits {
    fn default() -> Self {
        Self::SIX
    }
}

impl fmt::Display for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A TOTP or HOTP parameter outside what we support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// The algorithm is not SHA1, SHA256 or SHA512.
    #[error("algorithm must be SHA1, SHA256 or SHA512")]
    Algorithm,
    /// The number of digits is not 6, 7 or 8.
    #[error("digits must be 6, 7 or 8")]
    Digits,
    /// The period is not between 1 and 120 seconds.
    #[error("period must be between 1 and 120 seconds")]
    Period,
    /// The window reaches further than the allowed number of steps on a side.
    #[error("window must be at most {max} steps on each side", max = crate::Window::MAX_SKEW)]
    Window,
}

/// The HOTP value of `secret` at `counter` (RFC 4226 section 5.3), as a code of `digits` digits.
///
/// ```
/// use mfa_core::otp::{Algorithm, Digits, Secret, hotp};
/// // RFC 4226 Appendix D, count 1.
/// let secret = Secret::from_bytes(b"12345678901234567890")?;
/// assert_eq!(hotp(Algorithm::Sha1, Digits::SIX, &secret, 1).to_string(), "287082");
/// # Ok::<(), mfa_core::otp::SecretError>(())
/// ```
#[must_use]
pub fn hotp(algorithm: Algorithm, digits: Digits, secret: &Secret, counter: u64) -> Code {
    let value = match algorithm {
        Algorithm::Sha1 => <Hmac<Sha1> as Prf>::keyed(secret.as_bytes()).truncated(counter),
        Algorithm::Sha256 => <Hmac<Sha256> as Prf>::keyed(secret.as_bytes()).truncated(counter),
        Algorithm::Sha512 => <Hmac<Sha512> as Prf>::keyed(secret.as_bytes()).truncated(counter),
    };
    Code::new(value % digits.modulus(), digits)
}

/// An HMAC keyed once, from which the truncated value of any counter can be taken.
///
/// Keying HMAC hashes the padded key into the inner and outer states (RFC 2104 section 2); cloning
/// those states per counter means a verification over several steps pays for the key only once.
pub(crate) trait Prf: Clone {
    /// The HMAC keyed with `key` (any length: RFC 2104 hashes or pads it).
    fn keyed(key: &[u8]) -> Self;
    /// `DT(HMAC(K, C))` as a 31-bit number (RFC 4226 section 5.3 steps 1 and 2), before the modulus.
    fn truncated(&self, counter: u64) -> u32;
}

macro_rules! impl_prf {
    ($($hash:ty),*) => {$(
        impl Prf for Hmac<$hash> {
            #[inline]
            fn keyed(key: &[u8]) -> Self {
                #[allow(clippy::expect_used, reason = "HMAC accepts keys of any length (RFC 2104 section 2)")]
                <Self as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
            }

            #[inline]
            fn truncated(&self, counter: u64) -> u32 {
                let mut mac = self.clone();
                // RFC 4226 section 5.1: C is an 8-byte big-endian counter.
                mac.update(&counter.to_be_bytes());
                dynamic_truncation(&mac.finalize().into_bytes())
            }
        }
    )*};
}

impl_prf!(Sha1, Sha256, Sha512);

/// Dynamic truncation, RFC 4226 section 5.3.
///
/// The offset comes from the low four bits of the *last* byte of the HMAC, whatever its length (RFC 6238
/// Appendix A reads `hash[hash.length - 1]`). Taking byte 19 for SHA-256 and SHA-512, as some libraries
/// did, gives wrong codes; here there is no constant to get wrong.
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "every HMAC output here is at least 20 bytes and offset <= 15, so offset + 3 <= 18 is in range"
)]
fn dynamic_truncation(mac: &[u8]) -> u32 {
    debug_assert!(mac.len() >= 20);
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let word = [
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ];
    // Mask the top bit so the value is the same whether read as signed or unsigned (section 5.3).
    u32::from_be_bytes(word) & 0x7fff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_example_of_section_5_4() {
        let mac = [
            0x1f, 0x86, 0x98, 0x69, 0x0e, 0x02, 0xca, 0x16, 0x61, 0x85, 0x50, 0xef, 0x7f, 0x19,
            0xda, 0x8e, 0x94, 0x5b, 0x55, 0x5a,
        ];
        assert_eq!(dynamic_truncation(&mac), 0x50ef_7f19);
        assert_eq!(
            dynamic_truncation(&mac) % Digits::SIX.modulus().get(),
            872_921
        );
    }

    #[test]
    fn truncation_reads_the_last_byte_of_long_macs() {
        // A 32-byte MAC whose byte 19 says offset 0 but whose last byte says offset 8.
        let mut mac = [0u8; 32];
        mac[19] = 0x00;
        mac[31] = 0x08;
        mac[8..12].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(dynamic_truncation(&mac), 0x1234_5678);
    }

    #[test]
    fn algorithm_names_parse_leniently_and_print_canonically() {
        for (text, algorithm) in [
            ("SHA1", Algorithm::Sha1),
            ("sha1", Algorithm::Sha1),
            ("SHA-1", Algorithm::Sha1),
            ("Sha256", Algorithm::Sha256),
            ("sha-512", Algorithm::Sha512),
        ] {
            assert_eq!(text.parse::<Algorithm>(), Ok(algorithm), "{text}");
        }
        for bad in ["", "md5", "SHA", "SHA3", "SHA-", "sha224", "SHA1 x", "ß"] {
            assert_eq!(
                bad.parse::<Algorithm>(),
                Err(ParamError::Algorithm),
                "{bad}"
            );
        }
        for algorithm in Algorithm::ALL {
            assert_eq!(algorithm.name().parse::<Algorithm>(), Ok(algorithm));
        }
    }

    #[test]
    fn digits_outside_six_to_eight_are_refused() {
        for n in [0, 1, 5, 9, 10, 255] {
            assert_eq!(Digits::new(n), Err(ParamError::Digits));
        }
        assert_eq!(Digits::new(7).map(Digits::get), Ok(7));
    }
}
