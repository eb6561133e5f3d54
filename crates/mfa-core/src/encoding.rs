//! The byte form in which stores keep records and events: a format version, then postcard. Each
//! type names the format it writes and the older ones it still reads.
//!
//! Stores treat these bytes as opaque; only this crate reads them, so a store cannot build a record
//! the state machine could not have produced, except by replaying bytes it was given.

use alloc::vec::Vec;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The byte format of policies and events. A reader refuses a format it does not know, rather than
/// misreading a newer one.
pub(crate) const FORMAT: u8 = 1;

pub(crate) fn encode<T: Serialize>(format: u8, value: &T) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128);
    bytes.push(format);
    #[allow(
        clippy::expect_used,
        reason = "postcard fails only for types serde cannot describe without a schema; ours are plain derives"
    )]
    postcard::to_extend(value, bytes).expect("records serialise")
}

/// The format byte and the body after it.
pub(crate) fn format_of(bytes: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    bytes
        .split_first()
        .map(|(&format, body)| (format, body))
        .ok_or(DecodeError::Corrupt)
}

/// A body, after its format byte.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes(body) {
        // Bytes left over mean these are not the bytes we wrote.
        Ok((value, [])) => Ok(value),
        _ => Err(DecodeError::Corrupt),
    }
}

/// Bytes of format [`FORMAT`].
pub(crate) fn decode_current<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match format_of(bytes)? {
        (FORMAT, body) => decode(body),
        (other, _) => Err(DecodeError::UnknownFormat(other)),
    }
}

/// Stored bytes that are not a record this version can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Written in another format (by a newer version of this crate).
    #[error("stored data has format {0}, which this version cannot read")]
    UnknownFormat(u8),
    /// Not a valid record.
    #[error("stored data is corrupt")]
    Corrupt,
}
