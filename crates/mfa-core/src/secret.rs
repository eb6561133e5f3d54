//! The shared secret (the "key" K of RFC 4226) between the service and an authenticator app.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use data_encoding::{BASE32_NOPAD, Encoding, Specification};
use rand_core::CryptoRng;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Algorithm;

/// The fewest bits a secret may have to be enrolled: RFC 4226 section 4 R6 ("MUST be at least 128
/// bits"); NIST SP 800-63B 5.1.4.1 asks for 112 bits of strength.
pub const MIN_ENROLL_SECRET_BITS: usize = 128;

/// A TOTP/HOTP secret.
///
/// It never shows itself by accident: `Debug` prints only its length, there is no `Display`, it is
/// zeroized when dropped, and equality is constant-time. The base32 text comes out only through the
/// explicit [`Secret::to_base32`] and [`Secret::to_base32_grouped`], wrapped in [`Zeroizing`].
#[derive(Clone)]
pub struct Secret {
    // A `Vec`, not a boxed slice: `Zeroize` for `Vec` wipes the whole capacity, and we never shrink it,
    // so no copy of the key is left behind in a freed allocation.
    bytes: Vec<u8>,
}

impl Secret {
    /// A fresh secret from a cryptographically secure RNG, as long as `algorithm`'s HMAC output
    /// (20, 32 or 64 bytes), as RFC 6238 section 5.1 recommends.
    pub fn generate<R: CryptoRng + ?Sized>(algorithm: Algorithm, rng: &mut R) -> Self {
        let mut bytes = vec![0u8; algorithm.key_len()];
        rng.fill_bytes(&mut bytes);
        Self { bytes }
    }

    /// A secret from raw bytes. Any non-empty key can produce codes (interop tools need that); use
    /// [`Secret::check_enrollable`] before handing one to a customer.
    ///
    /// # Errors
    /// [`SecretError::Empty`] for an empty key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self {
            bytes: bytes.to_vec(),
        })
    }

    /// Reads base32 (RFC 4648) as people and apps write it: upper or lower case, spaces and dashes
    /// anywhere (`"jbsw y3dp-ehpk 3pxp"`), with or without `=` padding at the end. Unused trailing bits
    /// are ignored, as Google Authenticator does.
    ///
    /// # Errors
    /// [`SecretError::Empty`] when no base32 characters remain; [`SecretError::InvalidBase32`] for any
    /// other character, or a length that no whole number of bytes encodes to.
    pub fn from_base32(text: &str) -> Result<Self, SecretError> {
        let unpadded = text.trim_end_matches(['=', ' ', '-']);
        let encoding = tolerant_base32();
        let capacity =
            encoding
                .decode_len(unpadded.len())
                .map_err(|e| SecretError::InvalidBase32 {
                    position: e.position,
                })?;
        let mut bytes = vec![0u8; capacity];
        match encoding.decode_mut(unpadded.as_bytes(), &mut bytes) {
            Ok(len) => bytes.truncate(len),
            Err(partial) => {
                bytes.zeroize();
                return Err(SecretError::InvalidBase32 {
                    position: partial.error.position,
                });
            }
        }
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { bytes })
    }

    /// The key bytes, for the HMAC and for sealing. Handle with care.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key length in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.bytes.len().saturating_mul(8)
    }

    /// Refuses a secret too short to enroll (fewer than [`MIN_ENROLL_SECRET_BITS`] bits).
    ///
    /// # Errors
    /// [`SecretError::TooShort`] with the secret's length.
    pub fn check_enrollable(&self) -> Result<(), SecretError> {
        if self.bits() < MIN_ENROLL_SECRET_BITS {
            return Err(SecretError::TooShort { bits: self.bits() });
        }
        Ok(())
    }

    /// Base32 without padding, the form the otpauth URI carries (Key Uri Format: "padding should be
    /// omitted"; Google Authenticator on iOS rejects it).
    #[must_use]
    pub fn to_base32(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(
            BASE32_NOPAD.encode_len(self.bytes.len()),
        ));
        // The capacity is exact, so appending never reallocates and leaves no copy behind.
        BASE32_NOPAD.encode_append(&self.bytes, &mut text);
        text
    }

    /// Base32 in groups of four separated by spaces (`JBSW Y3DP EHPK 3PXP`), for reading aloud and
    /// typing by hand. [`Secret::from_base32`] reads it back.
    #[must_use]
    pub fn to_base32_grouped(&self) -> Zeroizing<String> {
        let plain = self.to_base32();
        let groups = plain.len().div_ceil(4);
        let mut text = Zeroizing::new(String::with_capacity(plain.len().saturating_add(groups)));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                text.push(' ');
            }
            text.push(c);
        }
        text
    }
}

/// RFC 4648 base32 that ignores case, spaces and dashes, and unused trailing bits.
fn tolerant_base32() -> Encoding {
    let mut spec = Specification::new();
    spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    spec.translate.from.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.translate.to.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.ignore.push_str(" -");
    spec.check_trailing_bits = false;
    #[allow(
        clippy::expect_used,
        reason = "a fixed, valid specification; the unit tests build it"
    )]
    spec.encoding().expect("the base32 specification is valid")
}

impl ConstantTimeEq for Secret {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.bytes.as_slice().ct_eq(other.bytes.as_slice())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bits, redacted)", self.bits())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for Secret {}

/// Why bytes or text are not a usable secret. Never contains any part of the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No key at all.
    #[error("the secret is empty")]
    Empty,
    /// Not base32.
    #[error("the secret is not valid base32 (at character {position})")]
    InvalidBase32 {
        /// Where the first offending character is, counted in the text after trailing padding was removed.
        position: usize,
    },
    /// Too short to enroll.
    #[error("the secret has {bits} bits; at least {min} are required", min = MIN_ENROLL_SECRET_BITS)]
    TooShort {
        /// The secret's length in bits.
        bits: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    const RFC_SEED_BASE32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn base32_of_the_rfc_seed() {
        let secret = Secret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(secret.to_base32().as_str(), RFC_SEED_BASE32);
        assert_eq!(
            secret.to_base32_grouped().as_str(),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
        assert_eq!(Secret::from_base32(RFC_SEED_BASE32).unwrap(), secret);
    }

    #[test]
    fn base32_input_is_tolerant() {
        let want = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        for text in [
            "jbswy3dpehpk3pxp",
            "JBSW Y3DP EHPK 3PXP",
            "jbsw-y3dp-ehpk-3pxp",
            "JBSWY3DPEHPK3PXP======",
            " JBSWY3DPEHPK3PXP ",
        ] {
            assert_eq!(Secret::from_base32(text).as_ref(), Ok(&want), "{text:?}");
        }
        // 32 bytes: 52 characters and four padding characters in the padded form.
        let long = Secret::from_bytes(&[7u8; 32]).unwrap();
        let padded = format!("{}====", long.to_base32().as_str());
        assert_eq!(Secret::from_base32(&padded).unwrap(), long);
    }

    #[test]
    fn base32_rejections_are_typed() {
        assert_eq!(Secret::from_base32(""), Err(SecretError::Empty));
        assert_eq!(Secret::from_base32(" == "), Err(SecretError::Empty));
        assert!(matches!(
            Secret::from_base32("JBSW1DPE"),
            Err(SecretError::InvalidBase32 { position: 4 })
        ));
        assert!(matches!(
            Secret::from_base32("JBS"),
            Err(SecretError::InvalidBase32 { .. })
        ));
        assert!(matches!(
            Secret::from_base32("JB=SWY3D"),
            Err(SecretError::InvalidBase32 { .. })
        ));
        assert!(matches!(
            Secret::from_base32("ÉBSWY3DP"),
            Err(SecretError::InvalidBase32 { .. })
        ));
    }

    #[test]
    fn debug_is_redacted_and_enrollment_needs_128_bits() {
        let secret = Secret::from_bytes(b"0123456789abcde").unwrap();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "Secret(120 bits, redacted)");
        assert_eq!(
            secret.check_enrollable(),
            Err(SecretError::TooShort { bits: 120 })
        );
        assert_eq!(
            Secret::from_bytes(&[1u8; 16]).unwrap().check_enrollable(),
            Ok(())
        );
        assert_eq!(Secret::from_bytes(b""), Err(SecretError::Empty));
    }

    #[test]
    fn generated_secrets_have_the_hmac_output_length() {
        let mut rng = rand::rng();
        for algorithm in Algorithm::ALL {
            let a = Secret::generate(algorithm, &mut rng);
            let b = Secret::generate(algorithm, &mut rng);
            assert_eq!(a.as_bytes().len(), algorithm.key_len());
            assert_ne!(a, b);
            assert_eq!(a.check_enrollable(), Ok(()));
        }
    }
}
