//! Files that hold secrets (key files, databases, exported codes): created readable by their owner
//! only, never through a symlink or into a file someone else made, and durable once reported.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `path`, which must not exist (`create_new` never follows a final symlink), readable and
/// writable by its owner only.
///
/// # Errors
/// The I/O error; `AlreadyExists` when anything is at `path`.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Creates an empty file at `path` readable by its owner only, unless something is there already:
/// for a SQLite database, before SQLite first writes it (SQLite gives its `-wal` and `-shm` files
/// the same permissions).
///
/// # Errors
/// Any I/O error but the file existing.
pub fn ensure_private(path: &Path) -> io::Result<()> {
    match create_private(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Syncs the directory that holds `path`, after a file was created or renamed there. Syncing a file
/// makes its contents durable, not its name: without this, a power loss can take the new entry
/// away although the caller reported success.
///
/// # Errors
/// The I/O error, with the directory it concerns.
pub fn sync_parent(path: &Path) -> Result<(), (std::path::PathBuf, io::Error)> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        // A bare file name: its parent is the current directory.
        _ => Path::new("."),
    };
    sync_dir(dir).map_err(|error| (dir.to_path_buf(), error))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Elsewhere a directory cannot be opened as a file to be synced.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The mode bits of `file` that let users other than its owner in (0 when none do).
///
/// # Errors
/// The I/O error reading its metadata.
pub fn others_access(file: &File) -> io::Result<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(file.metadata()?.permissions().mode() & 0o077)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_new_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let file = create_private(&path).unwrap();
        assert_eq!(others_access(&file).unwrap(), 0);
        assert_eq!(
            create_private(&path).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        ensure_private(&path).unwrap();
        sync_parent(&path).unwrap();
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
            assert!(create_private(&link).is_err(), "never through a symlink");
            assert!(!dir.path().join("elsewhere").exists());
        }
    }
}
