//! Who a record belongs to: the organisation (one customer portal) and the customer within it.

use alloc::string::String;
use core::fmt;

use serde::{Deserialize, Serialize};

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 255;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("A ", $what, " id: 1 to 255 bytes of UTF-8 with no control characters")]
            /// and no white space at either end (it would vanish from key URIs and forms, and two
            /// spellings of one id would be two customers).
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

fn check(id: &str) -> Result<(), IdError> {
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
        let bytes = postcard::to_allocvec("bad\u{0}id").unwrap();
        assert!(postcard::from_bytes::<CustomerId>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&CustomerId::new("ok").unwrap()).unwrap();
        assert_eq!(
            postcard::from_bytes::<CustomerId>(&bytes).unwrap().as_str(),
            "ok"
        );
    }
}
