//! Password guessing: after a few consecutive wrong passwords for one email, sign-ins for it wait,
//! for a time that doubles per further failure (mfa-core's lockout rule, reused).
//!
//! In memory, per process: enough for the example. MFA's own failure counters are stored with the
//! customer's record and hold across nodes; a production host keeps this one in its shared store
//! too.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use mfa_core::LockoutRule;

/// Emails tracked at once; past this, entries that lock nothing are dropped first.
const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    failures: u32,
    locked_until: u64,
}

/// Consecutive password failures per email.
#[derive(Debug)]
pub(crate) struct Throttle {
    rule: LockoutRule,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Throttle {
    pub(crate) fn new(rule: LockoutRule) -> Self {
        Self {
            rule,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Each change is one insert or remove: nothing is left half-done by a panic.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Seconds until `email` may try again, if it must wait.
    pub(crate) fn wait(&self, email: &str, now: u64) -> Option<u64> {
        let entries = self.entries();
        let entry = entries.get(email)?;
        (entry.locked_until > now).then(|| entry.locked_until.saturating_sub(now))
    }

    /// One more wrong password for `email`.
    pub(crate) fn failed(&self, email: &str, now: u64) {
        let mut entries = self.entries();
        if entries.len() >= MAX_TRACKED && !entries.contains_key(email) {
            entries.retain(|_, entry| entry.locked_until > now);
            if entries.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = entries.entry(email.to_owned()).or_default();
        entry.failures = entry.failures.saturating_add(1);
        if let Some(delay) = self.rule.delay_after(entry.failures) {
            entry.locked_until = now.saturating_add(delay);
        }
    }

    /// A right password for `email`: the count starts over.
    pub(crate) fn succeeded(&self, email: &str) {
        self.entries().remove(email);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_free_failures_then_doubling_waits() {
        let throttle = Throttle::new(LockoutRule::default());
        for _ in 0..4 {
            throttle.failed("a", 100);
            assert_eq!(throttle.wait("a", 100), None);
        }
        throttle.failed("a", 100);
        assert_eq!(throttle.wait("a", 100), Some(30));
        assert_eq!(throttle.wait("a", 129), Some(1));
        assert_eq!(throttle.wait("a", 130), None);
        throttle.failed("a", 130);
        assert_eq!(throttle.wait("a", 130), Some(60));
        assert_eq!(throttle.wait("b", 130), None, "per email");
        throttle.succeeded("a");
        assert_eq!(throttle.wait("a", 130), None);
    }
}
