//! Files that hold a secret (`mfa qr --output`, `mfa admin keys generate`): created readable by the
//! owner only, never written through a symlink or into a file someone else made, and durable once
//! the command reports success.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::Failure;

/// How many temporary names [`write_private`] tries before it gives up (a clash is 1 in 2^64).
const TEMP_TRIES: usize = 4;

/// Writes a file readable by its owner only at `path`.
///
/// Without `force`, anything already at `path` (a file, a symlink, even a dangling one) is refused:
/// `create_new` never follows a final symlink, so the secret cannot land where a link points, nor
/// in an existing file whose mode lets others read it. With `force`, the file is written under a
/// temporary name next to `path`, synced, and renamed over it: the rename replaces whatever is at
/// `path` (a symlink itself, not what it points to), so the result is always a new file of mode 0600
/// that we own, and a crash leaves the old file or the new one, never half of one.
pub(crate) fn write_private(
    path: &Path,
    existing: Existing,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), Failure> {
    let shown = path.display();
    let fail = |error: io::Error| Failure::Input(format!("{shown}: {error}"));
    if existing == Existing::Refuse {
        let file = create_private(path).map_err(|error| {
            if error.kind() == io::ErrorKind::AlreadyExists {
                Failure::Input(format!(
                    "{shown} exists: refusing to overwrite it without --force"
                ))
            } else {
                fail(error)
            }
        })?;
        return fill(file, write, Sync::No).map_err(|error| {
            // The file is ours (just created): leave no half-written one behind.
            let _ = std::fs::remove_file(path);
            fail(error)
        });
    }
    let (temp, file) = create_temp(path).map_err(fail)?;
    let written = fill(file, write, Sync::Yes).and_then(|()| std::fs::rename(&temp, path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(fail(error));
    }
    sync_parent(path).map_err(Failure::Failed)
}

/// Syncs the directory that holds `path`, after a file was created or renamed there
/// ([`mfa_ops::files::sync_parent`]); the error names the directory.
pub(crate) fn sync_parent(path: &Path) -> Result<(), String> {
    mfa_ops::files::sync_parent(path)
        .map_err(|(dir, error)| format!("cannot sync the directory {}: {error}", dir.display()))
}

/// Creates `path`, which must not exist, readable and writable by its owner only.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    mfa_ops::files::create_private(path)
}

/// A new private file next to `path`, under a random name (`.NAME.HEX.tmp`) that no one can have
/// prepared for us: `create_new` refuses a name that exists, and another is tried.
fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let mut last = None;
    for _ in 0..TEMP_TRIES {
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(format!(".{:016x}.tmp", rand::random::<u64>()));
        let temp = path.with_file_name(temp);
        match create_private(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name was free")))
}

/// What [`write_private`] does with a file already at its path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Refuse it (the default).
    Refuse,
    /// Replace it with a new file (`--force`).
    Replace,
}

/// Whether [`fill`] syncs the file to disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    Yes,
    No,
}

/// Writes through a buffer, flushes, and syncs the file to disk if asked.
fn fill(
    file: File,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    sync: Sync,
) -> io::Result<()> {
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    out.flush()?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    if sync == Sync::Yes {
        file.sync_all()?;
    }
    Ok(())
}
