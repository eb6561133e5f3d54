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
use std::io;
use std::path::{Path, PathBuf};

use mfa_core::{CustomerId, KeyId, KeyRing, OrgId, Store, seal::SealError};
use mfa_ops::keyfile::{self, KeyFileError, KeyForm};

/// The environment variable that holds the sealing key.
pub use mfa_ops::keyfile::KEY_ENV;

/// The id of a key given without one (`KEY` rather than `ID:KEY`): the key file the portal creates.
/// A second key gets id 2 (`mfa admin keys generate --id 2`), and the old one stays in the ring as
/// a previous key until every secret is resealed under the new one (`mfa admin keys rotate`).
pub const KEY_ID: KeyId = keyfile::BARE_KEY_ID;

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
    let (key, source) = match env_value {
        Some(value) if !value.trim().is_empty() => {
            let key = keyfile::from_value(value)?
                .ok_or_else(|| KeyError::Malformed(KEY_ENV.to_owned()))?;
            (key, KeySource::Env)
        }
        _ => match keyfile::read(key_file) {
            Ok(key) => (key, KeySource::File(key_file.to_path_buf())),
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error.into()),
        },
    };
    Ok(Some((KeyRing::new(key.sealing_key()), source)))
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
    // Synced with its directory before it is used: a crash cannot leave secrets sealed under a
    // key that was never saved.
    let key = keyfile::generate(KEY_ID, key_file, KeyForm::Bare)?;
    Ok((
        KeyRing::new(key.sealing_key()),
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
        let key = keyfile::read(path)?;
        let id = key.id();
        ring.add(key.sealing_key())
            .map_err(|_| KeyError::DuplicateId(path.display().to_string(), id))?;
        ids.push(id);
    }
    Ok(ids)
}

/// A key file's failure, in the portal's words.
impl From<KeyFileError> for KeyError {
    fn from(error: KeyFileError) -> Self {
        match error {
            KeyFileError::Permissions { path, mode } => Self::Permissions { path, mode },
            KeyFileError::Io { path, source } => Self::Io { path, source },
            KeyFileError::Exists(path) => Self::Io {
                path,
                source: io::ErrorKind::AlreadyExists.into(),
            },
            KeyFileError::Malformed(what) => Self::Malformed(what),
            _ => Self::Malformed(KEY_ENV.to_owned()),
        }
    }
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
        let (ring, _) = load(Some(&format!("7:{hex}")), Path::new("never.key")).unwrap();
        assert_eq!(ring.active_id(), KeyId::new(7));
        let (ring, _) = load(Some(&hex), Path::new("never.key")).unwrap();
        assert_eq!(ring.active_id(), KEY_ID);
        for bad in [format!(":{hex}"), format!("x:{hex}"), "2:".to_owned()] {
            let error = load(Some(&bad), Path::new("never.key")).unwrap_err();
            assert!(matches!(error, KeyError::Malformed(_)), "{bad}");
            assert!(!error.to_string().contains(&hex[..8]), "never the key");
        }
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
