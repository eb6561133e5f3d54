//! Brute-force protection: consecutive failures lock a customer out for a doubling time.

use serde::{Deserialize, Serialize};

use crate::UnixTime;

/// When failed attempts lock a customer out, and for how long.
///
/// After `free_failures` consecutive failures (TOTP and backup codes together) every further failure
/// locks the customer for a time that starts at `base_delay_secs` and doubles per failure, capped at
/// `max_delay_secs`. The defaults (5 failures, 30 s doubling to 1 h) let through at most about a dozen
/// guesses in the first hour and fewer after it, far under the 100 an hour of NIST SP 800-63B 5.2.2 and
/// OWASP ASVS 2.2.1; RFC 4226 section 7.3 asks that this hold across sessions, which it does because the
/// counter lives in the stored record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockoutRule {
    /// Consecutive failures allowed before the first lockout.
    pub free_failures: u32,
    /// The first lockout's length, in seconds.
    pub base_delay_secs: u64,
    /// The longest lockout, in seconds.
    pub max_delay_secs: u64,
}

impl Default for LockoutRule {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay_secs: 30,
            max_delay_secs: 3600,
        }
    }
}

impl LockoutRule {
    /// How long the lockout after `consecutive` failures lasts, if there is one.
    #[must_use]
    pub fn delay_after(&self, consecutive: u32) -> Option<u64> {
        let beyond = consecutive.checked_sub(self.free_failures.max(1))?;
        // 2^beyond, saturating: past 63 doublings every cap has long been reached.
        let factor = 1u64.checked_shl(beyond).unwrap_or(u64::MAX);
        Some(
            self.base_delay_secs
                .saturating_mul(factor)
                .min(self.max_delay_secs),
        )
    }
}

/// The failure count and lockout a customer record carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Failures {
    consecutive: u32,
    locked_until: Option<UnixTime>,
}

impl Failures {
    /// Consecutive failed attempts since the last success or reset.
    #[must_use]
    pub const fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// Until when attempts are refused, if that is later than `now`.
    #[must_use]
    pub fn locked_at(&self, now: UnixTime) -> Option<UnixTime> {
        self.locked_until.filter(|until| *until > now)
    }

    /// The count after one more failure at `now`, with the lockout it earns under `rule`.
    #[must_use]
    pub(crate) fn after_failure(self, rule: &LockoutRule, now: UnixTime) -> Self {
        let consecutive = self.consecutive.saturating_add(1);
        let locked_until = rule
            .delay_after(consecutive)
            .map(|delay| now.saturating_add(delay));
        Self {
            consecutive,
            locked_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_free_failures_then_30_s_doubling_to_an_hour() {
        let rule = LockoutRule::default();
        let delays: alloc::vec::Vec<_> = (1..=14).map(|n| rule.delay_after(n)).collect();
        assert_eq!(
            delays,
            [
                None,
                None,
                None,
                None,
                Some(30),
                Some(60),
                Some(120),
                Some(240),
                Some(480),
                Some(960),
                Some(1920),
                Some(3600),
                Some(3600),
                Some(3600)
            ]
        );
        assert_eq!(rule.delay_after(u32::MAX), Some(3600));
    }

    #[test]
    fn the_rule_allows_far_fewer_than_100_failures_an_hour() {
        // An attacker who retries the moment each lockout ends, for a day.
        let rule = LockoutRule::default();
        let mut failures = Failures::default();
        let mut now = UnixTime::from_secs(1_000_000);
        let mut attempts_at = alloc::vec::Vec::new();
        while now.as_secs() < 1_000_000 + 86_400 {
            attempts_at.push(now.as_secs());
            failures = failures.after_failure(&rule, now);
            now = failures.locked_at(now).unwrap_or(now);
        }
        for (i, start) in attempts_at.iter().enumerate() {
            let in_hour = attempts_at[i..]
                .iter()
                .take_while(|t| **t < start + 3600)
                .count();
            assert!(in_hour < 100, "{in_hour} failures in the hour from {start}");
        }
        assert!(
            attempts_at.len() < 40,
            "{} failures in a day",
            attempts_at.len()
        );
    }
}
