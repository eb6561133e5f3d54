//! The key that seals TOTP secrets at rest: from `MFA_SEALING_KEY`, or from a key file the portal
//! creates (mode 0600) on its first start; and, during a key rotation, previous keys from their
//! files, to open what they sealed. The keys themselves are never printed or logged.
//!
//! A key is `ID:KEY` or a bare `KEY` (key id 1), where `KEY` is 32 bytes as 64 hex digits or as
//! base64: the form `mfa admin keys generate` writes and `mfa admin keys rotate` reads.
//!
//! A key file is created only for a database that seals nothing yet ([`load_or_create`]): started
//! from another directory or with a mistyped `--key-file`, the portal would otherwise make up a new
//! key under the same id 1, fail every customer who set up MFA, and seal new enrollments under a
//! second key that the first start's file does not hold. And before it serves, [`check`] opens one
//! secret under each key id the database uses, so that a wrong key (another key given the same id)
//! or a missing previous key stops the start instead of failing each customer in turn.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD, HEXLOWER_PERMISSIVE};
use mfa_core::{CustomerId, KeyId, KeyRing, OrgId, SealingKey, Store, seal::SealError};
use zeroize::Zeroizing;

/// The environment variable that holds the sealing key.
pub const KEY_ENV: &str = "MFA_SEALING_KEY";

/// The id of a key given without one (`KEY` rather than `ID:KEY`): the key file the portal creates.
/// A second key gets id 2 (`mfa admin keys generate --id 2`), and the old one stays in the ring as
/// a previous key until every secret is resealed under the new one (`mfa admin keys rotate`).
pub const KEY_ID: KeyId = KeyId::new(1);

/// Key bytes.
const KEY_LEN: usize = 32;

/// Where the key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The environment variable [`KEY_ENV`].
    Env,
    /// A key file that already existed.
    File(PathBuf),
    /// A key file created just now, with a fresh random key.
    Created(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => write!(f, "from {KEY_ENV}"),
            Self::File(path) => write!(f, "from {}", path.display()),
            Self::Created(path) => write!(f, "created in {} (mode 0600)", path.display()),
        }
    }
}

/// The key could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is neither 64 hex digits nor base64 of 32 bytes, with an optional `ID:` before it.
    /// (It is not repeated: it is a key.)
    #[error(
        "{0} must be 32 bytes as 64 hex digits or as base64, optionally after a key id and a colon (ID:KEY)"
    )]
    Malformed(String),
    /// A previous key has the id of another key given.
    #[error("{0} holds key id {1}, which another key given already has")]
    DuplicateId(String, KeyId),
    /// The key file is readable or writable by others.
    #[error("{} is accessible to other users (mode {mode:o}); run: chmod 600 {}", path.display(), path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The key file could not be read or created.
    #[error("{} could not be read or created", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// There is no key file, and the database already seals secrets: a new key would open none of
    /// them. Nothing was created.
    #[error(
        "{} does not exist, but the database holds {}: a new key would open none of them, so none \
         was created. Start the portal where its key file is, or name it with --key-file (or give \
         the key in {KEY_ENV})",
        located(path),
        describe_sealed(sealed)
    )]
    Missing {
        /// The key file looked for.
        path: PathBuf,
        /// How many secrets the database seals under each key id.
        sealed: Vec<(KeyId, u64)>,
    },
    /// Secrets are sealed under a key id that no key given has.
    #[error(
        "the database holds {count} sealed secret{} under key id {id}, and no key given has that \
         id: give its key file with --key-file, or with --previous-key-file during a key rotation",
        plural(*count)
    )]
    NotLoaded {
        /// The key id.
        id: KeyId,
        /// How many secrets it seals.
        count: u64,
    },
    /// The key given for a key id does not open what the database sealed under that id: another key
    /// with the same id.
    #[error(
        "the key given for key id {id} does not open the secrets sealed under key id {id} (the \
         first tried: {org} / {customer}): it is not the key that sealed them; give that one"
    )]
    WrongKey {
        /// The key id.
        id: KeyId,
        /// The organisation of the secret tried.
        org: OrgId,
        /// Its customer.
        customer: CustomerId,
        /// What opening it said.
        #[source]
        source: SealError,
    },
    /// The store could not say what it seals.
    #[error("the MFA store could not say what it seals")]
    Store(#[source] Box<dyn core::error::Error + Send + Sync>),
}

const fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// `3 sealed secrets (2 under key id 1, 1 under key id 2)`.
fn describe_sealed(sealed: &[(KeyId, u64)]) -> String {
    let total: u64 = sealed.iter().map(|(_, count)| count).sum();
    let each: Vec<String> = sealed
        .iter()
        .map(|(id, count)| format!("{count} under key id {id}"))
        .collect();
    format!(
        "{total} sealed secret{} ({})",
        plural(total),
        each.join(", ")
    )
}

/// `path`, and the directory a relative one is in: a start from another directory shows.
fn located(path: &Path) -> String {
    match std::path::absolute(path) {
        Ok(absolute) if path.is_relative() => {
            format!("{} ({})", path.display(), absolute.display())
        }
        _ => path.display().to_string(),
    }
}

fn store_error(error: impl core::error::Error + Send + Sync + 'static) -> KeyError {
    KeyError::Store(Box::new(error))
}

/// The sealing keyring from `env_value` (the value of [`KEY_ENV`], if set and not empty), or else
/// from `key_file` if it exists; `None` when neither has a key. Nothing is created: a missing key
/// file is [`load_or_create`]'s to make, once the store is known to seal nothing.
///
/// # Errors
/// [`KeyError::Malformed`] for a key that is not 32 bytes in hex or base64;
/// [`KeyError::Permissions`] for a key file other users may read; [`KeyError::Io`] when the file
/// cannot be read.
pub fn read(
    env_value: Option<&str>,
    key_file: &Path,
) -> Result<Option<(KeyRing, KeySource)>, KeyError> {
    let ((id, bytes), source) = match env_value.filter(|value| !value.trim().is_empty()) {
        Some(value) => (parse_with_id(value, KEY_ENV)?, KeySource::Env),
        None => match read_file(key_file) {
            Ok(key) => (key, KeySource::File(key_file.to_path_buf())),
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(error) => return Err(error),
        },
    };
    let key = SealingKey::from_slice(id, &bytes[..])
        .map_err(|_| KeyError::Malformed(KEY_ENV.to_owned()))?;
    Ok(Some((KeyRing::new(key), source)))
}

/// The keyring [`read`] found, or else a new one in `key_file` (created with a fresh random key,
/// key id 1, mode 0600), but only if `store` seals no secret yet: otherwise the key that sealed
/// them is missing, and a new one would open none of them.
///
/// # Errors
/// [`KeyError::Missing`], naming the file and what the store seals; [`KeyError::Store`] when the
/// store cannot say; [`KeyError::Io`] when the file cannot be created (or appeared meanwhile, in
/// which case a second start reads it).
pub async fn load_or_create<S: Store>(
    found: Option<(KeyRing, KeySource)>,
    key_file: &Path,
    store: &S,
) -> Result<(KeyRing, KeySource), KeyError> {
    if let Some(found) = found {
        return Ok(found);
    }
    let sealed = store.count_sealed().await.map_err(store_error)?;
    if sealed.iter().any(|(_, count)| *count > 0) {
        return Err(KeyError::Missing {
            path: key_file.to_path_buf(),
            sealed,
        });
    }
    let bytes = create(key_file).map_err(io_error(key_file))?;
    let key = SealingKey::from_slice(KEY_ID, &bytes[..])
        .map_err(|_| KeyError::Malformed(key_file.display().to_string()))?;
    Ok((
        KeyRing::new(key),
        KeySource::Created(key_file.to_path_buf()),
    ))
}

/// Secrets tried per key id at start-up.
const CHECKED_PER_KEY: usize = 3;

/// Checks `keys` against what `store` seals, before the portal serves: every key id that seals a
/// secret must be in the ring, and its key must open one of the first few secrets the store lists
/// under it.
///
/// A wrong key opens none of them. One record that does not open while another does is taken for
/// damaged, as `mfa admin keys rotate` takes it, and does not stop the start, nor does a record
/// that cannot be read at all (it is logged, naming it); nor can a few records tell whether every
/// other one opens (the rotation walks them all).
///
/// # Errors
/// [`KeyError::NotLoaded`], [`KeyError::WrongKey`] (naming the first secret tried), or
/// [`KeyError::Store`].
pub async fn check<S: Store>(keys: &KeyRing, store: &S) -> Result<(), KeyError> {
    let sealed = store.count_sealed().await.map_err(store_error)?;
    let loaded: Vec<KeyId> = keys.key_ids().collect();
    for &(id, count) in sealed.iter().filter(|(_, count)| *count > 0) {
        if !loaded.contains(&id) {
            return Err(KeyError::NotLoaded { id, count });
        }
        let sample = mfa_core::store::sealed_sample(store, id, CHECKED_PER_KEY)
            .await
            .map_err(store_error)?;
        // A record that cannot be read says nothing about the key: it is named here and passed
        // over (the service answers it as corrupt), and the next readable ones tell.
        for unreadable in &sample.unreadable {
            tracing::error!(
                org = %unreadable.org,
                customer = unreadable.customer.as_ref().map(mfa_core::CustomerId::as_str),
                error = %unreadable.error,
                "portal: a stored MFA record cannot be read; the key check passes it over"
            );
        }
        let mut refused = None;
        for ((org, customer), sealed) in &sample.readable {
            match keys.open(sealed, org, customer) {
                Ok(_) => {
                    refused = None;
                    break;
                }
                Err(source) => {
                    refused = refused.or(Some(KeyError::WrongKey {
                        id: sealed.key_id(),
                        org: org.clone(),
                        customer: customer.clone(),
                        source,
                    }));
                }
            }
        }
        if let Some(error) = refused {
            return Err(error);
        }
    }
    Ok(())
}

/// Adds the keys of `files` to `ring`, to open the secrets they sealed while the ring's active key
/// seals new ones: the previous keys of a key rotation. The files must exist (none is created).
/// Returns each key's id.
///
/// # Errors
/// As [`read`], and [`KeyError::DuplicateId`] for a key id already in the ring.
pub fn add_previous(ring: &mut KeyRing, files: &[PathBuf]) -> Result<Vec<KeyId>, KeyError> {
    let mut ids = Vec::with_capacity(files.len());
    for path in files {
        let (id, bytes) = read_file(path)?;
        let key = SealingKey::from_slice(id, &bytes[..])
            .map_err(|_| KeyError::Malformed(path.display().to_string()))?;
        ring.add(key)
            .map_err(|_| KeyError::DuplicateId(path.display().to_string(), id))?;
        ids.push(id);
    }
    Ok(ids)
}

/// A key with its id: `ID:KEY`, or a bare `KEY` for [`KEY_ID`]. `what` names the source in the
/// error.
///
/// # Errors
/// [`KeyError::Malformed`].
pub fn parse_with_id(text: &str, what: &str) -> Result<(KeyId, Zeroizing<Vec<u8>>), KeyError> {
    match text.trim().split_once(':') {
        Some((id, key)) => {
            let id = id.trim();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(KeyError::Malformed(what.to_owned()));
            }
            let id = id
                .parse::<u32>()
                .map_err(|_| KeyError::Malformed(what.to_owned()))?;
            Ok((KeyId::new(id), parse(key, what)?))
        }
        None => Ok((KEY_ID, parse(text, what)?)),
    }
}

/// 32 bytes from 64 hex digits, or from base64 (standard or URL-safe, padded or not). `what` names
/// the source in the error.
///
/// # Errors
/// [`KeyError::Malformed`].
pub fn parse(text: &str, what: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let text = text.trim().as_bytes();
    let malformed = || KeyError::Malformed(what.to_owned());
    let decoded = if text.len() == 2 * KEY_LEN {
        HEXLOWER_PERMISSIVE.decode(text).ok()
    } else {
        [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD]
            .iter()
            .find_map(|encoding| encoding.decode(text).ok())
    };
    let decoded = Zeroizing::new(decoded.ok_or_else(malformed)?);
    if decoded.len() == KEY_LEN {
        Ok(decoded)
    } else {
        Err(malformed())
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

type KeyBytes = (KeyId, Zeroizing<Vec<u8>>);

/// An existing key file's key, refused if other users may read or write it.
fn read_file(path: &Path) -> Result<KeyBytes, KeyError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    check_permissions(&file, path)?;
    let mut text = Zeroizing::new(String::new());
    // A key file is 65 bytes (76 with a key id); anything much longer is not one.
    (&mut file)
        .take(1024)
        .read_to_string(&mut text)
        .map_err(io_error(path))?;
    parse_with_id(&text, &path.display().to_string())
}

/// Creates the key file with a fresh key, failing with `AlreadyExists` if it is there. Written as
/// hex and synced before it is used, so that a crash cannot leave secrets sealed under a key that
/// was never saved.
fn create(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let mut bytes = Zeroizing::new(vec![0u8; KEY_LEN]);
    rand::fill(&mut bytes[..]);
    let mut text = Zeroizing::new(data_encoding::HEXLOWER.encode(&bytes));
    text.push('\n');
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        // Leave no half-written key behind to be read at the next start.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(error);
    }
    Ok(bytes)
}

#[cfg(unix)]
fn check_permissions(file: &File, path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(io_error(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_file: &File, _path: &Path) -> Result<(), KeyError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portal's first steps with its key over a database that seals nothing yet.
    fn load(env_value: Option<&str>, key_file: &Path) -> Result<(KeyRing, KeySource), KeyError> {
        let found = read(env_value, key_file)?;
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(load_or_create(
                found,
                key_file,
                &mfa_core::MemoryStore::default(),
            ))
    }

    #[test]
    fn hex_and_base64() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let bytes = parse(hex, "k").unwrap();
        assert_eq!(bytes[0], 0x00);
        assert_eq!(bytes[31], 0xff);
        let b64 = BASE64.encode(&bytes);
        assert_eq!(*parse(&b64, "k").unwrap(), *bytes);
        assert_eq!(
            *parse(&BASE64URL_NOPAD.encode(&bytes), "k").unwrap(),
            *bytes
        );
        assert_eq!(*parse(&format!(" {b64}\n"), "k").unwrap(), *bytes);
        for bad in [
            "",
            "00",
            &hex[..62],
            &BASE64.encode(&[0u8; 31]),
            "zz".repeat(32).as_str(),
        ] {
            let error = parse(bad, "k").unwrap_err();
            assert!(matches!(error, KeyError::Malformed(_)), "{bad}");
            if !bad.is_empty() {
                assert!(
                    !error.to_string().contains(bad),
                    "the key is never repeated"
                );
            }
        }
    }

    #[test]
    fn the_key_file_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.key");
        let (ring, source) = load(None, &path).unwrap();
        assert_eq!(source, KeySource::Created(path.clone()));
        assert_eq!(ring.active_id(), KEY_ID);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        let (_, source) = load(Some(""), &path).unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        // The same key: a secret sealed under the first opens under the second.
        let (again, _) = load(None, &path).unwrap();
        let mut rng = rand::rng();
        let secret = mfa_core::otp::Secret::generate(mfa_core::otp::Algorithm::Sha1, &mut rng);
        let (org, alice) = (
            mfa_core::OrgId::new("acme").unwrap(),
            mfa_core::CustomerId::new("alice@acme.test").unwrap(),
        );
        let sealed = ring.seal(&secret, &org, &alice, &mut rng);
        assert_eq!(again.open(&sealed, &org, &alice).unwrap(), secret);
        std::fs::write(dir.path().join("garbage.key"), "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let garbage = dir.path().join("garbage.key");
            std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(matches!(load(None, &garbage), Err(KeyError::Malformed(_))));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                load(None, &path),
                Err(KeyError::Permissions { .. })
            ));
        }
    }

    #[test]
    fn a_key_may_carry_its_id() {
        let hex = "ab".repeat(32);
        let (id, bytes) = parse_with_id(&format!(" 2:{hex}\n"), "k").unwrap();
        assert_eq!((id, bytes[0]), (KeyId::new(2), 0xab));
        assert_eq!(parse_with_id(&hex, "k").unwrap().0, KEY_ID);
        for bad in [
            format!(":{hex}"),
            format!("x:{hex}"),
            format!("-2:{hex}"),
            "2:".to_owned(),
        ] {
            let error = parse_with_id(&bad, "k").unwrap_err();
            assert!(matches!(error, KeyError::Malformed(_)), "{bad}");
            assert!(
                !error.to_string().contains(&hex[..8]),
                "the key is never repeated"
            );
        }
        let (ring, _) = load(Some(&format!("7:{hex}")), Path::new("never.key")).unwrap();
        assert_eq!(ring.active_id(), KeyId::new(7));
    }

    /// A key rotation as the portal lives through it: restarted with the new key (id 2) and the
    /// old one as previous, it opens what the old key sealed and seals new secrets with the new one.
    #[test]
    fn previous_keys_open_what_they_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join("portal.key");
        let (old_ring, _) = load(None, &old_path).unwrap();
        let new_path = dir.path().join("new.key");
        std::fs::write(&new_path, format!("2:{}\n", "cd".repeat(32))).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&new_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let (mut ring, source) = load(None, &new_path).unwrap();
        assert_eq!(source, KeySource::File(new_path.clone()));
        assert_eq!(
            add_previous(&mut ring, std::slice::from_ref(&old_path)).unwrap(),
            [KEY_ID]
        );
        assert_eq!(ring.active_id(), KeyId::new(2));

        let mut rng = rand::rng();
        let secret = mfa_core::otp::Secret::generate(mfa_core::otp::Algorithm::Sha1, &mut rng);
        let (org, alice) = (
            mfa_core::OrgId::new("acme").unwrap(),
            mfa_core::CustomerId::new("alice@acme.test").unwrap(),
        );
        let sealed_before = old_ring.seal(&secret, &org, &alice, &mut rng);
        assert_eq!(ring.open(&sealed_before, &org, &alice).unwrap(), secret);
        let sealed_now = ring.seal(&secret, &org, &alice, &mut rng);
        assert_eq!(sealed_now.key_id(), KeyId::new(2));

        // The same id twice, a missing file (never created) and a file others may read: refused.
        assert!(matches!(
            add_previous(&mut ring, std::slice::from_ref(&new_path)),
            Err(KeyError::DuplicateId(_, id)) if id == KeyId::new(2)
        ));
        let missing = dir.path().join("missing.key");
        assert!(matches!(
            add_previous(&mut ring, std::slice::from_ref(&missing)),
            Err(KeyError::Io { .. })
        ));
        assert!(!missing.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&old_path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let (mut fresh, _) = load(None, &new_path).unwrap();
            assert!(matches!(
                add_previous(&mut fresh, std::slice::from_ref(&old_path)),
                Err(KeyError::Permissions { .. })
            ));
        }
    }

    #[test]
    fn the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("never.key");
        let (_, source) = load(Some(&"ab".repeat(32)), &path).unwrap();
        assert_eq!(source, KeySource::Env);
        assert!(
            !path.exists(),
            "no file is created when the environment has the key"
        );
        assert!(load(Some("short"), &path).is_err());
    }
}
