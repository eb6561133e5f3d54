//! Sealing keys for `mfa admin keys`: from key files and `MFA_SEALING_KEY` (`mfa_ops::keyfile`,
//! the portal's reading too), never from an argument (it would show in `ps`). Key material is
//! never shown.

use std::path::Path;

use mfa_core::KeyId;
use mfa_ops::keyfile::{self, KeyFileError, KeyForm};

pub(crate) use mfa_ops::keyfile::LoadedKey;

use crate::Failure;

/// How the command answers a key that could not be had: exit 1 for a key file it will not
/// overwrite or could not write, exit 2 for input that is not a usable key.
fn failure(error: KeyFileError) -> Failure {
    match error {
        KeyFileError::Exists(_) => Failure::Failed(error.to_string()),
        KeyFileError::Io { path, source } => {
            Failure::Input(format!("{}: {source}", path.display()))
        }
        other => Failure::Input(other.to_string()),
    }
}

/// Reads a key file, refusing one that other users may read or write.
pub(crate) fn read(path: &Path) -> Result<LoadedKey, Failure> {
    keyfile::read(path).map_err(failure)
}

/// The keys from `files` and then from `MFA_SEALING_KEY`, each id once: the same key given twice is
/// taken once, two different keys under one id are refused.
pub(crate) fn read_all(files: &[impl AsRef<Path>]) -> Result<Vec<LoadedKey>, Failure> {
    let mut keys: Vec<LoadedKey> = Vec::new();
    let from_files = files.iter().map(|path| read(path.as_ref()).map(Some));
    let from_env = std::iter::once_with(|| keyfile::from_env().map_err(failure));
    for key in from_files.chain(from_env) {
        let Some(key) = key? else { continue };
        add(&mut keys, key)?;
    }
    Ok(keys)
}

/// Adds `key` to `keys` unless the same key is there; refuses another key under its id.
pub(crate) fn add(keys: &mut Vec<LoadedKey>, key: LoadedKey) -> Result<(), Failure> {
    match keys.iter().find(|known| known.id() == key.id()) {
        Some(known) if known.same_as(&key) => Ok(()),
        Some(known) => Err(Failure::Input(format!(
            "{} and {} hold different keys under the same key id {}",
            known.source(),
            key.source(),
            key.id()
        ))),
        None => {
            keys.push(key);
            Ok(())
        }
    }
}

/// `keys generate`: a fresh random key under `id`, written as `ID:HEX` to a new file of mode 0600,
/// synced with its directory.
pub(crate) fn generate(id: u32, path: &Path) -> Result<(), Failure> {
    keyfile::generate(KeyId::new(id), path, KeyForm::WithId).map_err(|error| match error {
        // Nothing was left behind: the command reports it as a failure, not as bad input.
        KeyFileError::Io {
            path: failed,
            source,
        } => Failure::Failed(format!("{}: {source}", failed.display())),
        other => failure(other),
    })?;
    outln!(
        "wrote a new sealing key with key id {id} to {} (mode 0600)",
        path.display()
    );
    Ok(())
}
