//! Sealing secrets at rest: XChaCha20-Poly1305 under a ring of keys with ids, so keys rotate without
//! downtime (REQUIREMENTS 0, "Secrets at rest"; DESIGN: secrets never rest in plaintext in a store).
//!
//! A [`KeyRing`] holds every key that may still open a stored secret and names one of them active.
//! [`KeyRing::seal`] encrypts under the active key, and each [`SealedSecret`] carries the id of its key
//! so [`KeyRing::open`] can pick the right one. To rotate: add the new key, make it active, reseal the
//! stored secrets as they are read or in a sweep ([`KeyRing::needs_reseal`], [`KeyRing::reseal`]), and
//! leave the old key out of the ring once no secret is sealed under it.
//!
//! # Nonces
//! Every seal draws a fresh 24-byte nonce from the caller's CSPRNG. XChaCha20's 192-bit nonce is long
//! enough for random nonces: after 2^32 seals under one key the chance that two nonces collide is about
//! 2^-129, where a 96-bit nonce (ChaCha20-Poly1305, AES-GCM) would already be at NIST's 2^-32 limit.
//! So no counter has to be stored and kept in step across service nodes.
//!
//! # Associated data
//! A sealed secret is authenticated together with whose it is and which key sealed it, so a row that is
//! copied or relabelled in the store (by an attacker with write access, or by a bug) fails to open
//! with [`SealError::Forged`] instead of handing one customer another's secret. The associated data is
//!
//! ```text
//! "mfa-core sealed TOTP secret v1"
//! || len(org) as u32 BE      || org id, UTF-8
//! || len(customer) as u32 BE || customer id, UTF-8
//! || key id as u32 BE
//! ```
//!
//! - The label separates domains: should a key ever seal anything else, or a later layout come along,
//!   neither can be passed off as this one.
//! - The length prefixes keep the ids apart: without them organisation `"ab"` with customer `"c"` and
//!   organisation `"a"` with customer `"bc"` would give the same bytes.
//! - The key id sits beside the ciphertext in clear. Binding it makes it authentic, so a record moved
//!   to another id does not open even where one key's material is loaded under two ids, and a record
//!   that opens really is under the key [`KeyRing::needs_reseal`] reads from it.
//!
//! The nonce needs no place here: the AEAD authenticates it already.
//!
//! # Stored form
//! [`SealedSecret::to_bytes`] gives a self-describing byte string for stores that keep bytes: format
//! version `1` || key id (u32 BE) || nonce (24 bytes) || ciphertext and its 16-byte Poly1305 tag.
//! `SealedSecret` is also `serde`-serialisable for stores that keep structured records.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::collections::btree_map::Entry;
use alloc::vec::Vec;
use core::fmt;

use chacha20poly1305::aead::array::typenum::Unsigned;
use chacha20poly1305::{AeadCore, AeadInOut, Key, KeyInit, XChaCha20Poly1305, XNonce};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{CustomerId, OrgId, Secret};

/// The first bytes of the associated data: what is sealed, in which layout.
const LABEL: &[u8] = b"mfa-core sealed TOTP secret v1";
/// The first byte of [`SealedSecret::to_bytes`].
const FORMAT_VERSION: u8 = 1;
/// A sealing key's length in bytes (256 bits).
const KEY_LEN: usize = 32;
/// XChaCha20's nonce length in bytes.
const NONCE_LEN: usize = 24;
/// Poly1305's tag length in bytes.
const TAG_LEN: usize = 16;
/// The shortest ciphertext a seal produces: the tag and one byte of secret (a [`Secret`] is never
/// empty).
const MIN_CIPHERTEXT_LEN: usize = 17;
/// Version byte, key id and nonce: what [`SealedSecret::to_bytes`] puts before the ciphertext.
const HEADER_LEN: usize = 29;

// The lengths above are spelled out for the byte format; tie them to the cipher's own so they cannot
// drift apart. (The key and nonce lengths are checked by the types already: `Key` and `XNonce` are
// built from arrays of exactly `KEY_LEN` and `NONCE_LEN` bytes.)
const _: () = assert!(<XChaCha20Poly1305 as AeadCore>::TagSize::USIZE == TAG_LEN);
const _: () = assert!(MIN_CIPHERTEXT_LEN == TAG_LEN + 1);
const _: () = assert!(HEADER_LEN == 1 + 4 + NONCE_LEN);

/// Identifies a sealing key; stored beside each sealed secret so keys can rotate.
///
/// The number is the operator's choice (a counter, or a date such as `20260401`). It has to be unique
/// within a [`KeyRing`], and must never be reused for other key material: secrets sealed under the old
/// material would stop opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(u32);

impl KeyId {
    /// The key id `id`.
    #[must_use]
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The number.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A 256-bit sealing key with its id.
///
/// It never shows itself: `Debug` prints only the id, there is no way to read the key back, and it is
/// zeroized when dropped, clones included.
pub struct SealingKey {
    id: KeyId,
    // Boxed so the key stays in one heap allocation for its whole life: moving a `SealingKey` (into a
    // ring, out of a function) copies a pointer and leaves no copy of the key on the stack.
    // `Zeroizing` wipes the allocation when the key is dropped.
    key: Box<Zeroizing<[u8; KEY_LEN]>>,
}

impl SealingKey {
    /// The key `key` under the id `id`.
    ///
    /// The array is this function's own copy, and it is wiped before returning; wiping the caller's
    /// original is up to the caller. [`SealingKey::from_slice`] borrows instead, for keys that already
    /// sit in a zeroizing buffer.
    #[must_use]
    pub fn new(id: KeyId, mut key: [u8; KEY_LEN]) -> Self {
        let mut sealing_key = Self::zeroed(id);
        sealing_key.key.copy_from_slice(&key);
        key.zeroize();
        sealing_key
    }

    /// The key `key` (32 bytes) under the id `id`, for key material read from a file or a key service.
    ///
    /// # Errors
    /// [`SealError::InvalidKeyLength`] when `key` is not 32 bytes long.
    pub fn from_slice(id: KeyId, key: &[u8]) -> Result<Self, SealError> {
        // A reference, not an array: converting to `[u8; 32]` would leave a copy of the key behind.
        let key = <&[u8; KEY_LEN]>::try_from(key).map_err(|_| SealError::InvalidKeyLength)?;
        let mut sealing_key = Self::zeroed(id);
        sealing_key.key.copy_from_slice(key);
        Ok(sealing_key)
    }

    /// A fresh key from a cryptographically secure RNG, under the id `id`.
    #[must_use]
    pub fn generate<R: CryptoRng + ?Sized>(id: KeyId, rng: &mut R) -> Self {
        let mut sealing_key = Self::zeroed(id);
        // Straight into the heap allocation: the key never exists anywhere else.
        rng.fill_bytes(sealing_key.key.as_mut_slice());
        sealing_key
    }

    /// The key's id.
    #[must_use]
    pub const fn id(&self) -> KeyId {
        self.id
    }

    /// An all-zero key, to be filled in place.
    fn zeroed(id: KeyId) -> Self {
        Self {
            id,
            key: Box::new(Zeroizing::new([0; KEY_LEN])),
        }
    }

    /// The AEAD under this key. It holds its own copy of the key, which chacha20poly1305's `zeroize`
    /// feature wipes when the cipher is dropped; building it for each operation keeps that copy short-lived.
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(<&Key>::from(&**self.key))
    }
}

impl Clone for SealingKey {
    // By hand: the derived clone would build the new array by value, possibly on the stack, before
    // boxing it. Copying into a fresh zeroed box leaves no stray copy of the key.
    fn clone(&self) -> Self {
        let mut clone = Self::zeroed(self.id);
        clone.key.copy_from_slice(self.key.as_slice());
        clone
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

// The only secret field is a `Zeroizing`, which wipes itself when dropped.
impl ZeroizeOnDrop for SealingKey {}

/// The keys that can open sealed secrets, one of them active for sealing.
///
/// `Debug` shows the ids only.
#[derive(Clone)]
pub struct KeyRing {
    // Always a key of `keys`: `new` inserts it, `set_active` checks for it, and no method removes a key.
    active: KeyId,
    keys: BTreeMap<KeyId, SealingKey>,
}

impl KeyRing {
    /// A ring holding `active`, which seals.
    #[must_use]
    pub fn new(active: SealingKey) -> Self {
        let id = active.id;
        let mut keys = BTreeMap::new();
        keys.insert(id, active);
        Self { active: id, keys }
    }

    /// Adds a key that opens older secrets (or will become active).
    ///
    /// # Errors
    /// [`SealError::DuplicateKeyId`] when the ring already holds a key with this id. It is not
    /// replaced: if the material differed, every secret sealed under the old one would stop opening.
    pub fn add(&mut self, key: SealingKey) -> Result<(), SealError> {
        match self.keys.entry(key.id) {
            Entry::Occupied(_) => Err(SealError::DuplicateKeyId(key.id)),
            Entry::Vacant(slot) => {
                slot.insert(key);
                Ok(())
            }
        }
    }

    /// Makes the key with id `id` the one that seals. Secrets sealed under the others still open.
    ///
    /// # Errors
    /// [`SealError::UnknownKey`] when the ring holds no key with this id; the active key is unchanged.
    pub fn set_active(&mut self, id: KeyId) -> Result<(), SealError> {
        if !self.keys.contains_key(&id) {
            return Err(SealError::UnknownKey(id));
        }
        self.active = id;
        Ok(())
    }

    /// The id of the key that seals.
    #[must_use]
    pub const fn active_id(&self) -> KeyId {
        self.active
    }

    /// The ids of all the keys in the ring, in ascending order.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// Seals `secret` for `customer` of `org` under the active key, with a fresh random 24-byte nonce
    /// (XChaCha20's nonce is long enough for random nonces; see the module docs).
    #[must_use]
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        secret: &Secret,
        org: &OrgId,
        customer: &CustomerId,
        rng: &mut R,
    ) -> SealedSecret {
        let key = self.active_key();
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let aad = associated_data(org, customer, key.id);
        let plaintext = secret.as_bytes();
        // The buffer holds the plaintext until it is encrypted in place, and `Zeroizing` wipes it
        // should that not happen. It has room for the tag, so appending the tag never reallocates and
        // leaves no copy of the plaintext in a freed allocation.
        let mut buffer =
            Zeroizing::new(Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN)));
        buffer.extend_from_slice(plaintext);
        let encrypted = key
            .cipher()
            .encrypt_in_place(&XNonce::from(nonce), &aad, &mut *buffer);
        #[allow(
            clippy::expect_used,
            reason = "ChaCha20 refuses only messages of 2^32 blocks (256 GiB) or more; a TOTP secret \
                      is at most 64 bytes, and no `Secret` of 256 GiB exists in practice"
        )]
        encrypted.expect("a secret is far shorter than ChaCha20's 256 GiB limit");
        SealedSecret {
            key_id: key.id,
            nonce,
            // Now ciphertext and tag, nothing secret: out of the `Zeroizing`, which is left empty.
            ciphertext: core::mem::take(&mut *buffer),
        }
    }

    /// Opens a secret sealed for `customer` of `org`.
    ///
    /// # Errors
    /// [`SealError::UnknownKey`] naming the key id it needed when the ring does not hold that key;
    /// [`SealError::Forged`] when authentication fails: other key material under that id, another
    /// customer's or organisation's sealed secret, or tampering.
    pub fn open(
        &self,
        sealed: &SealedSecret,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Secret, SealError> {
        let key = self
            .keys
            .get(&sealed.key_id)
            .ok_or(SealError::UnknownKey(sealed.key_id))?;
        let aad = associated_data(org, customer, sealed.key_id);
        // Decrypted in a copy that `Zeroizing` wipes whatever happens, all of its capacity included,
        // once the plaintext has been copied into the `Secret`.
        let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
        key.cipher()
            .decrypt_in_place(&XNonce::from(sealed.nonce), &aad, &mut *buffer)
            .map_err(|_| SealError::Forged(sealed.key_id))?;
        // Never empty: every `SealedSecret` has at least `MIN_CIPHERTEXT_LEN` bytes (each way of
        // making one checks), so at least one byte of plaintext authenticated.
        Secret::from_bytes(&buffer).map_err(|_| SealError::Malformed)
    }

    /// Opens `sealed` and seals it again under the active key, with a fresh nonce (for rotation).
    ///
    /// # Errors
    /// As [`KeyRing::open`].
    pub fn reseal<R: CryptoRng + ?Sized>(
        &self,
        sealed: &SealedSecret,
        org: &OrgId,
        customer: &CustomerId,
        rng: &mut R,
    ) -> Result<SealedSecret, SealError> {
        let secret = self.open(sealed, org, customer)?;
        Ok(self.seal(&secret, org, customer, rng))
    }

    /// Whether `sealed` is under a key other than the active one, and so due for [`KeyRing::reseal`].
    #[must_use]
    pub fn needs_reseal(&self, sealed: &SealedSecret) -> bool {
        sealed.key_id != self.active
    }

    fn active_key(&self) -> &SealingKey {
        #[allow(
            clippy::expect_used,
            reason = "the active id is always in `keys`: `new` inserts it, `set_active` checks for it, \
                      and no method removes a key"
        )]
        self.keys
            .get(&self.active)
            .expect("the active key is in the ring")
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("keys", &KeyIds(&self.keys))
            .finish()
    }
}

/// Formats a ring's keys as the list of their ids.
struct KeyIds<'a>(&'a BTreeMap<KeyId, SealingKey>);

impl fmt::Debug for KeyIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// The associated data binding a sealed secret to its owner and its key; the layout and the reasons
/// for it are in the module docs.
fn associated_data(org: &OrgId, customer: &CustomerId, key_id: KeyId) -> Vec<u8> {
    let mut aad = Vec::new();
    aad.extend_from_slice(LABEL);
    push_length_prefixed(&mut aad, org.as_str().as_bytes());
    push_length_prefixed(&mut aad, customer.as_str().as_bytes());
    aad.extend_from_slice(&key_id.0.to_be_bytes());
    aad
}

fn push_length_prefixed(aad: &mut Vec<u8>, field: &[u8]) {
    // Ids are at most `MAX_ID_LEN` (255) bytes, so the length always fits and never saturates.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    aad.extend_from_slice(&len.to_be_bytes());
    aad.extend_from_slice(field);
}

/// A sealed secret: the id of its key, the nonce, and the ciphertext with its tag.
///
/// Nothing in it is secret, but `Debug` shows only the key id and the lengths, which is all a log needs.
/// Every way of making one (sealing, [`SealedSecret::from_bytes`], deserialising) checks that the
/// ciphertext is long enough to hold a tag and a non-empty secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SealedSecretFields")]
pub struct SealedSecret {
    key_id: KeyId,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl SealedSecret {
    /// The id of the key that sealed it.
    #[must_use]
    pub const fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// A self-describing byte form for stores: format version byte `1` || key id (u32 big-endian) ||
    /// nonce (24 bytes) || ciphertext and its 16-byte tag. [`SealedSecret::from_bytes`] reads it back.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN.saturating_add(self.ciphertext.len()));
        bytes.push(FORMAT_VERSION);
        bytes.extend_from_slice(&self.key_id.0.to_be_bytes());
        bytes.extend_from_slice(&self.nonce);
        bytes.extend_from_slice(&self.ciphertext);
        bytes
    }

    /// Reads the form [`SealedSecret::to_bytes`] writes. Only the layout is checked here; whether the
    /// secret is authentic is for [`KeyRing::open`] to find out.
    ///
    /// # Errors
    /// [`SealError::Malformed`] for a format version other than 1, or input too short to hold the
    /// header, the 16-byte tag and at least one byte of secret.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let Some((&FORMAT_VERSION, rest)) = bytes.split_first() else {
            return Err(SealError::Malformed);
        };
        let (key_id, rest) = rest.split_first_chunk::<4>().ok_or(SealError::Malformed)?;
        let (nonce, ciphertext) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(SealError::Malformed)?;
        Self::from_parts(
            KeyId(u32::from_be_bytes(*key_id)),
            *nonce,
            ciphertext.to_vec(),
        )
    }

    fn from_parts(
        key_id: KeyId,
        nonce: [u8; NONCE_LEN],
        ciphertext: Vec<u8>,
    ) -> Result<Self, SealError> {
        if ciphertext.len() < MIN_CIPHERTEXT_LEN {
            return Err(SealError::Malformed);
        }
        Ok(Self {
            key_id,
            nonce,
            ciphertext,
        })
    }
}

/// What a [`SealedSecret`] deserialises from before its length is checked. The same fields under the
/// same name, so the serialised form is the derived one.
#[derive(Deserialize)]
#[serde(rename = "SealedSecret")]
struct SealedSecretFields {
    key_id: KeyId,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl TryFrom<SealedSecretFields> for SealedSecret {
    type Error = SealError;

    fn try_from(fields: SealedSecretFields) -> Result<Self, SealError> {
        Self::from_parts(fields.key_id, fields.nonce, fields.ciphertext)
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .field("nonce_len", &self.nonce.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// Why a secret could not be sealed or opened, or a key not loaded. Never contains any part of a
/// secret or a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The ring holds no key with this id: the sealed secret needs a key that is not loaded, or
    /// `set_active` named one.
    #[error("no sealing key with id {0} is loaded")]
    UnknownKey(KeyId),
    /// The sealed secret does not authenticate: other key material under its key id, a sealed secret
    /// of another customer or organisation, or tampering.
    #[error(
        "the sealed secret does not open under key id {0} (other key material under that id, \
         another owner's secret, or tampering)"
    )]
    Forged(KeyId),
    /// Not a sealed secret: an unknown format version, or too short.
    #[error("the sealed secret is malformed")]
    Malformed,
    /// The ring already holds a key with this id.
    #[error("a sealing key with id {0} is already loaded")]
    DuplicateKeyId(KeyId),
    /// Key material of the wrong length.
    #[error("a sealing key must be {KEY_LEN} bytes")]
    InvalidKeyLength,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec;
    use core::convert::Infallible;

    use proptest::prelude::*;

    fn org(id: &str) -> OrgId {
        OrgId::new(id).unwrap()
    }

    fn customer(id: &str) -> CustomerId {
        CustomerId::new(id).unwrap()
    }

    fn ring(id: u32, byte: u8) -> KeyRing {
        KeyRing::new(SealingKey::new(KeyId::new(id), [byte; KEY_LEN]))
    }

    /// A secret of `len` bytes with a recognisable pattern.
    fn secret(len: usize) -> Secret {
        let bytes: Vec<u8> = (0..len).map(|i| 0xc0 ^ (i as u8)).collect();
        Secret::from_bytes(&bytes).unwrap()
    }

    fn acme() -> (OrgId, CustomerId) {
        (org("acme"), customer("alice@acme.test"))
    }

    /// Counts up from a start byte: a predictable "CSPRNG" for the known answer.
    struct Counting(u8);

    impl rand_core::TryRng for Counting {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            let mut bytes = [0; 4];
            self.try_fill_bytes(&mut bytes)?;
            Ok(u32::from_le_bytes(bytes))
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            let mut bytes = [0; 8];
            self.try_fill_bytes(&mut bytes)?;
            Ok(u64::from_le_bytes(bytes))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            for byte in dst {
                *byte = self.0;
                self.0 = self.0.wrapping_add(1);
            }
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for Counting {}

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `shown` contains no run of four consecutive bytes of `bytes`: not raw, not as hex in either
    /// case, not as a decimal list.
    fn assert_hides(shown: &str, bytes: &[u8]) {
        for window in bytes.windows(4) {
            let lower = hex(window);
            let decimal = format!("{window:?}");
            let decimal = decimal.trim_start_matches('[').trim_end_matches(']');
            assert!(!shown.contains(&lower), "{shown} shows {lower}");
            assert!(
                !shown.contains(&lower.to_uppercase()),
                "{shown} shows {lower}"
            );
            assert!(!shown.contains(decimal), "{shown} shows {decimal}");
            assert!(
                !shown.as_bytes().windows(4).any(|w| w == window),
                "{shown} has raw bytes"
            );
        }
    }

    #[test]
    fn round_trip_for_each_hmac_key_length() {
        let keys = ring(1, 7);
        let (org, customer) = acme();
        let mut rng = rand::rng();
        for len in [20, 32, 64] {
            let secret = secret(len);
            let sealed = keys.seal(&secret, &org, &customer, &mut rng);
            assert_eq!(sealed.key_id(), KeyId::new(1));
            assert_eq!(sealed.ciphertext.len(), len + TAG_LEN);
            // Encrypted, not copied: the plaintext is not in the ciphertext.
            assert_ne!(&sealed.ciphertext[..len], secret.as_bytes());
            assert_eq!(keys.open(&sealed, &org, &customer), Ok(secret));
        }
    }

    #[test]
    fn each_seal_draws_a_fresh_nonce() {
        let keys = ring(1, 7);
        let (org, customer) = acme();
        let secret = secret(20);
        let mut rng = rand::rng();
        let a = keys.seal(&secret, &org, &customer, &mut rng);
        let b = keys.seal(&secret, &org, &customer, &mut rng);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_ne!(a, b);
        assert_eq!(keys.open(&a, &org, &customer).unwrap(), secret);
        assert_eq!(keys.open(&b, &org, &customer).unwrap(), secret);
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_customer_and_organisation() {
        let keys = ring(1, 7);
        let (acme, alice) = acme();
        let sealed = keys.seal(&secret(20), &acme, &alice, &mut rand::rng());
        let bob = customer("bob@acme.test");
        let globex = org("globex");
        assert_eq!(
            keys.open(&sealed, &acme, &bob),
            Err(SealError::Forged(KeyId::new(1)))
        );
        assert_eq!(
            keys.open(&sealed, &globex, &alice),
            Err(SealError::Forged(KeyId::new(1)))
        );
        assert_eq!(
            keys.open(&sealed, &globex, &bob),
            Err(SealError::Forged(KeyId::new(1)))
        );
        // The length prefixes keep ("ab", "c") and ("a", "bc") apart.
        let split = keys.seal(&secret(20), &org("ab"), &customer("c"), &mut rand::rng());
        assert_eq!(
            keys.open(&split, &org("a"), &customer("bc")),
            Err(SealError::Forged(KeyId::new(1)))
        );
        assert!(keys.open(&split, &org("ab"), &customer("c")).is_ok());
    }

    /// The bytes of `sealed` with another key id written into the header.
    fn relabel(sealed: &SealedSecret, id: u32) -> SealedSecret {
        let mut bytes = sealed.to_bytes();
        bytes[1..5].copy_from_slice(&id.to_be_bytes());
        SealedSecret::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn a_relabelled_key_id_does_not_open() {
        // The same material under two ids: only the key id in the associated data tells them apart.
        let mut keys = ring(1, 7);
        keys.add(SealingKey::new(KeyId::new(2), [7; KEY_LEN]))
            .unwrap();
        let (org, customer) = acme();
        let sealed = keys.seal(&secret(20), &org, &customer, &mut rand::rng());
        let moved = relabel(&sealed, 2);
        assert_eq!(moved.key_id(), KeyId::new(2));
        assert_eq!(
            keys.open(&moved, &org, &customer),
            Err(SealError::Forged(KeyId::new(2)))
        );
        assert_eq!(relabel(&moved, 1), sealed);
        assert!(keys.open(&relabel(&moved, 1), &org, &customer).is_ok());
    }

    #[test]
    fn no_single_flipped_bit_opens() {
        let keys = ring(1, 7);
        let (org, customer) = acme();
        let sealed = keys.seal(&secret(20), &org, &customer, &mut rand::rng());
        let bytes = sealed.to_bytes();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let result =
                SealedSecret::from_bytes(&flipped).and_then(|s| keys.open(&s, &org, &customer));
            let want = match bit / 8 {
                0 => Err(SealError::Malformed),
                byte @ 1..=4 => {
                    let shift = (4 - byte) * 8 + bit % 8;
                    Err(SealError::UnknownKey(KeyId::new(1 ^ (1 << shift))))
                }
                _ => Err(SealError::Forged(KeyId::new(1))),
            };
            assert_eq!(result.map(|_| ()), want, "bit {bit}");
        }
    }

    #[test]
    fn a_flipped_nonce_or_ciphertext_bit_is_forged() {
        let keys = ring(1, 7);
        let (org, customer) = acme();
        let sealed = keys.seal(&secret(32), &org, &customer, &mut rand::rng());
        let mut nonce = sealed.clone();
        nonce.nonce[5] ^= 0x10;
        assert_eq!(
            keys.open(&nonce, &org, &customer),
            Err(SealError::Forged(KeyId::new(1)))
        );
        let mut body = sealed.clone();
        body.ciphertext[0] ^= 1;
        assert_eq!(
            keys.open(&body, &org, &customer),
            Err(SealError::Forged(KeyId::new(1)))
        );
        let mut tag = sealed;
        *tag.ciphertext.last_mut().unwrap() ^= 0x80;
        assert_eq!(
            keys.open(&tag, &org, &customer),
            Err(SealError::Forged(KeyId::new(1)))
        );
    }

    #[test]
    fn a_truncated_or_extended_ciphertext_does_not_open() {
        let keys = ring(1, 7);
        let (org, customer) = acme();
        let sealed = keys.seal(&secret(20), &org, &customer, &mut rand::rng());
        let bytes = sealed.to_bytes();
        // Shorter but still long enough to parse: the tag no longer matches.
        let shorter = SealedSecret::from_bytes(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(
            keys.open(&shorter, &org, &customer),
            Err(SealError::Forged(KeyId::new(1)))
        );
        let tag_and_one =
            SealedSecret::from_bytes(&bytes[..HEADER_LEN + MIN_CIPHERTEXT_LEN]).unwrap();
        assert_eq!(
            keys.open(&tag_and_one, &org, &customer),
            Err(SealError::Forged(KeyId::new(1)))
        );
        // Too short to hold a tag and a byte of secret: not a sealed secret at all.
        for len in 0..HEADER_LEN + MIN_CIPHERTEXT_LEN {
            assert_eq!(
                SealedSecret::from_bytes(&bytes[..len]),
                Err(SealError::Malformed),
                "{len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let longer = SealedSecret::from_bytes(&longer).unwrap();
        assert_eq!(
            keys.open(&longer, &org, &customer),
            Err(SealError::Forged(KeyId::new(1)))
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let (org, customer) = acme();
        let sealed = ring(7, 1).seal(&secret(20), &org, &customer, &mut rand::rng());
        let error = ring(3, 1).open(&sealed, &org, &customer).unwrap_err();
        assert_eq!(error, SealError::UnknownKey(KeyId::new(7)));
        assert_eq!(format!("{error}"), "no sealing key with id 7 is loaded");
    }

    #[test]
    fn other_key_material_under_the_same_id_is_forged() {
        let (org, customer) = acme();
        let sealed = ring(1, 1).seal(&secret(20), &org, &customer, &mut rand::rng());
        assert_eq!(
            ring(1, 2).open(&sealed, &org, &customer),
            Err(SealError::Forged(KeyId::new(1)))
        );
    }

    #[test]
    fn rotation() {
        let (org, customer) = acme();
        let mut rng = rand::rng();
        let secret = secret(20);
        let mut keys = ring(1, 1);
        let old = keys.seal(&secret, &org, &customer, &mut rng);
        assert!(!keys.needs_reseal(&old));

        keys.add(SealingKey::new(KeyId::new(2), [2; KEY_LEN]))
            .unwrap();
        assert_eq!(keys.active_id(), KeyId::new(1), "adding does not activate");
        keys.set_active(KeyId::new(2)).unwrap();
        assert_eq!(keys.active_id(), KeyId::new(2));
        assert_eq!(
            keys.key_ids().collect::<Vec<_>>(),
            [KeyId::new(1), KeyId::new(2)]
        );

        assert_eq!(keys.open(&old, &org, &customer).as_ref(), Ok(&secret));
        assert!(keys.needs_reseal(&old));
        let new = keys.reseal(&old, &org, &customer, &mut rng).unwrap();
        assert_eq!(new.key_id(), KeyId::new(2));
        assert!(!keys.needs_reseal(&new));
        assert_eq!(keys.open(&new, &org, &customer).as_ref(), Ok(&secret));
        // Fresh seals use the new key too.
        assert_eq!(
            keys.seal(&secret, &org, &customer, &mut rng).key_id(),
            KeyId::new(2)
        );

        // Once every secret is resealed, the old key can go.
        let only_new = ring(2, 2);
        assert_eq!(only_new.open(&new, &org, &customer).as_ref(), Ok(&secret));
        assert_eq!(
            only_new.open(&old, &org, &customer),
            Err(SealError::UnknownKey(KeyId::new(1)))
        );
        assert_eq!(
            only_new.reseal(&old, &org, &customer, &mut rng),
            Err(SealError::UnknownKey(KeyId::new(1)))
        );
        // Resealing under another owner fails as opening does.
        assert_eq!(
            keys.reseal(&old, &org, &self::customer("bob@acme.test"), &mut rng),
            Err(SealError::Forged(KeyId::new(1)))
        );
    }

    #[test]
    fn a_duplicate_key_id_is_refused_and_the_ring_is_unchanged() {
        let (org, customer) = acme();
        let mut keys = ring(1, 1);
        let sealed = keys.seal(&secret(20), &org, &customer, &mut rand::rng());
        assert_eq!(
            keys.add(SealingKey::new(KeyId::new(1), [9; KEY_LEN])),
            Err(SealError::DuplicateKeyId(KeyId::new(1)))
        );
        assert_eq!(
            keys.add(SealingKey::new(KeyId::new(1), [1; KEY_LEN])),
            Err(SealError::DuplicateKeyId(KeyId::new(1)))
        );
        assert!(keys.open(&sealed, &org, &customer).is_ok());
        assert_eq!(keys.key_ids().count(), 1);
        assert_eq!(
            format!("{}", SealError::DuplicateKeyId(KeyId::new(1))),
            "a sealing key with id 1 is already loaded"
        );
    }

    #[test]
    fn activating_an_unknown_key_is_refused() {
        let mut keys = ring(1, 1);
        assert_eq!(
            keys.set_active(KeyId::new(2)),
            Err(SealError::UnknownKey(KeyId::new(2)))
        );
        assert_eq!(keys.active_id(), KeyId::new(1));
    }

    #[test]
    fn keys_from_slices_and_from_the_rng() {
        let (org, customer) = acme();
        let mut rng = rand::rng();
        for len in [0, 16, 31, 33, 64] {
            assert_eq!(
                SealingKey::from_slice(KeyId::new(1), &vec![1; len]).unwrap_err(),
                SealError::InvalidKeyLength,
                "{len}"
            );
        }
        let from_slice =
            KeyRing::new(SealingKey::from_slice(KeyId::new(1), &[1; KEY_LEN]).unwrap());
        let sealed = ring(1, 1).seal(&secret(20), &org, &customer, &mut rng);
        assert!(from_slice.open(&sealed, &org, &customer).is_ok());

        let a = SealingKey::generate(KeyId::new(1), &mut rng);
        let b = SealingKey::generate(KeyId::new(1), &mut rng);
        assert_eq!(a.id(), KeyId::new(1));
        assert_ne!(a.key.as_slice(), b.key.as_slice());
        assert_ne!(a.key.as_slice(), &[0; KEY_LEN]);
        let sealed = KeyRing::new(a.clone()).seal(&secret(20), &org, &customer, &mut rng);
        assert!(KeyRing::new(a).open(&sealed, &org, &customer).is_ok());
        assert_eq!(
            KeyRing::new(b).open(&sealed, &org, &customer),
            Err(SealError::Forged(KeyId::new(1)))
        );
    }

    #[test]
    fn clones_open_what_the_original_sealed() {
        let (org, customer) = acme();
        let mut keys = ring(1, 1);
        keys.add(SealingKey::new(KeyId::new(2), [2; KEY_LEN]))
            .unwrap();
        let sealed = keys.seal(&secret(20), &org, &customer, &mut rand::rng());
        let clone = keys.clone();
        drop(keys);
        assert!(clone.open(&sealed, &org, &customer).is_ok());
        assert_eq!(clone.key_ids().count(), 2);
    }

    #[test]
    fn bytes_round_trip_with_the_documented_layout() {
        let keys = ring(0x0102_0304, 1);
        let (org, customer) = acme();
        let sealed = keys.seal(&secret(20), &org, &customer, &mut rand::rng());
        let bytes = sealed.to_bytes();
        assert_eq!(bytes.len(), 1 + 4 + 24 + 20 + 16);
        assert_eq!(bytes[0], 1);
        assert_eq!(bytes[1..5], [1, 2, 3, 4]);
        assert_eq!(bytes[5..29], sealed.nonce);
        assert_eq!(bytes[29..], sealed.ciphertext[..]);
        let back = SealedSecret::from_bytes(&bytes).unwrap();
        assert_eq!(back, sealed);
        assert_eq!(back.key_id(), KeyId::new(0x0102_0304));
        assert!(keys.open(&back, &org, &customer).is_ok());
    }

    #[test]
    fn postcard_round_trip_and_checked_deserialisation() {
        let keys = ring(300, 1);
        let (org, customer) = acme();
        let sealed = keys.seal(&secret(64), &org, &customer, &mut rand::rng());
        let bytes = postcard::to_allocvec(&sealed).unwrap();
        let back: SealedSecret = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, sealed);
        assert_eq!(keys.open(&back, &org, &customer).unwrap(), secret(64));

        // Deserialising checks the ciphertext length as `from_bytes` does.
        let short = SealedSecretFieldsOut {
            key_id: KeyId::new(1),
            nonce: [0; NONCE_LEN],
            ciphertext: vec![0; TAG_LEN],
        };
        let bytes = postcard::to_allocvec(&short).unwrap();
        assert!(postcard::from_bytes::<SealedSecret>(&bytes).is_err());
        let long_enough = SealedSecretFieldsOut {
            ciphertext: vec![0; MIN_CIPHERTEXT_LEN],
            ..short
        };
        let bytes = postcard::to_allocvec(&long_enough).unwrap();
        assert!(postcard::from_bytes::<SealedSecret>(&bytes).is_ok());

        let id = postcard::to_allocvec(&KeyId::new(300)).unwrap();
        assert_eq!(postcard::from_bytes::<KeyId>(&id).unwrap(), KeyId::new(300));
    }

    /// The serialised shape of `SealedSecret`, without its checks.
    #[derive(Serialize)]
    struct SealedSecretFieldsOut {
        key_id: KeyId,
        nonce: [u8; NONCE_LEN],
        ciphertext: Vec<u8>,
    }

    #[test]
    fn malformed_bytes_are_refused() {
        let mut valid = vec![1, 0, 0, 0, 1];
        valid.extend_from_slice(&[0; NONCE_LEN + MIN_CIPHERTEXT_LEN]);
        assert!(SealedSecret::from_bytes(&valid).is_ok());
        for version in [0, 2, 0x81, 0xff] {
            let mut other = valid.clone();
            other[0] = version;
            assert_eq!(
                SealedSecret::from_bytes(&other),
                Err(SealError::Malformed),
                "{version}"
            );
        }
        assert_eq!(SealedSecret::from_bytes(&[]), Err(SealError::Malformed));
        assert_eq!(SealedSecret::from_bytes(&[1]), Err(SealError::Malformed));
        assert_eq!(
            SealedSecret::from_bytes(&valid[..valid.len() - 1]),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn debug_shows_no_key_or_secret() {
        let key_bytes: [u8; KEY_LEN] = core::array::from_fn(|i| 0xa0 + i as u8);
        let key = SealingKey::new(KeyId::new(7), key_bytes);
        let shown = format!("{key:?}");
        assert_eq!(shown, "SealingKey { id: KeyId(7), .. }");
        assert_hides(&shown, &key_bytes);

        let mut keys = KeyRing::new(key);
        let other: [u8; KEY_LEN] = core::array::from_fn(|i| 0x60 + i as u8);
        keys.add(SealingKey::new(KeyId::new(9), other)).unwrap();
        let shown = format!("{keys:?} {keys:#?}");
        assert!(shown.starts_with("KeyRing { active: KeyId(7), keys: [KeyId(7), KeyId(9)] }"));
        assert_hides(&shown, &key_bytes);
        assert_hides(&shown, &other);

        let (org, customer) = acme();
        let secret = secret(20);
        let sealed = keys.seal(&secret, &org, &customer, &mut rand::rng());
        let shown = format!("{sealed:?}");
        assert_eq!(
            shown,
            "SealedSecret { key_id: KeyId(7), nonce_len: 24, ciphertext_len: 36 }"
        );
        assert_hides(&shown, secret.as_bytes());
        assert_hides(&shown, &key_bytes);
        assert_hides(&shown, &sealed.nonce);
        assert_hides(&shown, &sealed.ciphertext);

        // Errors carry ids at most.
        let error = keys
            .open(&sealed, &org, &self::customer("bob@acme.test"))
            .unwrap_err();
        assert_hides(&format!("{error} {error:?}"), secret.as_bytes());
    }

    #[test]
    fn key_ids() {
        let id = KeyId::new(20_260_401);
        assert_eq!(id.get(), 20_260_401);
        assert_eq!(format!("{id}"), "20260401");
        assert_eq!(format!("{id:?}"), "KeyId(20260401)");
        assert!(KeyId::new(1) < KeyId::new(2));
    }

    #[test]
    fn the_associated_data_layout_is_fixed() {
        let aad = associated_data(&org("ab"), &customer("c"), KeyId::new(0x0a0b_0c0d));
        let mut want = b"mfa-core sealed TOTP secret v1".to_vec();
        want.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        want.extend_from_slice(&[0, 0, 0, 1, b'c']);
        want.extend_from_slice(&[0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(aad, want);
        assert_ne!(
            aad,
            associated_data(&org("a"), &customer("bc"), KeyId::new(0x0a0b_0c0d))
        );
    }

    /// Pins the stored form: a change here means secrets already at rest stop opening. The expected
    /// bytes were computed independently of this crate: HChaCha20 written out in Python (checked
    /// against the vectors of draft-irtf-cfrg-xchacha-03, 2.2.1 and A.3.1), then ChaCha20-Poly1305
    /// from Python's `cryptography` with the associated data built by hand.
    #[test]
    fn known_answer() {
        let key: [u8; KEY_LEN] = core::array::from_fn(|i| 0x80 + i as u8);
        let keys = KeyRing::new(SealingKey::new(KeyId::new(1), key));
        let secret = Secret::from_bytes(b"12345678901234567890").unwrap();
        let sealed = keys.seal(
            &secret,
            &org("acme"),
            &customer("alice@acme.test"),
            &mut Counting(0x40),
        );
        assert_eq!(sealed.nonce, core::array::from_fn(|i| 0x40 + i as u8));
        assert_eq!(hex(&sealed.to_bytes()), KNOWN_SEALED);
        let stored = SealedSecret::from_bytes(&hex_decode(KNOWN_SEALED)).unwrap();
        assert_eq!(
            keys.open(&stored, &org("acme"), &customer("alice@acme.test")),
            Ok(secret)
        );
    }

    const KNOWN_SEALED: &str = "0100000001404142434445464748494a4b4c4d4e4f5051525354555657c03e40c06ec6c362c22246e1c59aa863057f4b5e72bd29e2b9fedd3b2042a93c9ce87dcf";

    fn hex_decode(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    proptest! {
        #[test]
        fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(sealed) = SealedSecret::from_bytes(&bytes) {
                // Canonical: what parses writes back the same bytes.
                prop_assert_eq!(sealed.to_bytes(), bytes);
            }
        }

        #[test]
        fn well_formed_but_unsealed_bytes_never_open(
            key_id in any::<u32>(),
            nonce in any::<[u8; NONCE_LEN]>(),
            ciphertext in proptest::collection::vec(any::<u8>(), MIN_CIPHERTEXT_LEN..96),
        ) {
            let mut bytes = vec![FORMAT_VERSION];
            bytes.extend_from_slice(&key_id.to_be_bytes());
            bytes.extend_from_slice(&nonce);
            bytes.extend_from_slice(&ciphertext);
            let sealed = SealedSecret::from_bytes(&bytes).unwrap();
            prop_assert_eq!(sealed.key_id(), KeyId::new(key_id));
            let keys = ring(key_id, 7);
            let (org, customer) = acme();
            prop_assert_eq!(keys.open(&sealed, &org, &customer), Err(SealError::Forged(KeyId::new(key_id))));
        }
    }
}
