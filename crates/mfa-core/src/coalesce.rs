//! Refusals that change no record, coalesced: one event of a kind per customer and window.
//!
//! Malformed text, attempts while locked out, an expired enrollment's code and the code just
//! accepted sent again change no record, so nothing bounds them but the caller's patience: 300
//! requests of `{"code":"x"}` used to append 300 durable rows. Here the first refusal of each kind
//! (factor and reason) for a customer in a window is logged as its own event, as before; the repeats
//! after it in that window are counted in memory, and the count is logged as one
//! [`RejectionsCoalesced`](crate::EventKind::RejectionsCoalesced) event when that kind comes again
//! after the window. Refusals that count toward lockout are never coalesced: the lockout bounds
//! them (at most 100 an hour).
//!
//! The first of each kind is always durable; the count of the repeats lives in this node's memory
//! until it is written: when that kind comes again after the window, or with the next refusal of
//! any customer once the window is over (closed windows are swept out once a window). A crash can
//! lose a count, never a first refusal. Memory is bounded:
//! when [`MAX_TRACKED`] windows are open and none has closed, a refusal is simply logged on its own.

use alloc::vec::Vec;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::{CustomerId, Event, EventKind, Factor, OrgId, Rejection, UnixTime};

/// How long a window of coalesced refusals lasts (one minute).
pub const COALESCE_WINDOW_SECS: u64 = 60;

/// The most windows tracked at once.
const MAX_TRACKED: usize = 100_000;

type Key = (OrgId, CustomerId, Factor, Rejection);

#[derive(Clone, Copy)]
struct Open {
    first: UnixTime,
    last: UnixTime,
    repeats: u32,
}

#[derive(Default)]
struct Windows {
    open: HashMap<Key, Open>,
    /// When closed windows were last swept out, so a full table is swept at most once a second.
    swept: u64,
}

/// The open windows of one service.
#[derive(Default)]
pub(crate) struct Coalescer {
    windows: Mutex<Windows>,
}

impl Coalescer {
    /// The events to append for the refusals in `events` (which change no record): each refusal
    /// that opens a window, and the count of any window that closed, in order; repeats inside an
    /// open window are counted instead.
    pub(crate) fn admit(&self, events: Vec<Event>, now: UnixTime) -> Vec<Event> {
        // Each change under the lock is one insert, update or sweep that completes before anything
        // can panic: a poisoned lock still guards whole windows.
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(events.len());
        // Windows that closed are written out at least once a window, with whichever refusal
        // comes next (of any customer), so the count of a customer's repeats is not left in
        // memory for as long as that customer stays away.
        if now.as_secs() >= windows.swept.saturating_add(COALESCE_WINDOW_SECS) {
            out.extend(windows.sweep(now));
        }
        for event in events {
            let (EventKind::AttemptRejected { factor, reason, .. }, Some(customer)) =
                (&event.kind, &event.customer)
            else {
                out.push(event);
                continue;
            };
            let key = (event.org.clone(), customer.clone(), *factor, *reason);
            match windows.open.get_mut(&key) {
                Some(open) if now < open.first.saturating_add(COALESCE_WINDOW_SECS) => {
                    open.repeats = open.repeats.saturating_add(1);
                    open.last = now;
                }
                Some(open) => {
                    let closed = *open;
                    *open = Open {
                        first: now,
                        last: now,
                        repeats: 0,
                    };
                    out.extend(summary(&key, closed, now));
                    out.push(event);
                }
                None => {
                    if windows.open.len() >= MAX_TRACKED {
                        out.extend(windows.sweep(now));
                    }
                    if windows.open.len() < MAX_TRACKED {
                        windows.open.insert(
                            key,
                            Open {
                                first: now,
                                last: now,
                                repeats: 0,
                            },
                        );
                    }
                    out.push(event);
                }
            }
        }
        out
    }
}

impl Windows {
    /// Drops the closed windows, with the counts of those that had repeats (at most once a second).
    fn sweep(&mut self, now: UnixTime) -> Vec<Event> {
        if self.swept == now.as_secs() {
            return Vec::new();
        }
        self.swept = now.as_secs();
        let mut counts = Vec::new();
        self.open.retain(|key, open| {
            let live = now < open.first.saturating_add(COALESCE_WINDOW_SECS);
            if !live {
                counts.extend(summary(key, *open, now));
            }
            live
        });
        counts
    }
}

/// The event for a closed window's repeats, if it had any, written `now`. It is stamped with the
/// time it is written, not the time of the last repeat it counts (its `from` and `to` say when
/// those happened): an event stamped earlier than the events already logged before it would sit
/// out of time order, and an export that reads from a time on (`--since`) could miss it.
fn summary((org, customer, factor, reason): &Key, closed: Open, now: UnixTime) -> Option<Event> {
    (closed.repeats > 0).then(|| Event {
        at: now,
        org: org.clone(),
        customer: Some(customer.clone()),
        kind: EventKind::RejectionsCoalesced {
            factor: *factor,
            reason: *reason,
            count: closed.repeats,
            from: closed.first,
            to: closed.last,
        },
    })
}
