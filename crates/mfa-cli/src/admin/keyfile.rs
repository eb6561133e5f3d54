//! Sealing keys for `mfa admin keys`: from key files and `MFA_SEALING_KEY`, never from an argument
//! (it would show in `ps`).
//!
//! A key file holds one key as text, `ID:KEY`, where `ID` is the key id (a number) and `KEY` is 32
//! bytes as 64 hex digits or as base64. A bare `KEY` is key id 1: that is the portal's `portal.key`,
//! so a portal's database can be rotated as it is. Key files other users may read or write are
//! refused, as the portal refuses them. Key material stays in zeroizing buffers and is never shown.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use data_encoding::{
    BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD, HEXLOWER, HEXLOWER_PERMISSIVE,
};
use mfa_core::{KeyId, SealingKey};
use zeroize::Zeroizing;

use crate::Failure;

/// The environment variable that may hold a key, in the same form as a key file.
pub(crate) const KEY_ENV: &str = "MFA_SEALING_KEY";

/// Key bytes.
const KEY_LEN: usize = 32;

/// The id of a key given without one (the portal's key).
const BARE_KEY_ID: KeyId = KeyId::new(1);

/// The most a key file may hold: `4294967295:` and 64 hex digits are 76 bytes.
const MAX_FILE_LEN: u64 = 1024;

/// A key as read: its id, where it came from, and its material (never shown).
pub(crate) struct LoadedKey {
    pub(crate) id: KeyId,
    /// `MFA_SEALING_KEY` or the file's path, for messages.
    pub(crate) source: String,
    bytes: Zeroizing<Vec<u8>>,
}

impl LoadedKey {
    /// The key, for a keyring.
    pub(crate) fn sealing_key(&self) -> SealingKey {
        #[allow(
            clippy::expect_used,
            reason = "`parse` accepts only material of exactly 32 bytes"
        )]
        SealingKey::from_slice(self.id, &self.bytes).expect("a loaded key is 32 bytes")
    }

    /// Whether `other` is the same key (same id, same material).
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.id == other.id && bool::from(self.bytes.as_slice().ct_eq(other.bytes.as_slice()))
    }
}

/// Reads `ID:KEY` or `KEY`. `what` names the source in the error, which never repeats the text.
pub(crate) fn parse(text: &str, what: &str) -> Result<LoadedKey, String> {
    let malformed = || {
        format!(
            "{what} must hold one sealing key: ID:KEY (or KEY alone for key id 1), where KEY is 32 \
             bytes as 64 hex digits or as base64"
        )
    };
    let text = text.trim();
    let (id, key) = match text.split_once(':') {
        Some((id, key)) => {
            let id = id.trim();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            let id = id.parse::<u32>().map_err(|_| malformed())?;
            (KeyId::new(id), key.trim())
        }
        None => (BARE_KEY_ID, text),
    };
    let key = key.as_bytes();
    let encodings: &[&data_encoding::Encoding] = if key.len() == 2 * KEY_LEN {
        &[&HEXLOWER_PERMISSIVE]
    } else {
        &[&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD]
    };
    let bytes = encodings
        .iter()
        .find_map(|encoding| decode(encoding, key))
        .ok_or_else(malformed)?;
    if bytes.len() != KEY_LEN {
        return Err(malformed());
    }
    Ok(LoadedKey {
        id,
        source: what.to_owned(),
        bytes,
    })
}

/// Decodes into a zeroizing buffer, so that no copy of the key is left behind, even by an attempt
/// that fails half way.
fn decode(encoding: &data_encoding::Encoding, text: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(vec![0; encoding.decode_len(text.len()).ok()?]);
    let len = encoding.decode_mut(text, &mut bytes).ok()?;
    bytes.truncate(len);
    Some(bytes)
}

/// Reads a key file, refusing one that other users may read or write.
pub(crate) fn read(path: &Path) -> Result<LoadedKey, Failure> {
    let shown = path.display().to_string();
    let io_error = |error: io::Error| Failure::Input(format!("{shown}: {error}"));
    let mut file = File::open(path).map_err(io_error)?;
    check_permissions(&file, path)?;
    // Room for the whole file up front, so reading never reallocates and leaves a copy behind.
    let mut text = Zeroizing::new(Vec::with_capacity(2 * MAX_FILE_LEN as usize));
    (&mut file)
        .take(MAX_FILE_LEN)
        .read_to_end(&mut text)
        .map_err(io_error)?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| Failure::Input(format!("{shown} is not a key file (it is not text)")))?;
    parse(text, &shown).map_err(Failure::Input)
}

/// The key in `MFA_SEALING_KEY`, if it is set and not empty.
pub(crate) fn from_env() -> Result<Option<LoadedKey>, Failure> {
    match std::env::var(KEY_ENV) {
        Ok(value) => {
            let value = Zeroizing::new(value);
            if value.trim().is_empty() {
                return Ok(None);
            }
            parse(&value, KEY_ENV).map(Some).map_err(Failure::Input)
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Failure::Input(format!("{KEY_ENV} is not text")))
        }
    }
}

/// The keys from `files` and then from `MFA_SEALING_KEY`, each id once: the same key given twice is
/// taken once, two different keys under one id are refused.
pub(crate) fn read_all(files: &[impl AsRef<Path>]) -> Result<Vec<LoadedKey>, Failure> {
    let mut keys: Vec<LoadedKey> = Vec::new();
    let from_files = files.iter().map(|path| read(path.as_ref()).map(Some));
    for key in from_files.chain(std::iter::once_with(from_env)) {
        let Some(key) = key? else { continue };
        add(&mut keys, key)?;
    }
    Ok(keys)
}

/// Adds `key` to `keys` unless the same key is there; refuses another key under its id.
pub(crate) fn add(keys: &mut Vec<LoadedKey>, key: LoadedKey) -> Result<(), Failure> {
    match keys.iter().find(|known| known.id == key.id) {
        Some(known) if known.same_as(&key) => Ok(()),
        Some(known) => Err(Failure::Input(format!(
            "{} and {} hold different keys under the same key id {}",
            known.source, key.source, key.id
        ))),
        None => {
            keys.push(key);
            Ok(())
        }
    }
}

/// `keys generate`: a fresh random key under `id`, written as `ID:HEX` to a new file of mode 0600.
pub(crate) fn generate(id: u32, path: &Path) -> Result<(), Failure> {
    let shown = path.display();
    let mut file = match crate::files::create_private(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Failure::Failed(format!(
                "{shown} exists: refusing to overwrite it (a key file may be the only copy of a key)"
            )));
        }
        Err(error) => return Err(Failure::Input(format!("{shown}: {error}"))),
    };
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    rand::fill(&mut bytes[..]);
    let prefix = format!("{id}:");
    let mut text = Zeroizing::new(String::with_capacity(prefix.len() + 2 * KEY_LEN + 1));
    text.push_str(&prefix);
    HEXLOWER.encode_append(&bytes[..], &mut text);
    text.push('\n');
    // Synced before anything can use it: a key that seals secrets must never be lost in a crash.
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        // Leave no half-written key file behind.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(Failure::Failed(format!("{shown}: {error}")));
    }
    // And its directory, or the new file's name may be lost in a crash although the file is synced.
    if let Err(message) = crate::files::sync_parent(path) {
        // Nothing can have used the key yet: remove it, so that running the command again works.
        let _ = std::fs::remove_file(path);
        return Err(Failure::Failed(format!("{message} ({shown} was removed)")));
    }
    outln!("wrote a new sealing key with key id {id} to {shown} (mode 0600)");
    Ok(())
}

#[cfg(unix)]
fn check_permissions(file: &File, path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let mode = file
        .metadata()
        .map_err(|error| Failure::Input(format!("{shown}: {error}")))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(Failure::Input(format!(
            "{shown} is accessible to other users (mode {mode:o}); run: chmod 600 {shown}"
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_file: &File, _path: &Path) -> Result<(), Failure> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn id_and_key_or_a_bare_key() {
        let bare = parse(HEX, "k").unwrap();
        assert_eq!(bare.id, KeyId::new(1));
        assert_eq!(bare.bytes[31], 0xff);
        let with_id = parse(&format!(" 7:{HEX}\n"), "k").unwrap();
        assert_eq!(with_id.id, KeyId::new(7));
        assert_eq!(*with_id.bytes, *bare.bytes);
        let b64 = BASE64.encode(&bare.bytes);
        assert_eq!(
            *parse(&format!("20260401:{b64}"), "k").unwrap().bytes,
            *bare.bytes
        );
        assert_eq!(parse(&b64, "k").unwrap().id, KeyId::new(1));
        assert!(parse(&format!("1:{HEX}"), "k").unwrap().same_as(&bare));
        assert!(!parse(&format!("2:{HEX}"), "k").unwrap().same_as(&bare));
    }

    #[test]
    fn malformed_keys_are_refused_and_not_repeated() {
        for bad in [
            String::new(),
            "00".into(),
            HEX[..62].into(),
            format!(":{HEX}"),
            format!("-1:{HEX}"),
            format!("x:{HEX}"),
            format!("4294967296:{HEX}"),
            format!("1:{HEX}\n2:{HEX}"),
            BASE64.encode(&[7u8; 31]),
        ] {
            let error = parse(&bad, "the key file").err().unwrap();
            assert!(error.starts_with("the key file must hold"), "{error}");
            assert!(
                !error.contains("001122") && !error.contains("BwcH"),
                "{error}"
            );
        }
    }
}
