//! Temporary database files for the tests: a unique name under the system's temporary directory,
//! removed (with the write-ahead log and shared-memory files beside it) when dropped.

#![allow(dead_code, reason = "each test file uses part of this module")]
#![allow(unreachable_pub, reason = "a module shared by test crates")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A path for a database file that does not exist yet; the files are removed on drop.
pub struct TempDb {
    path: PathBuf,
}

impl TempDb {
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "mfa-sqlite-{label}-{}-{n}-{nanos}.db",
            std::process::id()
        ));
        let db = Self { path };
        db.remove();
        db
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database file and the files SQLite keeps beside it.
    pub fn files(&self) -> [PathBuf; 3] {
        let with = |suffix: &str| {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        [self.path.clone(), with("-wal"), with("-shm")]
    }

    fn remove(&self) {
        for file in self.files() {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}
