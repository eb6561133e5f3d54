//! Password guessing: after a few consecutive wrong passwords for one email, sign-ins for it wait,
//! for a time that doubles per further failure (mfa-core's lockout rule, reused).
//!
//! An attempt is claimed with [`Throttle::begin`] before its password is checked, and counted as a
//! failure from that moment: checking a password (argon2) is slow, and a count kept only once the
//! check is over let every request of a burst past the lockout while the first were still hashing.
//! So at most the rule's free failures are checked, in flight or done, before sign-ins for the email
//! must wait; a right password then clears the count ([`Attempt::succeeded`]), a wrong one keeps it
//! ([`Attempt::failed`]), and an attempt that ends with no answer (a store failed, the client went
//! away) gives its failure back, since nobody learnt anything from it.
//!
//! The table holds a bounded number of emails. When it is full, an email that is not in it is
//! refused (a wait, `429`), not let through uncounted: failing open would hand an attacker who
//! filled the table unlimited guesses. To make room, only entries whose count no longer matters
//! much are dropped: not locked now, no attempt in flight, and no failure for as long as the
//! longest lockout (`max_delay_secs`, an hour by default). Forgetting such a count lets its email
//! start over with its free failures, at most about a dozen guesses per two hours with the
//! defaults; keeping every count until a success would let a table full of live guesses refuse
//! new emails for good. Finding those entries takes a pass over the table, made at most once per
//! second: until the earliest entry can go, new emails are refused without a pass.
//!
//! In memory, per process: enough for the example. MFA's own failure counters are stored with the
//! customer's record and hold across nodes; a production host keeps this one in its shared store
//! too, sized for its accounts.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use mfa_core::machine::LockoutRule;

/// Emails tracked at once, by default.
pub(crate) const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    /// Consecutive failures, the attempts in flight included.
    failures: u32,
    /// Attempts claimed and not yet concluded.
    in_flight: u32,
    locked_until: u64,
    /// When the last attempt was claimed.
    last_failure: u64,
    /// Which entry of the email this is: attempts claimed on one that a success removed leave the
    /// next one alone.
    generation: u64,
}

/// Why an attempt may not go ahead: both wait this many seconds (`Retry-After`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Too many wrong passwords for this email.
    Locked(u64),
    /// The table is full of counts that must be kept, and this email is not in it.
    Full(u64),
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Entry>,
    /// When the full table is next worth a pass for entries to drop: no entry can go before.
    next_sweep: u64,
    /// The generation of the next entry created.
    next_generation: u64,
}

impl Table {
    /// The entry of an attempt's email, if it is still the one the attempt was claimed on.
    fn entry_of(&mut self, attempt: &Attempt<'_>) -> Option<&mut Entry> {
        self.entries
            .get_mut(&attempt.email)
            .filter(|entry| entry.generation == attempt.generation)
    }
}

/// Consecutive password failures per email.
#[derive(Debug)]
pub(crate) struct Throttle {
    rule: LockoutRule,
    max_tracked: usize,
    table: Mutex<Table>,
}

/// A password check that was let through: conclude it with [`Attempt::failed`] or
/// [`Attempt::succeeded`]. Dropped without either, it gives its failure back.
#[derive(Debug)]
#[must_use = "an attempt that is dropped gives its failure back"]
pub(crate) struct Attempt<'a> {
    throttle: &'a Throttle,
    email: String,
    generation: u64,
    /// The lockout before the claim, and the one it set, to undo it if nothing changed it since.
    locked_before: u64,
    locked_by_claim: u64,
    concluded: bool,
}

impl Throttle {
    /// A throttle under `rule` that tracks at most `max_tracked` emails at once.
    pub(crate) fn new(rule: LockoutRule, max_tracked: usize) -> Self {
        Self {
            rule,
            max_tracked: max_tracked.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Each change is one insert, remove or entry update: nothing is left half-done by a panic.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `entry` may be dropped at `now` to make room: see the module's documentation.
    fn droppable(&self, entry: &Entry, now: u64) -> bool {
        entry.in_flight == 0 && entry.locked_until <= now && now >= self.drop_time(entry)
    }

    /// The earliest time `entry` could be dropped, if nothing happens to it meanwhile.
    fn drop_time(&self, entry: &Entry) -> u64 {
        entry
            .last_failure
            .saturating_add(self.rule.max_delay_secs)
            .max(entry.locked_until)
    }

    /// Claims an attempt for `email` at `now`, counting it as a failure until it is concluded; or
    /// says how long to wait.
    pub(crate) fn begin(&self, email: &str, now: u64) -> Result<Attempt<'_>, Refused> {
        let mut table = self.table();
        if let Some(entry) = table.entries.get(email)
            && entry.locked_until > now
        {
            return Err(Refused::Locked(entry.locked_until.saturating_sub(now)));
        }
        if !table.entries.contains_key(email) && table.entries.len() >= self.max_tracked {
            self.make_room(&mut table, now)?;
        }
        let generation = table.next_generation;
        table.next_generation = generation.wrapping_add(1);
        let entry = table
            .entries
            .entry(email.to_owned())
            .or_insert_with(|| Entry {
                generation,
                ..Entry::default()
            });
        let locked_before = entry.locked_until;
        entry.failures = entry.failures.saturating_add(1);
        entry.in_flight = entry.in_flight.saturating_add(1);
        entry.last_failure = now;
        if let Some(delay) = self.rule.delay_after(entry.failures) {
            entry.locked_until = now.saturating_add(delay);
        }
        Ok(Attempt {
            throttle: self,
            email: email.to_owned(),
            generation: entry.generation,
            locked_before,
            locked_by_claim: entry.locked_until,
            concluded: false,
        })
    }

    /// Drops the entries that may go, at most once a second; refuses when none may.
    fn make_room(&self, table: &mut Table, now: u64) -> Result<(), Refused> {
        if now >= table.next_sweep {
            table.entries.retain(|_, entry| !self.droppable(entry, now));
            // Nothing can go before the earliest of the rest; and not twice in one second.
            table.next_sweep = table
                .entries
                .values()
                .map(|entry| self.drop_time(entry))
                .min()
                .unwrap_or(now)
                .max(now.saturating_add(1));
        }
        if table.entries.len() < self.max_tracked {
            Ok(())
        } else {
            Err(Refused::Full(table.next_sweep.saturating_sub(now).max(1)))
        }
    }

    /// How many emails are tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().entries.len()
    }
}

impl Attempt<'_> {
    /// A wrong password: the failure it was counted as stays.
    pub(crate) fn failed(mut self) {
        self.concluded = true;
        if let Some(entry) = self.throttle.table().entry_of(&self) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
    }

    /// A right password: the count starts over (the attempts still in flight for the email were
    /// checked already or will be against a count of zero; they conclude without effect).
    pub(crate) fn succeeded(mut self) {
        self.concluded = true;
        let mut table = self.throttle.table();
        if table.entry_of(&self).is_some() {
            table.entries.remove(&self.email);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.concluded {
            return;
        }
        // No answer was given: the failure is given back, and the lockout it set undone unless
        // another attempt changed it since.
        let mut table = self.throttle.table();
        let Some(entry) = table.entry_of(self) else {
            return;
        };
        entry.failures = entry.failures.saturating_sub(1);
        entry.in_flight = entry.in_flight.saturating_sub(1);
        if entry.locked_until == self.locked_by_claim {
            entry.locked_until = self.locked_before;
        }
        if entry.failures == 0 && entry.in_flight == 0 {
            table.entries.remove(&self.email);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrong(throttle: &Throttle, email: &str, now: u64) {
        throttle.begin(email, now).unwrap().failed();
    }

    #[test]
    fn five_free_failures_then_doubling_waits() {
        let throttle = Throttle::new(LockoutRule::default(), MAX_TRACKED);
        for _ in 0..5 {
            wrong(&throttle, "a", 100);
        }
        assert_eq!(throttle.begin("a", 100).unwrap_err(), Refused::Locked(30));
        assert_eq!(throttle.begin("a", 129).unwrap_err(), Refused::Locked(1));
        wrong(&throttle, "a", 130);
        assert_eq!(throttle.begin("a", 130).unwrap_err(), Refused::Locked(60));
        assert!(throttle.begin("b", 130).is_ok(), "per email");
        throttle.begin("a", 190).unwrap().succeeded();
        for _ in 0..5 {
            wrong(&throttle, "a", 190);
        }
        assert!(throttle.begin("a", 190).is_err(), "a success starts over");
    }

    #[test]
    fn attempts_count_when_they_start_and_an_unanswered_one_gives_its_failure_back() {
        let throttle = Throttle::new(LockoutRule::default(), MAX_TRACKED);
        // Five claimed at once, none concluded: the sixth already waits.
        let attempts: Vec<_> = (0..5).map(|_| throttle.begin("a", 100).unwrap()).collect();
        assert_eq!(throttle.begin("a", 100).unwrap_err(), Refused::Locked(30));
        // The fifth ends with no answer (a store failed): its failure and its lockout are undone.
        let mut attempts = attempts.into_iter();
        for attempt in attempts.by_ref().take(4) {
            attempt.failed();
        }
        drop(attempts);
        let fifth = throttle.begin("a", 100).unwrap();
        assert_eq!(throttle.begin("a", 100).unwrap_err(), Refused::Locked(30));
        fifth.succeeded();
        assert!(throttle.begin("a", 100).is_ok());
        // Nothing left behind by attempts that all gave their failure back.
        let throttle = Throttle::new(LockoutRule::default(), MAX_TRACKED);
        drop(throttle.begin("b", 100).unwrap());
        assert_eq!(throttle.len(), 0);
    }

    #[test]
    fn a_full_table_refuses_new_emails_and_keeps_the_counts_it_holds() {
        let rule = LockoutRule::default();
        let throttle = Throttle::new(rule, 3);
        // The victim, four wrong passwords in: one more and sign-ins for her wait.
        for _ in 0..4 {
            wrong(&throttle, "victim", 100);
        }
        wrong(&throttle, "x", 100);
        wrong(&throttle, "y", 101);
        // Full: a new email is refused, not let through uncounted, and nobody is dropped.
        for (n, now) in [100, 101, 500, 3699].into_iter().enumerate() {
            let refused = throttle.begin(&format!("new{n}"), now).unwrap_err();
            assert_eq!(refused, Refused::Full(3700 - now), "at {now}");
        }
        assert_eq!(throttle.len(), 3);
        wrong(&throttle, "victim", 3699);
        assert_eq!(
            throttle.begin("victim", 3699).unwrap_err(),
            Refused::Locked(30)
        );
        // An hour after its last failure, "x" may go to make room; the victim, failing since,
        // stays locked.
        throttle.begin("new", 3700).unwrap().failed();
        assert_eq!(throttle.len(), 3);
        assert!(matches!(
            throttle.begin("victim", 3700),
            Err(Refused::Locked(_))
        ));
        // An entry with an attempt in flight is never dropped, however old.
        let throttle = Throttle::new(rule, 1);
        let in_flight = throttle.begin("slow", 0).unwrap();
        assert!(matches!(
            throttle.begin("other", 10_000),
            Err(Refused::Full(_))
        ));
        in_flight.failed();
        // (The next pass over the full table is a second later.)
        assert!(throttle.begin("other", 10_001).is_ok());
    }
}
