//! Backup codes: the "look-up secrets" of NIST SP 800-63B section 5.1.2 (OWASP ASVS 5.0.0 6.5.1 to
//! 6.5.4), for a customer who has lost their authenticator.
//!
//! # The code format
//!
//! A code is 12 symbols from Crockford's base32 alphabet `0123456789ABCDEFGHJKMNPQRSTVWXYZ`, shown in
//! three groups of four: `7K2M-Q9XD-4TRW`. The alphabet has no `I`, `L`, `O` or `U`, so nothing on the
//! printed sheet can be misread. Input is read by Crockford's decoding rules, so the usual slips of
//! copying a code by hand do not matter:
//!
//! - upper or lower case;
//! - `-` and ` ` (ASCII space) anywhere, ignored;
//! - `O`/`o` read as `0`, and `I`/`i`/`L`/`l` as `1`.
//!
//! Anything else (`U`, other punctuation, tabs, non-ASCII), or a number of symbols other than 12 once
//! the above is applied, is [`BackupError::Malformed`].
//!
//! The first symbol is a public *tag*: it is stored in plaintext, and the tags of one set are distinct
//! (a set holds at most [`MAX_BACKUP_CODES`] = 16 codes and there are 32 tags). An attempt is
//! therefore hashed against exactly one stored code, the one with its tag, so checking costs at most
//! one KDF evaluation per attempt (REQUIREMENTS.md section 0) instead of one per stored code. When no
//! code has the tag, the attempt is hashed against a dummy salt anyway, so the time taken does not tell
//! an attacker which tags exist.
//!
//! The other 11 symbols are the secret: 55 bits from a CSPRNG (SP 800-63B 5.1.2.1; ASVS 6.5.3); the
//! project asks for at least 50 bits, SP 800-63B 5.1.2.1 and ASVS 6.5.4 for at least 20. Each symbol is 5 random bits (a byte masked with
//! `0x1f`): 32 symbols are exactly 5 bits, so there is no modulo bias.
//!
//! # Storage
//!
//! 55 bits is fewer than 112, so each code is stored "salted and hashed using a suitable one-way key
//! derivation function" (SP 800-63B 5.1.2.2; ASVS 6.5.2 asks for a password hash and a salt of at
//! least 32 bits): argon2id (RFC 9106, version 0x13) over the 12 normalised upper-case ASCII symbols,
//! tag included, with a 16-byte random salt per code and a 32-byte output. The argon2id cost is stored
//! with the set ([`BackupHashParams`]), so raising the defaults never breaks a stored set.
//!
//! # Used once
//!
//! A code "SHALL be used successfully only once" (SP 800-63B 5.1.2.2; ASVS 6.5.1).
//! [`BackupCodeSet::check`] does not change the set; the caller marks the matched slot with
//! [`BackupCodeSet::mark_used`] and stores the set (with the same concurrency control as any other
//! write), and a later attempt with that code is [`BackupError::AlreadyUsed`]. With fewer than 64 bits
//! the verifier must also rate-limit (SP 800-63B 5.1.2.2): backup attempts count against the same
//! lockout as one-time codes (REQUIREMENTS.md section 0).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use argon2::Argon2;
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use sha2::{Digest, Sha256};

use crate::{CustomerId, OrgId, UnixTime};

/// How many backup codes a set may hold at most.
pub const MAX_BACKUP_CODES: u8 = 16;

/// Crockford's base32 alphabet: the digits and the upper-case letters without I, L, O and U.
const ALPHABET: [u8; 32] = *b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Symbols in a code: the tag and the secret.
const CODE_LEN: usize = 12;

/// Secret symbols in a code (all but the tag): 11 x 5 = 55 bits.
const SECRET_LEN: usize = CODE_LEN - 1;

/// Salt bytes per code: 128 bits, well over the 32 bits SP 800-63B 5.1.2.2 and ASVS 6.5.2 ask for.
const SALT_LEN: usize = 16;

/// Bytes of argon2id output kept per code.
const HASH_LEN: usize = 32;

/// The salt an attempt is hashed with when no code of the set has its tag: the cost is what matters,
/// not the result, which is thrown away.
const DUMMY_SALT: [u8; SALT_LEN] = [0; SALT_LEN];

/// How often generation redraws a tag that is already taken before it takes the first free one. At
/// most 15 of the 32 tags are taken when one is drawn, so with a real CSPRNG all 64 draws collide with
/// probability below 2^-64; the bound only keeps a broken RNG (a constant one, say) from looping forever.
const TAG_DRAWS: usize = 64;

// Every code of a set gets its own tag, so a set can never hold more codes than there are tags.
const _: () = assert!(MAX_BACKUP_CODES as usize <= ALPHABET.len());

/// Argon2id cost parameters for backup-code hashes (stored with the set, so changing the defaults
/// never breaks stored sets).
///
/// A value always holds parameters that argon2 accepts: [`BackupHashParams::new`] checks them, and so
/// does deserialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawHashParams")]
pub struct BackupHashParams {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

impl BackupHashParams {
    /// The OWASP Password Storage Cheat Sheet's argon2id minimum: m = 19 MiB (19456 KiB), t = 2, p = 1.
    ///
    /// Our own copy rather than `argon2::Params::DEFAULT`, so that an argon2 upgrade cannot change the
    /// cost of new sets unnoticed.
    pub const DEFAULT: Self = Self {
        m_cost_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    /// The cheapest parameters argon2id allows (m = 8 KiB, t = 1, p = 1): for tests only, never in
    /// production, where they would make an offline guess almost free.
    #[must_use]
    pub const fn danger_insecure_fast() -> Self {
        Self {
            m_cost_kib: 8,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// The most memory a set may ask for, in KiB (256 MiB): every attempt pays it, on the service's
    /// own threads, so stored or configured parameters must not be able to stall the service.
    pub const MAX_M_COST_KIB: u32 = 262_144;
    /// The most passes a set may ask for.
    pub const MAX_T_COST: u32 = 16;
    /// The most lanes a set may ask for.
    pub const MAX_P_COST: u32 = 8;

    /// Parameters of your own: memory in KiB, passes, and lanes.
    ///
    /// # Errors
    /// [`BackupError::InvalidParams`] when argon2 refuses them (fewer than 1 pass, fewer than 1 lane,
    /// or less than 8 KiB of memory per lane) or they exceed [`Self::MAX_M_COST_KIB`],
    /// [`Self::MAX_T_COST`] or [`Self::MAX_P_COST`].
    pub const fn new(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<Self, BackupError> {
        if m_cost_kib > Self::MAX_M_COST_KIB
            || t_cost > Self::MAX_T_COST
            || p_cost > Self::MAX_P_COST
        {
            return Err(BackupError::InvalidParams);
        }
        match argon2::Params::new(m_cost_kib, t_cost, p_cost, Some(HASH_LEN)) {
            Ok(_) => Ok(Self {
                m_cost_kib,
                t_cost,
                p_cost,
            }),
            Err(_) => Err(BackupError::InvalidParams),
        }
    }

    /// Memory cost in KiB.
    #[must_use]
    pub const fn m_cost_kib(&self) -> u32 {
        self.m_cost_kib
    }

    /// Number of passes over the memory.
    #[must_use]
    pub const fn t_cost(&self) -> u32 {
        self.t_cost
    }

    /// Degree of parallelism (lanes).
    #[must_use]
    pub const fn p_cost(&self) -> u32 {
        self.p_cost
    }
}

// The two built-in parameter sets are accepted by argon2, checked at compile time.
const _: () = {
    let d = BackupHashParams::DEFAULT;
    assert!(BackupHashParams::new(d.m_cost_kib, d.t_cost, d.p_cost).is_ok());
    let f = BackupHashParams::danger_insecure_fast();
    assert!(BackupHashParams::new(f.m_cost_kib, f.t_cost, f.p_cost).is_ok());
};

impl Default for BackupHashParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The serialised form of [`BackupHashParams`], checked on the way in.
#[derive(serde::Deserialize)]
struct RawHashParams {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

impl TryFrom<RawHashParams> for BackupHashParams {
    type Error = BackupError;

    fn try_from(raw: RawHashParams) -> Result<Self, BackupError> {
        Self::new(raw.m_cost_kib, raw.t_cost, raw.p_cost)
    }
}

/// A backup code in plaintext, returned once at generation to show the customer; never stored.
///
/// `Display` and [`BackupCode::as_str`] give the grouped form `XXXX-XXXX-XXXX`. `Debug` is redacted,
/// and the text is zeroized when the code is dropped.
pub struct BackupCode {
    text: Zeroizing<String>,
}

impl BackupCode {
    /// The code as `XXXX-XXXX-XXXX`, to show the customer.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn from_symbols(symbols: &[u8; CODE_LEN]) -> Self {
        // Two dashes; the capacity is exact, so pushing never reallocates and leaves no copy behind.
        let mut text = Zeroizing::new(String::with_capacity(CODE_LEN + 2));
        for (i, &symbol) in symbols.iter().enumerate() {
            if i == 4 || i == 8 {
                text.push('-');
            }
            text.push(char::from(symbol));
        }
        Self { text }
    }
}

impl fmt::Display for BackupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for BackupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupCode(redacted)")
    }
}

impl ZeroizeOnDrop for BackupCode {}

/// Which code of a set an attempt matched; only [`BackupCodeSet::check`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupSlot(usize);

/// A set of hashed backup codes, each with its own salt and a used flag (when it was used).
///
/// Codes are 12 symbols of Crockford's base32 (`7K2M-Q9XD-4TRW`): a public first symbol, the tag,
/// distinct within a set so that an attempt is hashed against one stored code only, then 55 secret
/// bits from a CSPRNG. Each is stored as an argon2id hash with its own 16-byte salt (NIST SP 800-63B
/// 5.1.2.2), and succeeds once.
///
/// It holds no plaintext: only each code's public tag, salt and argon2id hash, and the cost parameters
/// they were hashed with. `Debug` shows the counts and the parameters, never salts or hashes. A
/// deserialised set is checked as generation makes them: 1 to [`MAX_BACKUP_CODES`] codes with distinct
/// tags, and parameters argon2 accepts.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawBackupCodeSet")]
pub struct BackupCodeSet {
    params: BackupHashParams,
    codes: Vec<StoredBackupCode>,
    /// Hashed for their owner (the organisation and customer are argon2id's associated data), as
    /// every set this version makes is; sets from format-1 records are not.
    bound: bool,
}

/// Whose backup codes these are: their hashes bind the organisation and the customer, so a set
/// copied onto another customer's record (by whoever can write the database) verifies nothing
/// there.
#[derive(Clone, Copy, Debug)]
pub struct BackupOwner<'a> {
    org: &'a OrgId,
    customer: &'a CustomerId,
}

impl<'a> BackupOwner<'a> {
    /// The codes of `customer` of `org`.
    #[must_use]
    pub const fn new(org: &'a OrgId, customer: &'a CustomerId) -> Self {
        Self { org, customer }
    }

    /// argon2id's associated data: SHA-256 of a label and the length-prefixed ids (associated data
    /// is at most 32 bytes; the ids are up to 255 each).
    fn binding(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(b"mfa-core backup-code owner v1\0");
        for part in [self.org.as_str(), self.customer.as_str()] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hash.finalize().into()
    }
}

/// One hashed code. Equality here is not constant-time, and need not be: it compares stored sets,
/// never an attempt with a stored hash (that is [`BackupCodeSet::check`], which uses `subtle`).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StoredBackupCode {
    /// The first symbol's value (0 to 31), public.
    tag: u8,
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
    /// When the code was used, in seconds since the Unix epoch.
    used_at: Option<u64>,
}

impl BackupCodeSet {
    /// `count` fresh codes (1 to [`MAX_BACKUP_CODES`]) from a CSPRNG, hashed with argon2id under
    /// `params`, one 16-byte random salt per code. Returns the set to store and the plaintext codes to
    /// show the customer once, in slot order. This costs `count` argon2id evaluations.
    ///
    /// # Errors
    /// [`BackupError::InvalidCount`] when `count` is 0 or more than [`MAX_BACKUP_CODES`];
    /// [`BackupError::Kdf`] when argon2 fails (it cannot allocate its memory).
    pub fn generate<R: CryptoRng + ?Sized>(
        owner: &BackupOwner<'_>,
        count: u8,
        params: BackupHashParams,
        rng: &mut R,
    ) -> Result<(Self, Vec<BackupCode>), BackupError> {
        if count == 0 || count > MAX_BACKUP_CODES {
            return Err(BackupError::InvalidCount);
        }
        let binding = owner.binding();
        let mut taken = [false; ALPHABET.len()];
        let mut codes = Vec::with_capacity(usize::from(count));
        let mut shown = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let tag = draw_tag(&mut taken, rng);
            let mut random = Zeroizing::new([0u8; SECRET_LEN]);
            rng.fill_bytes(random.as_mut_slice());
            let mut symbols = Zeroizing::new([0u8; CODE_LEN]);
            if let Some(first) = symbols.first_mut() {
                *first = symbol_for(tag);
            }
            for (symbol, &byte) in symbols.iter_mut().skip(1).zip(random.iter()) {
                *symbol = symbol_for(byte);
            }
            let mut salt = [0u8; SALT_LEN];
            rng.fill_bytes(&mut salt);
            let hash = kdf(params, &symbols, &salt, Some(&binding))?;
            codes.push(StoredBackupCode {
                tag,
                salt,
                hash,
                used_at: None,
            });
            shown.push(BackupCode::from_symbols(&symbols));
        }
        Ok((
            Self {
                params,
                codes,
                bound: true,
            },
            shown,
        ))
    }

    /// Checks a code as a customer typed it, without changing the set: on success, pass the slot to
    /// [`BackupCodeSet::mark_used`].
    ///
    /// The input is read by Crockford's base32 decoding rules: case-insensitive, `-` and ASCII spaces
    /// ignored anywhere, `O` read as `0` and `I` and `L` as `1`; what remains must be exactly 12 symbols
    /// of `0123456789ABCDEFGHJKMNPQRSTVWXYZ`.
    ///
    /// Any well-formed input costs exactly one argon2id evaluation, whether or not a code with its tag
    /// exists, so the time taken does not tell which tags do; malformed input costs none.
    ///
    /// # Errors
    /// [`BackupError::Malformed`] when the input is not 12 symbols of the alphabet after normalising;
    /// [`BackupError::NoMatch`] when it matches no code; [`BackupError::AlreadyUsed`] when it matches a
    /// code that was already used; [`BackupError::Kdf`] when argon2 fails.
    pub fn check(&self, typed: &str, owner: &BackupOwner<'_>) -> Result<BackupSlot, BackupError> {
        self.check_attempt(&mut BackupAttempt::new(typed), owner)
    }

    /// [`BackupCodeSet::check`] for an attempt that may be checked more than once: against a set
    /// read again after a lost compare-and-swap, it reuses the hash it computed while the stored
    /// code with its tag (its salt) and the cost are unchanged, so a request costs one argon2id
    /// evaluation however often it is retried.
    ///
    /// # Errors
    /// As [`BackupCodeSet::check`].
    pub fn check_attempt(
        &self,
        attempt: &mut BackupAttempt<'_>,
        owner: &BackupOwner<'_>,
    ) -> Result<BackupSlot, BackupError> {
        // The buffer stays here and is lent out, so the normalised code is never moved (a move would
        // leave a copy behind that `Zeroizing` cannot reach).
        let mut symbols = Zeroizing::new([0u8; CODE_LEN]);
        let tag = normalise(attempt.typed, &mut symbols)?;
        let slot = self.codes.iter().position(|code| code.tag == tag);
        let stored = slot.and_then(|index| self.codes.get(index));
        // One evaluation on every path, against the dummy salt when no code has the tag; its result is
        // thrown away, but an error is still returned, as it would be for a real code.
        let salt = stored.map_or(&DUMMY_SALT, |code| &code.salt);
        let binding = self.bound.then(|| owner.binding());
        let hash = attempt.hash(self.params, &symbols, salt, binding.as_ref())?;
        let (Some(index), Some(stored)) = (slot, stored) else {
            return Err(BackupError::NoMatch);
        };
        if !bool::from(hash.as_slice().ct_eq(stored.hash.as_slice())) {
            return Err(BackupError::NoMatch);
        }
        // Only a matching attempt learns that the code was used: a guess learns nothing more than
        // `NoMatch`, and the owner gets the reason the requirements ask the audit event to carry.
        if stored.used_at.is_some() {
            return Err(BackupError::AlreadyUsed);
        }
        Ok(BackupSlot(index))
    }

    /// What [`BackupCodeSet::check`] would answer for a customer who has no set: the same
    /// [`BackupError::Malformed`] for malformed input and, for well-formed input, one argon2id
    /// evaluation under `params` before [`BackupError::NoMatch`], so neither the answer nor the time
    /// taken tells whether the customer has backup codes.
    ///
    /// # Errors
    /// Always: [`BackupError::Malformed`], [`BackupError::NoMatch`] or [`BackupError::Kdf`].
    pub fn check_without_set(typed: &str, params: BackupHashParams) -> BackupError {
        Self::check_attempt_without_set(&mut BackupAttempt::new(typed), params)
    }

    /// [`BackupCodeSet::check_without_set`] for an attempt that may be checked more than once, as
    /// [`BackupCodeSet::check_attempt`].
    ///
    /// # Errors
    /// As [`BackupCodeSet::check_without_set`].
    pub fn check_attempt_without_set(
        attempt: &mut BackupAttempt<'_>,
        params: BackupHashParams,
    ) -> BackupError {
        let mut symbols = Zeroizing::new([0u8; CODE_LEN]);
        if let Err(error) = normalise(attempt.typed, &mut symbols) {
            return error;
        }
        match attempt.hash(params, &symbols, &DUMMY_SALT, None) {
            Ok(_) => BackupError::NoMatch,
            Err(error) => error,
        }
    }

    /// Marks the code at `slot` used at `now` (a slot from [`BackupCodeSet::check`] on this same set).
    ///
    /// A code already marked keeps the time of its first use; a slot the set does not have (from
    /// another, larger set) changes nothing.
    pub fn mark_used(&mut self, slot: BackupSlot, now: UnixTime) {
        if let Some(code) = self.codes.get_mut(slot.0)
            && code.used_at.is_none()
        {
            code.used_at = Some(now.as_secs());
        }
    }

    /// How many codes the set holds, used or not.
    #[must_use]
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether the set holds no codes (generation never makes such a set).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// How many codes are still unused.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.codes
            .iter()
            .filter(|code| code.used_at.is_none())
            .count()
    }

    /// The argon2id cost the codes were hashed with.
    #[must_use]
    pub fn params(&self) -> BackupHashParams {
        self.params
    }
}

impl fmt::Debug for BackupCodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupCodeSet")
            .field("codes", &self.len())
            .field("remaining", &self.remaining())
            .field("params", &self.params)
            .field("bound", &self.bound)
            .finish()
    }
}

/// The serialised form of [`BackupCodeSet`], checked on the way in.
#[derive(serde::Deserialize)]
struct RawBackupCodeSet {
    params: BackupHashParams,
    codes: Vec<StoredBackupCode>,
    bound: bool,
}

/// A set as format-1 records hold it: hashed without its owner.
#[derive(serde::Deserialize)]
pub(crate) struct LegacyBackupCodeSet {
    params: BackupHashParams,
    codes: Vec<StoredBackupCode>,
}

impl TryFrom<LegacyBackupCodeSet> for BackupCodeSet {
    type Error = &'static str;

    fn try_from(legacy: LegacyBackupCodeSet) -> Result<Self, &'static str> {
        Self::try_from(RawBackupCodeSet {
            params: legacy.params,
            codes: legacy.codes,
            bound: false,
        })
    }
}

impl TryFrom<RawBackupCodeSet> for BackupCodeSet {
    type Error = &'static str;

    fn try_from(raw: RawBackupCodeSet) -> Result<Self, &'static str> {
        if raw.codes.is_empty() || raw.codes.len() > usize::from(MAX_BACKUP_CODES) {
            return Err("a backup code set must hold 1 to 16 codes");
        }
        // Distinct tags are what keep `check` to one evaluation that can find the right code.
        let mut taken = [false; ALPHABET.len()];
        for code in &raw.codes {
            match taken.get_mut(usize::from(code.tag)) {
                Some(seen @ false) => *seen = true,
                Some(true) => return Err("the tags of a backup code set must be distinct"),
                None => return Err("a backup code tag must be below 32"),
            }
        }
        Ok(Self {
            params: raw.params,
            codes: raw.codes,
            bound: raw.bound,
        })
    }
}

/// Normalises a typed code by the input rules of the module docs into `symbols` (the 12 canonical
/// upper-case symbols) and returns the tag's value. Never evaluates the KDF and never allocates.
fn normalise(typed: &str, symbols: &mut [u8; CODE_LEN]) -> Result<u8, BackupError> {
    let mut slots = symbols.iter_mut();
    for byte in typed.bytes() {
        if byte == b'-' || byte == b' ' {
            continue;
        }
        let value = decode(byte).ok_or(BackupError::Malformed)?;
        // A 13th symbol finds no slot.
        let slot = slots.next().ok_or(BackupError::Malformed)?;
        *slot = symbol_for(value);
    }
    if slots.next().is_some() {
        return Err(BackupError::Malformed);
    }
    symbols
        .first()
        .and_then(|&symbol| decode(symbol))
        .ok_or(BackupError::Malformed)
}

/// The value (0 to 31) of a typed byte under Crockford's decoding rules: case-insensitive, `O` is 0,
/// `I` and `L` are 1; `None` for `U` and anything outside the alphabet.
fn decode(byte: u8) -> Option<u8> {
    let canonical = match byte.to_ascii_uppercase() {
        b'O' => b'0',
        b'I' | b'L' => b'1',
        other => other,
    };
    let index = ALPHABET.iter().position(|&symbol| symbol == canonical)?;
    u8::try_from(index).ok()
}

/// The symbol for the low 5 bits of `bits`: uniform over the alphabet when `bits` is a uniform byte.
fn symbol_for(bits: u8) -> u8 {
    #[allow(
        clippy::indexing_slicing,
        reason = "masked to 5 bits, below the alphabet's 32 symbols"
    )]
    ALPHABET[usize::from(bits & 0x1f)]
}

/// A tag not yet `taken` in this set, drawn uniformly (redrawn while taken), and marked taken.
fn draw_tag<R: CryptoRng + ?Sized>(taken: &mut [bool; ALPHABET.len()], rng: &mut R) -> u8 {
    for _ in 0..TAG_DRAWS {
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        let [tag] = byte;
        let tag = tag & 0x1f;
        if let Some(seen @ false) = taken.get_mut(usize::from(tag)) {
            *seen = true;
            return tag;
        }
    }
    // Only a broken RNG gets here (see `TAG_DRAWS`). Tags are public, so taking the first free one
    // costs no secrecy.
    #[allow(
        clippy::expect_used,
        reason = "at most MAX_BACKUP_CODES - 1 < 32 tags are taken (asserted at compile time)"
    )]
    let free = taken
        .iter()
        .position(|&seen| !seen)
        .expect("a set has fewer codes than tags");
    if let Some(seen) = taken.get_mut(free) {
        *seen = true;
    }
    #[allow(
        clippy::expect_used,
        reason = "a position in a 32-element array fits in a u8"
    )]
    u8::try_from(free).expect("below 32")
}

/// A backup code as the customer typed it, with the argon2id hash it was given once computed.
///
/// The [`Service`](crate::Service) checks one attempt against the record as often as it has to
/// re-read it after losing a race; this keeps that to one KDF evaluation per request (and so a
/// flood of concurrent attempts costs one evaluation each, not one per retry). The hash is wiped
/// when the attempt is dropped, and `Debug` shows only how many evaluations it made.
pub struct BackupAttempt<'a> {
    typed: &'a str,
    /// The cost, salt and owner binding of the last evaluation, and its output.
    memo: Option<Memo>,
    evaluations: u32,
}

/// One evaluation's inputs (but the code) and output.
struct Memo {
    params: BackupHashParams,
    salt: [u8; SALT_LEN],
    binding: Option<[u8; 32]>,
    hash: Zeroizing<[u8; HASH_LEN]>,
}

impl<'a> BackupAttempt<'a> {
    /// An attempt with the code as typed (normalised when checked).
    #[must_use]
    pub const fn new(typed: &'a str) -> Self {
        Self {
            typed,
            memo: None,
            evaluations: 0,
        }
    }

    /// How many argon2id evaluations checking it has cost so far.
    #[must_use]
    pub const fn kdf_evaluations(&self) -> u32 {
        self.evaluations
    }

    fn hash(
        &mut self,
        params: BackupHashParams,
        symbols: &[u8; CODE_LEN],
        salt: &[u8; SALT_LEN],
        binding: Option<&[u8; 32]>,
    ) -> Result<[u8; HASH_LEN], BackupError> {
        if let Some(memo) = &self.memo
            && memo.params == params
            && &memo.salt == salt
            && memo.binding.as_ref() == binding
        {
            return Ok(*memo.hash);
        }
        self.evaluations = self.evaluations.saturating_add(1);
        let hash = kdf(params, symbols, salt, binding)?;
        self.memo = Some(Memo {
            params,
            salt: *salt,
            binding: binding.copied(),
            hash: Zeroizing::new(hash),
        });
        Ok(hash)
    }
}

impl fmt::Debug for BackupAttempt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupAttempt")
            .field("kdf_evaluations", &self.evaluations)
            .finish_non_exhaustive()
    }
}

/// The one place the KDF is evaluated (the tests count the calls): argon2id, version 0x13, over the 12
/// normalised symbols, with `salt` and, for a bound set, the owner binding as associated data, into
/// 32 bytes.
fn kdf(
    params: BackupHashParams,
    code: &[u8; CODE_LEN],
    salt: &[u8; SALT_LEN],
    binding: Option<&[u8; 32]>,
) -> Result<[u8; HASH_LEN], BackupError> {
    #[cfg(test)]
    tests::KDF_CALLS.with(|calls| calls.set(calls.get() + 1));
    let mut builder = argon2::ParamsBuilder::new();
    builder
        .m_cost(params.m_cost_kib)
        .t_cost(params.t_cost)
        .p_cost(params.p_cost)
        .output_len(HASH_LEN);
    if let Some(binding) = binding {
        builder.data(argon2::AssociatedData::new(binding).map_err(|_| BackupError::Kdf)?);
    }
    let argon2_params = builder.build().map_err(|_| BackupError::Kdf)?;
    let argon2 = Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2_params,
    );
    let mut hash = [0u8; HASH_LEN];
    argon2
        .hash_password_into(code, salt, &mut hash)
        .map_err(|_| BackupError::Kdf)?;
    Ok(hash)
}

/// Why backup codes could not be generated, or why an attempt was refused. Never contains any part of
/// a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Not 12 symbols of the backup-code alphabet, once case, dashes and spaces are set aside.
    #[error("a backup code is 12 letters and digits, grouped as XXXX-XXXX-XXXX")]
    Malformed,
    /// Well-formed, but no code of the set.
    #[error("the backup code does not match")]
    NoMatch,
    /// A code of the set, but one already used.
    #[error("the backup code has already been used")]
    AlreadyUsed,
    /// A set must hold 1 to [`MAX_BACKUP_CODES`] codes.
    #[error("a backup code set holds 1 to {MAX_BACKUP_CODES} codes")]
    InvalidCount,
    /// Cost parameters argon2 refuses.
    #[error("argon2 refuses these cost parameters")]
    InvalidParams,
    /// Argon2 failed (it could not allocate its memory).
    #[error("the backup code hash could not be computed")]
    Kdf,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The owner of the test sets.
    fn alice() -> (OrgId, CustomerId) {
        (
            OrgId::new("acme").unwrap(),
            CustomerId::new("alice@acme.test").unwrap(),
        )
    }

    fn generate_alice<R: CryptoRng + ?Sized>(
        count: u8,
        params: BackupHashParams,
        rng: &mut R,
    ) -> Result<(BackupCodeSet, Vec<BackupCode>), BackupError> {
        let (org, customer) = alice();
        BackupCodeSet::generate(&BackupOwner::new(&org, &customer), count, params, rng)
    }

    impl BackupCodeSet {
        fn check_alice(&self, typed: &str) -> Result<BackupSlot, BackupError> {
            let (org, customer) = alice();
            self.check(typed, &BackupOwner::new(&org, &customer))
        }
    }
    use alloc::format;
    use alloc::string::ToString;
    use core::cell::Cell;
    use core::convert::Infallible;
    use proptest::prelude::*;

    std::thread_local! {
        /// Argon2 evaluations on this thread (each test runs on its own thread).
        pub(super) static KDF_CALLS: Cell<usize> = const { Cell::new(0) };
    }

    fn kdf_calls() -> usize {
        KDF_CALLS.with(Cell::get)
    }

    /// How many argon2 evaluations `f` makes, and its result.
    fn counting<T>(f: impl FnOnce() -> T) -> (usize, T) {
        let before = kdf_calls();
        let result = f();
        (kdf_calls() - before, result)
    }

    const FAST: BackupHashParams = BackupHashParams::danger_insecure_fast();

    fn fresh(count: u8) -> (BackupCodeSet, Vec<BackupCode>) {
        generate_alice(count, FAST, &mut rand::rng()).unwrap()
    }

    /// A predictable "RNG" for known answers: bytes 0, 1, 2, ... (or one byte forever). Marked as a
    /// CSPRNG only so `generate` accepts it.
    struct TestRng {
        next: u8,
        step: u8,
    }

    impl TestRng {
        fn counting() -> Self {
            Self { next: 0, step: 1 }
        }
        fn stuck(byte: u8) -> Self {
            Self {
                next: byte,
                step: 0,
            }
        }
    }

    impl rand_core::TryRng for TestRng {
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
                *byte = self.next;
                self.next = self.next.wrapping_add(self.step);
            }
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for TestRng {}

    /// The code with the symbol at `position` (0 to 11, dashes not counted) replaced by the next one
    /// in the alphabet.
    fn with_symbol_changed(code: &str, position: usize) -> String {
        let mut symbols: Vec<u8> = code.bytes().filter(|&b| b != b'-').collect();
        let value = decode(symbols[position]).unwrap();
        symbols[position] = symbol_for(value + 1);
        String::from_utf8(symbols).unwrap()
    }

    fn tag_of(code: &str) -> u8 {
        decode(code.as_bytes()[0]).unwrap()
    }

    #[test]
    fn generated_codes_have_the_format_distinct_tags_and_are_distinct() {
        for count in [1, 5, MAX_BACKUP_CODES] {
            let (set, codes) = fresh(count);
            assert_eq!(codes.len(), usize::from(count));
            assert_eq!(set.len(), usize::from(count));
            assert_eq!(set.remaining(), usize::from(count));
            assert!(!set.is_empty());
            assert_eq!(set.params(), FAST);
            let mut tags = Vec::new();
            let mut texts = Vec::new();
            for (code, stored) in codes.iter().zip(&set.codes) {
                let text = code.as_str();
                assert_eq!(text.len(), 14, "{text}");
                for (i, byte) in text.bytes().enumerate() {
                    if i == 4 || i == 9 {
                        assert_eq!(byte, b'-', "{text}");
                    } else {
                        assert!(ALPHABET.contains(&byte), "{text}");
                    }
                }
                assert_eq!(code.to_string(), text);
                assert_eq!(stored.tag, tag_of(text));
                assert!(stored.used_at.is_none());
                tags.push(stored.tag);
                texts.push(text.to_string());
            }
            tags.sort_unstable();
            tags.dedup();
            assert_eq!(tags.len(), usize::from(count), "tags must be distinct");
            texts.sort_unstable();
            texts.dedup();
            assert_eq!(texts.len(), usize::from(count), "codes must be distinct");
            // A salt per code.
            let mut salts: Vec<_> = set.codes.iter().map(|code| code.salt).collect();
            salts.sort_unstable();
            salts.dedup();
            assert_eq!(salts.len(), usize::from(count));
        }
    }

    #[test]
    fn each_code_checks_at_its_own_slot() {
        let (set, codes) = fresh(MAX_BACKUP_CODES);
        for (i, code) in codes.iter().enumerate() {
            assert_eq!(set.check_alice(code.as_str()), Ok(BackupSlot(i)), "{i}");
        }
    }

    #[test]
    fn known_answer_from_a_counting_rng() {
        // Bytes 0 to 11 make the code, 12 to 27 the salt.
        let (set, codes) = generate_alice(1, FAST, &mut TestRng::counting()).unwrap();
        assert_eq!(codes[0].as_str(), "0123-4567-89AB");
        let stored = &set.codes[0];
        assert_eq!(stored.tag, 0);
        assert_eq!(stored.salt, core::array::from_fn(|i| 12 + i as u8));
        // Computed independently with the reference implementation (the C libargon2 20171227 from
        // Debian, through argon2-cffi's argon2_ctx: t=1, m=8, p=1, "0123456789AB", salt 0x0c..0x1b,
        // associated data SHA-256("mfa-core backup-code owner v1\0" || be64(4) || "acme" ||
        // be64(15) || "alice@acme.test"), 32 bytes). A change here would make every stored set
        // unverifiable.
        assert_eq!(stored.hash, KNOWN_BOUND_HASH);
        // Sets from format-1 records were hashed without associated data (argon2id_hash_raw with
        // the same inputs), and still verify as such.
        let binding = None;
        let code = core::array::from_fn(|i| b"0123456789AB"[i]);
        assert_eq!(kdf(FAST, &code, &stored.salt, binding).unwrap(), KNOWN_HASH);
    }

    const KNOWN_BOUND_HASH: [u8; 32] = [
        0xd0, 0x70, 0xcd, 0x7b, 0xdd, 0x80, 0x83, 0x78, 0x3d, 0x2b, 0x7c, 0x68, 0x2f, 0x63, 0x6e,
        0xbe, 0x31, 0xb6, 0x45, 0xe8, 0x84, 0xc5, 0xf6, 0x3c, 0xe1, 0xe8, 0x1a, 0xae, 0x1a, 0x04,
        0x3e, 0x02,
    ];

    /// A set belongs to its owner: copied onto another customer's (or organisation's) record it
    /// verifies nothing, while a set from a format-1 record (hashed before sets were bound) still
    /// verifies for whoever holds it.
    #[test]
    fn a_set_verifies_only_for_its_owner() {
        let (set, codes) = fresh(3);
        let acme = OrgId::new("acme").unwrap();
        let other_org = OrgId::new("globex").unwrap();
        let bob = CustomerId::new("bob@acme.test").unwrap();
        let alice = CustomerId::new("alice@acme.test").unwrap();
        for owner in [
            BackupOwner::new(&acme, &bob),
            BackupOwner::new(&other_org, &alice),
        ] {
            for code in &codes {
                assert_eq!(set.check(code.as_str(), &owner), Err(BackupError::NoMatch));
            }
        }
        assert_eq!(set.check_alice(codes[1].as_str()), Ok(BackupSlot(1)));
        // A legacy set: the same codes hashed without an owner.
        let legacy = BackupCodeSet::try_from(LegacyBackupCodeSet {
            params: FAST,
            codes: alloc::vec![StoredBackupCode {
                tag: 0,
                salt: [7; SALT_LEN],
                hash: kdf(FAST, b"0123456789AB", &[7; SALT_LEN], None).unwrap(),
                used_at: None,
            }],
        })
        .unwrap();
        assert_eq!(
            legacy.check("0123-4567-89AB", &BackupOwner::new(&acme, &bob)),
            Ok(BackupSlot(0))
        );
        assert!(format!("{legacy:?}").contains("bound: false"));
    }

    const KNOWN_HASH: [u8; 32] = [
        0x51, 0x7e, 0xe8, 0xfe, 0x81, 0x30, 0x49, 0xe4, 0x35, 0xb2, 0x59, 0xa0, 0x9b, 0x72, 0x8b,
        0xc5, 0xd5, 0x61, 0x6e, 0x26, 0xa8, 0x3d, 0xb3, 0x0f, 0x4d, 0x10, 0x86, 0xc3, 0x27, 0x6f,
        0x61, 0x7a,
    ];

    #[test]
    fn typed_input_is_normalised_as_crockford_says() {
        let (set, codes) = generate_alice(1, FAST, &mut TestRng::counting()).unwrap();
        assert_eq!(codes[0].as_str(), "0123-4567-89AB");
        for typed in [
            "0123-4567-89AB",
            "0123-4567-89ab",
            "012345678 9AB",
            "0123456789AB",
            "  0 1 2 3 - 4 5 6 7 - 8 9 A B  ",
            "--0123--4567--89AB--",
            "O123-4567-89AB",
            "o123-4567-89ab",
            "0I23-4567-89AB",
            "0i23-4567-89AB",
            "0L23-4567-89AB",
            "0l23 4567 89ab",
            "oL23-4567-89Ab",
        ] {
            assert_eq!(set.check_alice(typed), Ok(BackupSlot(0)), "{typed:?}");
        }
        // And for random codes: lower case, no dashes, spaces instead of dashes.
        let (set, codes) = fresh(5);
        for (i, code) in codes.iter().enumerate() {
            let text = code.as_str();
            for typed in [
                text.to_ascii_lowercase(),
                text.replace('-', ""),
                text.replace('-', " "),
                format!(" {} ", text.to_ascii_lowercase().replace('-', "")),
            ] {
                assert_eq!(set.check_alice(&typed), Ok(BackupSlot(i)), "{typed:?}");
            }
        }
    }

    #[test]
    fn a_used_code_is_refused_and_remaining_goes_down() {
        let (mut set, codes) = fresh(5);
        let slot = set.check_alice(codes[2].as_str()).unwrap();
        assert_eq!(set.remaining(), 5, "check alone changes nothing");
        set.mark_used(slot, UnixTime::from_secs(1_700_000_000));
        assert_eq!(set.remaining(), 4);
        assert_eq!(set.len(), 5);
        assert_eq!(set.codes[2].used_at, Some(1_700_000_000));
        assert_eq!(
            set.check_alice(codes[2].as_str()),
            Err(BackupError::AlreadyUsed)
        );
        let lower = codes[2].as_str().to_ascii_lowercase();
        assert_eq!(set.check_alice(&lower), Err(BackupError::AlreadyUsed));
        // Marking again keeps the time of first use.
        set.mark_used(slot, UnixTime::from_secs(1_800_000_000));
        assert_eq!(set.codes[2].used_at, Some(1_700_000_000));
        assert_eq!(set.remaining(), 4);
        // The others still work.
        for i in [0, 1, 3, 4] {
            assert_eq!(set.check_alice(codes[i].as_str()), Ok(BackupSlot(i)));
        }
        for (i, code) in codes.iter().enumerate() {
            let slot = set.check_alice(code.as_str()).unwrap_or(BackupSlot(i));
            set.mark_used(slot, UnixTime::from_secs(1_900_000_000));
        }
        assert_eq!(set.remaining(), 0);
        for code in &codes {
            assert_eq!(
                set.check_alice(code.as_str()),
                Err(BackupError::AlreadyUsed)
            );
        }
    }

    #[test]
    fn a_slot_the_set_does_not_have_changes_nothing() {
        let (big, big_codes) = fresh(MAX_BACKUP_CODES);
        let (mut small, _) = fresh(2);
        let slot = big.check_alice(big_codes[15].as_str()).unwrap();
        let before = small.clone();
        small.mark_used(slot, UnixTime::from_secs(1));
        assert_eq!(small, before);
        assert_eq!(small.remaining(), 2);
    }

    #[test]
    fn a_wrong_code_with_an_existing_tag_does_not_match() {
        let (set, codes) = fresh(5);
        for code in &codes {
            for position in [1, 6, 11] {
                let typed = with_symbol_changed(code.as_str(), position);
                assert_eq!(
                    set.check_alice(&typed),
                    Err(BackupError::NoMatch),
                    "{typed}"
                );
            }
        }
    }

    #[test]
    fn a_code_whose_tag_no_slot_has_does_not_match() {
        let (set, codes) = fresh(5);
        let text = codes[0].as_str();
        let mut misses = 0;
        for tag in 0..32u8 {
            if set.codes.iter().any(|code| code.tag == tag) {
                continue;
            }
            // The right secret under a tag the set does not have.
            let typed = format!("{}{}", char::from(symbol_for(tag)), &text[1..]);
            assert_eq!(
                set.check_alice(&typed),
                Err(BackupError::NoMatch),
                "{typed}"
            );
            misses += 1;
        }
        assert_eq!(misses, 27);
    }

    #[test]
    fn malformed_input_is_refused() {
        let (set, codes) = fresh(3);
        let good = codes[0].as_str().replace('-', "");
        let too_long = format!("{good}0");
        let with_u = format!("U{}", &good[1..]);
        let with_tab = format!("{}\t{}", &good[..4], &good[4..]);
        for typed in [
            "",
            " ",
            "----",
            &good[..11],
            &too_long,
            "0123456789ABC",
            &with_u,
            "0123-4567-89AU",
            "0123-4567-89Au",
            "0123_4567_89AB",
            "0123.4567.89AB",
            "0123+4567+89AB",
            &with_tab,
            "0123-4567-89A\u{c9}",
            "０１２３４５６７８９ＡＢ",
            "0123-4567-89A\u{2014}B",
            "0123\u{a0}4567\u{a0}89AB",
            "\u{1F600}\u{1F600}\u{1F600}",
        ] {
            assert_eq!(
                set.check_alice(typed),
                Err(BackupError::Malformed),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn a_code_from_another_set_does_not_match() {
        let (set, _) = fresh(MAX_BACKUP_CODES);
        let (_, others) = fresh(MAX_BACKUP_CODES);
        for other in &others {
            assert_eq!(set.check_alice(other.as_str()), Err(BackupError::NoMatch));
        }
    }

    #[test]
    fn one_kdf_evaluation_per_well_formed_attempt_and_none_for_malformed() {
        let (n, generated) = counting(|| fresh(5));
        assert_eq!(n, 5, "one per generated code");
        let (mut set, codes) = generated;
        let good = codes[1].as_str();
        let wrong_secret = with_symbol_changed(good, 5);
        let absent_tag = (0..32u8)
            .find(|tag| set.codes.iter().all(|code| code.tag != *tag))
            .unwrap();
        let tag_absent = format!("{}{}", char::from(symbol_for(absent_tag)), &good[1..]);

        assert_eq!(counting(|| set.check_alice(good)), (1, Ok(BackupSlot(1))));
        assert_eq!(
            counting(|| set.check_alice(&wrong_secret)),
            (1, Err(BackupError::NoMatch))
        );
        assert_eq!(
            counting(|| set.check_alice(&tag_absent)),
            (1, Err(BackupError::NoMatch))
        );
        set.mark_used(BackupSlot(1), UnixTime::from_secs(5));
        assert_eq!(
            counting(|| set.check_alice(good)),
            (1, Err(BackupError::AlreadyUsed))
        );
        for malformed in ["", "0123", "0123-4567-89AB-C", "U123-4567-89AB", "é"] {
            assert_eq!(
                counting(|| set.check_alice(malformed)),
                (0, Err(BackupError::Malformed)),
                "{malformed:?}"
            );
        }
        let (n, result) = counting(|| generate_alice(0, FAST, &mut rand::rng()));
        assert_eq!((n, result.err()), (0, Some(BackupError::InvalidCount)));
    }

    #[test]
    fn debug_shows_no_code_salt_or_hash() {
        let (set, codes) = fresh(3);
        let shown = format!("{set:?}");
        assert_eq!(
            shown,
            "BackupCodeSet { codes: 3, remaining: 3, params: BackupHashParams { m_cost_kib: 8, \
             t_cost: 1, p_cost: 1 }, bound: true }"
        );
        let pretty = format!("{set:#?}");
        for code in &codes {
            let text = code.as_str();
            let shown_code = format!("{code:?}");
            assert_eq!(shown_code, "BackupCode(redacted)");
            for s in [&shown, &pretty, &shown_code] {
                assert!(!s.contains(text), "{s}");
                assert!(!s.contains(&text.replace('-', "")), "{s}");
                assert!(!s.contains(&text[5..9]), "{s}");
            }
        }
        for stored in &set.codes {
            for bytes in [&stored.salt[..], &stored.hash[..]] {
                let as_debug = format!("{:?}", &bytes[..4]);
                let as_debug = as_debug.trim_end_matches(']');
                let as_hex: String = bytes[..4].iter().map(|b| format!("{b:02x}")).collect();
                for s in [&shown, &pretty] {
                    assert!(!s.contains(as_debug), "{s}");
                    assert!(!s.contains(&as_hex), "{s}");
                }
            }
        }
    }

    #[test]
    fn postcard_round_trip_keeps_everything() {
        let (mut set, codes) = fresh(4);
        set.mark_used(
            set.check_alice(codes[3].as_str()).unwrap(),
            UnixTime::from_secs(42),
        );
        let bytes = postcard::to_allocvec(&set).unwrap();
        let back: BackupCodeSet = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, set);
        assert_eq!(back.params(), FAST);
        assert_eq!(back.remaining(), 3);
        assert_eq!(back.check_alice(codes[0].as_str()), Ok(BackupSlot(0)));
        assert_eq!(
            back.check_alice(codes[3].as_str()),
            Err(BackupError::AlreadyUsed)
        );

        let params = postcard::to_allocvec(&BackupHashParams::DEFAULT).unwrap();
        assert_eq!(
            postcard::from_bytes::<BackupHashParams>(&params),
            Ok(BackupHashParams::DEFAULT)
        );
    }

    #[test]
    fn deserialisation_refuses_what_generation_never_makes() {
        let (set, _) = fresh(3);
        let refused = |bad: &BackupCodeSet| {
            let bytes = postcard::to_allocvec(bad).unwrap();
            postcard::from_bytes::<BackupCodeSet>(&bytes).is_err()
        };
        let mut bad = set.clone();
        bad.codes[1].tag = bad.codes[0].tag;
        assert!(refused(&bad), "duplicate tags");
        let mut bad = set.clone();
        bad.codes[2].tag = 32;
        assert!(refused(&bad), "tag out of range");
        let mut bad = set.clone();
        bad.codes.clear();
        assert!(refused(&bad), "no codes");
        let (mut bad, _) = fresh(MAX_BACKUP_CODES);
        let mut extra = bad.codes[0].clone();
        extra.tag = (0..32)
            .find(|t| bad.codes.iter().all(|c| c.tag != *t))
            .unwrap();
        bad.codes.push(extra);
        assert!(refused(&bad), "17 codes");
        for (m, t, p) in [(7, 1, 1), (8, 0, 1), (8, 1, 0), (15, 1, 2)] {
            let mut bad = set.clone();
            bad.params = BackupHashParams {
                m_cost_kib: m,
                t_cost: t,
                p_cost: p,
            };
            assert!(refused(&bad), "params {m} {t} {p}");
        }
        assert!(!refused(&set));
    }

    #[test]
    fn count_must_be_1_to_16() {
        for count in [0, MAX_BACKUP_CODES + 1, u8::MAX] {
            assert_eq!(
                generate_alice(count, FAST, &mut rand::rng()).err(),
                Some(BackupError::InvalidCount),
                "{count}"
            );
        }
    }

    #[test]
    fn params_are_checked() {
        assert_eq!(BackupHashParams::default(), BackupHashParams::DEFAULT);
        let d = BackupHashParams::DEFAULT;
        assert_eq!((d.m_cost_kib(), d.t_cost(), d.p_cost()), (19 * 1024, 2, 1));
        let f = BackupHashParams::danger_insecure_fast();
        assert_eq!((f.m_cost_kib(), f.t_cost(), f.p_cost()), (8, 1, 1));
        assert_eq!(BackupHashParams::new(8, 1, 1), Ok(f));
        assert_eq!(BackupHashParams::new(19_456, 2, 1), Ok(d));
        assert_eq!(
            BackupHashParams::new(65_536, 3, 4).map(|p| (p.m_cost_kib(), p.t_cost(), p.p_cost())),
            Ok((65_536, 3, 4))
        );
        for (m, t, p) in [
            (7, 1, 1),
            (0, 1, 1),
            (8, 0, 1),
            (8, 1, 0),
            (15, 1, 2),
            (1 << 30, 1, 1 << 24),
        ] {
            assert_eq!(
                BackupHashParams::new(m, t, p),
                Err(BackupError::InvalidParams),
                "{m} {t} {p}"
            );
        }
    }

    #[test]
    fn a_stuck_rng_still_gives_distinct_tags() {
        for byte in [0, 0x1f, 0xff] {
            let (set, codes) =
                generate_alice(MAX_BACKUP_CODES, FAST, &mut TestRng::stuck(byte)).unwrap();
            let mut tags: Vec<u8> = set.codes.iter().map(|code| code.tag).collect();
            tags.sort_unstable();
            tags.dedup();
            assert_eq!(tags.len(), usize::from(MAX_BACKUP_CODES));
            for (i, code) in codes.iter().enumerate() {
                assert_eq!(set.check_alice(code.as_str()), Ok(BackupSlot(i)));
            }
        }
    }

    #[test]
    fn the_default_params_work() {
        let (set, codes) = generate_alice(1, BackupHashParams::DEFAULT, &mut rand::rng()).unwrap();
        assert_eq!(set.params(), BackupHashParams::DEFAULT);
        assert_eq!(set.check_alice(codes[0].as_str()), Ok(BackupSlot(0)));
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            BackupError::InvalidCount.to_string(),
            "a backup code set holds 1 to 16 codes"
        );
        for e in [
            BackupError::Malformed,
            BackupError::NoMatch,
            BackupError::AlreadyUsed,
            BackupError::InvalidParams,
            BackupError::Kdf,
        ] {
            let text = e.to_string();
            assert!(text.starts_with(char::is_lowercase), "{text}");
        }
    }

    fn shared_set() -> &'static (BackupCodeSet, Vec<String>) {
        static SET: std::sync::OnceLock<(BackupCodeSet, Vec<String>)> = std::sync::OnceLock::new();
        SET.get_or_init(|| {
            let (set, codes) = fresh(5);
            (set, codes.iter().map(|c| c.as_str().to_string()).collect())
        })
    }

    proptest! {
        #[test]
        fn check_never_panics(typed in any::<String>()) {
            let (set, _) = shared_set();
            let result = set.check_alice(&typed);
            prop_assert!(matches!(result, Err(BackupError::Malformed | BackupError::NoMatch)));
        }

        #[test]
        fn check_never_panics_near_the_format(typed in "[0-9A-Za-z -]{0,20}") {
            let (set, _) = shared_set();
            let result = set.check_alice(&typed);
            prop_assert!(matches!(result, Err(BackupError::Malformed | BackupError::NoMatch)));
        }

        #[test]
        fn any_rendering_of_a_code_checks(
            which in 0..5usize,
            lower in proptest::collection::vec(any::<bool>(), 12),
            separators in proptest::collection::vec(prop_oneof![Just(""), Just("-"), Just(" "), Just("- ")], 13),
        ) {
            let (set, codes) = shared_set();
            let symbols: Vec<char> = codes[which].chars().filter(|&c| c != '-').collect();
            let mut typed = String::new();
            for (i, symbol) in symbols.iter().enumerate() {
                typed.push_str(separators[i]);
                typed.push(if lower[i] { symbol.to_ascii_lowercase() } else { *symbol });
            }
            typed.push_str(separators[12]);
            prop_assert_eq!(set.check_alice(&typed), Ok(BackupSlot(which)));
        }
    }

    #[test]
    fn the_symbol_table_is_crockford() {
        for (value, &symbol) in ALPHABET.iter().enumerate() {
            assert_eq!(decode(symbol), Some(value as u8));
            assert_eq!(decode(symbol.to_ascii_lowercase()), Some(value as u8));
            assert_eq!(symbol_for(value as u8), symbol);
            assert_eq!(symbol_for(value as u8 | 0xe0), symbol, "high bits ignored");
        }
        assert_eq!(decode(b'O'), Some(0));
        assert_eq!(decode(b'o'), Some(0));
        for one in [b'I', b'i', b'L', b'l'] {
            assert_eq!(decode(one), Some(1));
        }
        for bad in [b'U', b'u', b'-', b' ', b'*', 0, 0x7f, 0x80, 0xc3, 0xff] {
            assert_eq!(decode(bad), None, "{bad:#x}");
        }
    }
}
