//! A one-time code: the digits a person reads off an authenticator app and types in.

use core::fmt;

use subtle::{Choice, ConstantTimeEq};

use crate::Digits;

/// A one-time code of a known number of digits.
///
/// `Display` prints it zero-padded (RFC 4226 section 5.3: `07081804` keeps its leading zero). `Debug`
/// hides the digits, because a code is a credential for as long as it is valid and must not reach logs.
/// Equality is constant-time.
#[derive(Clone, Copy)]
pub struct Code {
    value: u32,
    digits: Digits,
}

impl Code {
    pub(crate) const fn new(value: u32, digits: Digits) -> Self {
        Self { value, digits }
    }

    /// Reads a code as a person typed it: decimal digits, with any spaces anywhere ignored
    /// (`"123 456"`), and nothing else. Parsing never allocates.
    ///
    /// # Errors
    /// [`CodeError::Malformed`] for any character other than an ASCII digit or a space;
    /// [`CodeError::WrongLength`] when the number of digits is not `digits`.
    pub fn parse(typed: &str, digits: Digits) -> Result<Self, CodeError> {
        let mut value: u32 = 0;
        let mut count: usize = 0;
        for byte in typed.bytes() {
            match byte {
                b' ' => {}
                b'0'..=b'9' => {
                    // Accumulate at most 8 digits, so the value stays below 10^8 and never overflows;
                    // a longer input is rejected by the length check below anyway.
                    if count < usize::from(Digits::EIGHT.get()) {
                        // `byte` is an ASCII digit (this arm), so the subtraction cannot wrap.
                        value = value
                            .saturating_mul(10)
                            .saturating_add(u32::from(byte.wrapping_sub(b'0')));
                    }
                    count = count.saturating_add(1);
                }
                _ => return Err(CodeError::Malformed),
            }
        }
        if count != usize::from(digits.get()) {
            return Err(CodeError::WrongLength {
                expected: digits.get(),
                actual: count,
            });
        }
        Ok(Self { value, digits })
    }

    /// How many digits the code has.
    #[must_use]
    pub const fn digits(&self) -> Digits {
        self.digits
    }

    /// The code as a number (leading zeros are not part of a number; see [`Code::digits`]).
    #[must_use]
    pub const fn value(&self) -> u32 {
        self.value
    }
}

impl ConstantTimeEq for Code {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.value.ct_eq(&other.value) & self.digits.get().ct_eq(&other.digits.get())
    }
}

impl PartialEq for Code {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Code {}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:0width$}",
            self.value,
            width = usize::from(self.digits.get())
        )
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({} digits, redacted)", self.digits)
    }
}

/// Why typed text is not a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// Something other than digits and spaces.
    #[error("a code may only contain digits and spaces")]
    Malformed,
    /// The wrong number of digits.
    #[error("expected a code of {expected} digits, got {actual}")]
    WrongLength {
        /// The digits the code must have.
        expected: u8,
        /// The digits it had.
        actual: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn typed_codes_allow_spaces_and_nothing_else() {
        assert_eq!(
            Code::parse("123456", Digits::SIX).map(|c| c.value()),
            Ok(123_456)
        );
        assert_eq!(
            Code::parse(" 123 456 ", Digits::SIX).map(|c| c.value()),
            Ok(123_456)
        );
        assert_eq!(
            Code::parse("012345", Digits::SIX).map(|c| c.to_string()),
            Ok("012345".into())
        );
        for bad in [
            "123-456",
            "12345a",
            "１２３４５６",
            "123\t456",
            "+123456",
            "-12345",
        ] {
            assert_eq!(
                Code::parse(bad, Digits::SIX).err(),
                Some(CodeError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            Code::parse("", Digits::SIX).err(),
            Some(CodeError::WrongLength {
                expected: 6,
                actual: 0
            })
        );
        assert_eq!(
            Code::parse("99999999999999999999999", Digits::EIGHT).err(),
            Some(CodeError::WrongLength {
                expected: 8,
                actual: 23
            })
        );
    }

    #[test]
    fn debug_never_shows_the_digits() {
        let code = Code::parse("987654", Digits::SIX).unwrap();
        let shown = alloc::format!("{code:?}");
        assert!(
            !shown.contains("987654") && !shown.contains("98765"),
            "{shown}"
        );
    }
}
