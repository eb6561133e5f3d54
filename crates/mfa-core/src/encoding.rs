//! The byte form in which stores keep records and events: a format version, then postcard.
//!
//! Stores treat these bytes as opaque; only this crate reads them, so a store cannot build a record
//! the state machine could not have produced, except by replaying bytes it was given.

use alloc::vec::Vec;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The current byte format. A reader refuses any other, rather than misreading a newer one.
const FORMAT: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128);
    bytes.push(FORMAT);
    #[allow(
        clippy::expect_used,
        reason = "postcard fails only for types serde cannot describe without a schema; ours are plain derives"
    )]
    postcard::to_extend(value, bytes).expect("records serialise")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        Some((&FORMAT, body)) => match postcard::take_from_bytes(body) {
            // Bytes left over mean these are not the bytes we wrote.
            Ok((value, [])) => Ok(value),
            _ => Err(DecodeError::Corrupt),
        },
        Some((&other, _)) => Err(DecodeError::UnknownFormat(other)),
        None => Err(DecodeError::Corrupt),
    }
}

/// Stored bytes that are not a record this version can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Written in another format (by a newer version of this crate).
    #[error("stored data has format {0}; this version reads format 1")]
    UnknownFormat(u8),
    /// Not a valid record.
    #[error("stored data is corrupt")]
    Corrupt,
}
