//! What the code under test logs ([`Logs`]), for tests that check a failure is logged once, with
//! the right names and without a secret.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::subscriber::DefaultGuard;

/// The `tracing` output on this thread, from [`Logs::capture`] until dropped. A
/// `#[tokio::test]` runs on a current-thread runtime by default, so every task of the test logs
/// here; another thread's logs are not seen.
pub struct Logs {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: DefaultGuard,
}

impl Logs {
    /// Starts capturing (plain text, no colours, no times, every level).
    #[must_use]
    pub fn capture() -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&lines);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Writer(Arc::clone(&writer)))
            .finish();
        Self {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Everything logged since the start or the last [`Logs::clear`].
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Forgets what was logged so far.
    pub fn clear(&self) {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many ERROR lines name every one of `words`.
    #[must_use]
    pub fn errors_naming(&self, words: &[&str]) -> usize {
        self.text()
            .lines()
            .filter(|line| line.contains("ERROR") && words.iter().all(|word| line.contains(word)))
            .count()
    }
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
