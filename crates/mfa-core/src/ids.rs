//! Who a record belongs to: the organisation (one customer portal) and the customer within it.

use alloc::string::String;
use core::fmt;

use serde::{Deserialize, Serialize};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 255;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "StoredId", into = "String")]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("A ", $what, " id: 1 to 255 bytes of UTF-8 with no control characters,")]
            /// no format characters (Unicode category Cf: bidirectional overrides, zero-width
            /// joiners and spaces, soft hyphens, which make one id look like another or reorder
            /// what is shown around it) and no white space at either end (it would vanish from key
            /// URIs and forms, and two spellings of one id would be two customers).
            ///
            /// # Errors
            /// [`IdError`] saying which rule the text breaks.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                check(&id)?;
                Ok(Self(id))
            }

            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(id: String) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        /// Stored ids are read by the rules they were written under: an id an earlier version
        /// accepted (before format characters were refused) still reads, so its record does.
        impl TryFrom<StoredId> for $name {
            type Error = IdError;
            fn try_from(id: StoredId) -> Result<Self, IdError> {
                check_stored(&id.0)?;
                Ok(Self(id.0))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(id: &str) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// An organisation: the operator of one customer portal (the portal example uses its name).
    OrgId,
    "organisation"
);
id_type!(
    /// A customer of an organisation (the portal example uses the email address).
    CustomerId,
    "customer"
);

/// Who did an administrative action, for the audit log: an administrator's email, a job's name.
///
/// New names follow the rules of ids ([`OrgId::new`]), so that the audit log shows what was
/// typed; names in stored events read back as they were written.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// A name: 1 to 255 bytes of UTF-8, no control or format characters, no white space at either
    /// end.
    ///
    /// # Errors
    /// [`IdError`] saying which rule the text breaks.
    pub fn new(name: impl Into<String>) -> Result<Self, IdError> {
        let name = name.into();
        check(&name)?;
        Ok(Self(name))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Actor {
    type Error = IdError;
    fn try_from(name: &str) -> Result<Self, IdError> {
        Self::new(name)
    }
}

/// A customer acting as an administrator (of their own organisation's portal) is named by their id.
impl From<&CustomerId> for Actor {
    fn from(customer: &CustomerId) -> Self {
        Self(customer.as_str().into())
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actor({:?})", self.0)
    }
}

/// An id as stores and events hold it.
#[derive(Deserialize)]
#[serde(transparent)]
struct StoredId(String);

/// The rules for a new id.
fn check(id: &str) -> Result<(), IdError> {
    check_stored(id)?;
    if id
        .chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(IdError::FormatCharacter);
    }
    Ok(())
}

/// The rules every stored id was written under.
fn check_stored(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if id.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    if id.trim() != id {
        return Err(IdError::SurroundingWhitespace);
    }
    Ok(())
}

/// Why text is not an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    #[error("an id must not be empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("an id must be at most {MAX_ID_LEN} bytes")]
    TooLong,
    /// The id contains a control character.
    #[error("an id must not contain control characters")]
    ControlCharacter,
    /// The id starts or ends with white space.
    #[error("an id must not start or end with white space")]
    SurroundingWhitespace,
    /// The id contains a format character (Unicode category Cf: a bidirectional override, a
    /// zero-width character, a soft hyphen).
    #[error("an id must not contain invisible format characters")]
    FormatCharacter,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn ids_are_checked_on_creation_and_on_deserialisation() {
        assert_eq!(OrgId::new("acme").unwrap().as_str(), "acme");
        assert_eq!(
            CustomerId::new("alice@acme.test").unwrap().to_string(),
            "alice@acme.test"
        );
        assert_eq!(OrgId::new(""), Err(IdError::Empty));
        assert_eq!(OrgId::new("a".repeat(256)), Err(IdError::TooLong));
        assert!(OrgId::new("a".repeat(255)).is_ok());
        assert_eq!(CustomerId::new("bob\n"), Err(IdError::ControlCharacter));
        for spaced in [" ", " bob", "bob ", "\u{a0}bob", "bob\u{2003}"] {
            assert_eq!(
                CustomerId::new(spaced),
                Err(IdError::SurroundingWhitespace),
                "{spaced:?}"
            );
        }
        assert!(CustomerId::new("Bob Smith").is_ok());
        // Invisible or reordering characters: `alice@acme.test` spelt another way, or shown
        // backwards around what follows it.
        for sly in [
            "alice\u{200b}@acme.test",
            "\u{202e}tset.emca@ecila",
            "ali\u{ad}ce@acme.test",
            "alice@acme.test\u{2066}",
            "\u{feff}alice@acme.test",
        ] {
            assert_eq!(
                CustomerId::new(sly),
                Err(IdError::FormatCharacter),
                "{sly:?}"
            );
            // Written by an earlier version, it still reads.
            let bytes = postcard::to_allocvec(sly).unwrap();
            assert_eq!(
                postcard::from_bytes::<CustomerId>(&bytes).unwrap().as_str(),
                sly
            );
        }
        assert!(CustomerId::new("zoë@acme.test").is_ok());
        assert!(
            CustomerId::new("\u{5d0}\u{5d1}@acme.test").is_ok(),
            "right-to-left letters are letters"
        );
        let bytes = postcard::to_allocvec("bad\u{0}id").unwrap();
        assert!(postcard::from_bytes::<CustomerId>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&CustomerId::new("ok").unwrap()).unwrap();
        assert_eq!(
            postcard::from_bytes::<CustomerId>(&bytes).unwrap().as_str(),
            "ok"
        );
    }
}
