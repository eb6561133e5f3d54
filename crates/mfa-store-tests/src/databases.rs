//! Where the tests' databases live: a temporary SQLite file ([`TempDb`]), and the PostgreSQL test
//! database named by `MFA_TEST_POSTGRES_URL` ([`postgres_url`]) with a fresh schema per test
//! ([`fresh_schema`]). Without the URL the PostgreSQL tests say they skipped and pass, unless
//! `MFA_REQUIRE_POSTGRES=1` makes that a failure.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that names the test database.
pub const URL: &str = "MFA_TEST_POSTGRES_URL";
/// The variable that turns a missing database into a failure.
pub const REQUIRE: &str = "MFA_REQUIRE_POSTGRES";

/// The test database's connection string, or `None` (after saying so) when the tests must skip.
#[must_use]
pub fn postgres_url() -> Option<String> {
    match std::env::var(URL) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var(REQUIRE).as_deref() != Ok("1"),
                "{REQUIRE}=1 but {URL} is not set: the PostgreSQL tests cannot run"
            );
            // Written to the real stderr, past the test harness's capture, so the skip is visible;
            // once per test binary.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {URL} is not set, so the PostgreSQL tests did not run \
                     (set {REQUIRE}=1 to fail instead)"
                );
            });
            None
        }
    }
}

/// A schema name no other test (in this process or another) uses.
#[must_use]
pub fn fresh_schema(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!("mfa_test_{label}_{}_{n}_{nanos}", std::process::id())
}

/// A path for a database file that does not exist yet; the files are removed on drop.
pub struct TempDb {
    path: PathBuf,
}

impl TempDb {
    /// A fresh path for the test `label`.
    #[must_use]
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "mfa-test-{label}-{}-{n}-{nanos}.db",
            std::process::id()
        ));
        let db = Self { path };
        db.remove();
        db
    }

    /// The database file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database file and the files SQLite keeps beside it.
    #[must_use]
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
