//! Sealing keys for the services and tools: from key files and `MFA_SEALING_KEY`, never from an
//! argument (it would show in `ps`).
//!
//! A key is text, `ID:KEY`, where `ID` is the key id (a number) and `KEY` is 32 bytes as 64 hex
//! digits or as base64 (standard or URL-safe, padded or not); a bare `KEY` is key id 1 (the
//! portal's `portal.key`). Key files other users may read or write are refused. Key material stays
//! in zeroizing buffers (decoding included) and is never shown, in errors or `Debug`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use data_encoding::{
    BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD, HEXLOWER, HEXLOWER_PERMISSIVE,
};
use mfa_core::{KeyId, SealingKey};
use zeroize::Zeroizing;

use crate::files;

/// The environment variable that may hold a key, in the same form as a key file.
pub const KEY_ENV: &str = "MFA_SEALING_KEY";

/// The id of a key given without one (`KEY` rather than `ID:KEY`).
pub const BARE_KEY_ID: KeyId = KeyId::new(1);

/// Key bytes.
const KEY_LEN: usize = 32;

/// The most a key file may hold: `4294967295:` and 64 hex digits are 76 bytes.
const MAX_FILE_LEN: u64 = 1024;

/// Why a key could not be had. No variant holds key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The text is not `ID:KEY` or `KEY` with 32 bytes of key. (It is not repeated: it is a key.)
    #[error(
        "{0} must hold one sealing key: ID:KEY (or KEY alone for key id 1), where KEY is 32 bytes \
         as 64 hex digits or as base64"
    )]
    Malformed(String),
    /// The key file is readable or writable by other users.
    #[error("{} is accessible to other users (mode {mode:o}); run: chmod 600 {}", path.display(), path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A new key file would replace one that is there (it may be the only copy of a key).
    #[error("{} exists: refusing to overwrite it (a key file may be the only copy of a key)", .0.display())]
    Exists(PathBuf),
    /// The key file could not be read or written.
    #[error("{} could not be read or written", path.display())]
    Io {
        /// The file (or, for a sync, its directory).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `MFA_SEALING_KEY` is set to something that is not text.
    #[error("{KEY_ENV} is not text")]
    EnvNotText,
}

impl KeyFileError {
    /// Whether the key file was not there at all.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A key as read: its id, where it came from, and its material (never shown).
pub struct LoadedKey {
    id: KeyId,
    source: String,
    bytes: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoadedKey")
            .field("id", &self.id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl LoadedKey {
    /// The key id.
    #[must_use]
    pub const fn id(&self) -> KeyId {
        self.id
    }

    /// Where it came from (`MFA_SEALING_KEY` or the file's path), for messages.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The key, for a keyring.
    #[must_use]
    pub fn sealing_key(&self) -> SealingKey {
        #[allow(
            clippy::expect_used,
            reason = "`parse` accepts only material of exactly 32 bytes"
        )]
        SealingKey::from_slice(self.id, &self.bytes).expect("a loaded key is 32 bytes")
    }

    /// Whether `other` is the same key (same id, same material), compared in constant time.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.id == other.id && bool::from(self.bytes.as_slice().ct_eq(other.bytes.as_slice()))
    }
}

/// Reads `ID:KEY` or `KEY`. `what` names the source in the error, which never repeats the text.
///
/// # Errors
/// [`KeyFileError::Malformed`].
pub fn parse(text: &str, what: &str) -> Result<LoadedKey, KeyFileError> {
    let malformed = || KeyFileError::Malformed(what.to_owned());
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
///
/// # Errors
/// [`KeyFileError::Io`] (see [`KeyFileError::is_not_found`]), [`KeyFileError::Permissions`],
/// [`KeyFileError::Malformed`].
pub fn read(path: &Path) -> Result<LoadedKey, KeyFileError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mode = files::others_access(&file).map_err(io_error(path))?;
    if mode != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode: file_mode(&file).unwrap_or(mode),
        });
    }
    // Room for the whole file up front, so reading never reallocates and leaves a copy behind.
    let mut text = Zeroizing::new(Vec::with_capacity(2 * MAX_FILE_LEN as usize));
    (&mut file)
        .take(MAX_FILE_LEN)
        .read_to_end(&mut text)
        .map_err(io_error(path))?;
    let shown = path.display().to_string();
    let text = std::str::from_utf8(&text).map_err(|_| KeyFileError::Malformed(shown.clone()))?;
    parse(text, &shown)
}

#[cfg(unix)]
fn file_mode(file: &File) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(file.metadata().ok()?.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn file_mode(_file: &File) -> Option<u32> {
    None
}

/// The key in `MFA_SEALING_KEY`, if it is set and not empty.
///
/// # Errors
/// [`KeyFileError::Malformed`], [`KeyFileError::EnvNotText`].
pub fn from_env() -> Result<Option<LoadedKey>, KeyFileError> {
    match std::env::var(KEY_ENV) {
        Ok(value) => from_value(&Zeroizing::new(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(KeyFileError::EnvNotText),
    }
}

/// The key in `value` (the text of `MFA_SEALING_KEY`), if it is not empty.
///
/// # Errors
/// [`KeyFileError::Malformed`].
pub fn from_value(value: &str) -> Result<Option<LoadedKey>, KeyFileError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    parse(value, KEY_ENV).map(Some)
}

/// Writes a fresh random key under `id` to a new file at `path` (mode 0600, `ID:HEX`, or a bare
/// `HEX` for [`BARE_KEY_ID`] when `bare`), synced with its directory before it returns, so that a
/// crash cannot leave secrets sealed under a key that was never saved. Returns the key.
///
/// # Errors
/// [`KeyFileError::Exists`] when anything is at `path`; [`KeyFileError::Io`] (nothing is left
/// behind).
pub fn generate(id: KeyId, path: &Path, form: KeyForm) -> Result<LoadedKey, KeyFileError> {
    let mut file = match files::create_private(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeyFileError::Exists(path.to_path_buf()));
        }
        Err(error) => return Err(io_error(path)(error)),
    };
    let mut bytes = Zeroizing::new(vec![0u8; KEY_LEN]);
    rand::fill(&mut bytes[..]);
    let prefix = match form {
        KeyForm::WithId => format!("{}:", id.get()),
        KeyForm::Bare => String::new(),
    };
    let mut text = Zeroizing::new(String::with_capacity(prefix.len() + 2 * KEY_LEN + 1));
    text.push_str(&prefix);
    HEXLOWER.encode_append(&bytes, &mut text);
    text.push('\n');
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        // Leave no half-written key file behind.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(io_error(path)(error));
    }
    if let Err((dir, error)) = files::sync_parent(path) {
        // Nothing can have used the key yet: remove it, so that trying again works.
        let _ = std::fs::remove_file(path);
        return Err(KeyFileError::Io {
            path: dir,
            source: error,
        });
    }
    Ok(LoadedKey {
        id,
        source: path.display().to_string(),
        bytes,
    })
}

/// How [`generate`] writes a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyForm {
    /// `ID:HEX`: what `mfa admin keys generate` writes.
    WithId,
    /// `HEX` alone (key id 1): what a portal makes at its first start.
    Bare,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn id_and_key_or_a_bare_key() {
        let bare = parse(HEX, "k").unwrap();
        assert_eq!(bare.id(), BARE_KEY_ID);
        assert_eq!(bare.bytes[31], 0xff);
        let with_id = parse(&format!(" 7 : {HEX}\n"), "k").unwrap();
        assert_eq!(with_id.id(), KeyId::new(7));
        assert!(with_id.same_as(&parse(&format!("7:{HEX}"), "k").unwrap()));
        assert!(!with_id.same_as(&bare));
        let base64 = BASE64.encode(&[9u8; 32]);
        assert_eq!(parse(&base64, "k").unwrap().bytes[0], 9);
        assert_eq!(parse(&base64.replace('=', ""), "k").unwrap().bytes[0], 9);
        for bad in [
            "",
            "zz",
            &HEX[2..],
            &format!("x:{HEX}"),
            &format!("-1:{HEX}"),
            &format!("99999999999:{HEX}"),
            &format!(":{HEX}"),
            &BASE64.encode(&[9u8; 31]),
            &format!("1:{HEX}\n2:{HEX}"),
            &format!("4294967296:{HEX}"),
        ] {
            let error = parse(bad, "the key").unwrap_err();
            assert!(matches!(error, KeyFileError::Malformed(_)), "{bad}");
            assert!(!error.to_string().contains(HEX), "never the key");
        }
        assert!(!format!("{bare:?}").contains("ff"), "{bare:?}");
    }

    #[test]
    fn key_files_are_private_new_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.key");
        let made = generate(KeyId::new(2), &path, KeyForm::WithId).unwrap();
        let read_back = read(&path).unwrap();
        assert!(made.same_as(&read_back));
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("2:"));
        assert!(matches!(
            generate(KeyId::new(2), &path, KeyForm::WithId),
            Err(KeyFileError::Exists(_))
        ));
        let bare = dir.path().join("portal.key");
        let made = generate(BARE_KEY_ID, &bare, KeyForm::Bare).unwrap();
        assert!(made.same_as(&read(&bare).unwrap()));
        assert!(
            read(&dir.path().join("missing.key"))
                .unwrap_err()
                .is_not_found()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = read(&path).unwrap_err();
            assert!(
                matches!(error, KeyFileError::Permissions { mode: 0o644, .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("chmod 600"), "{error}");
        }
    }
}
