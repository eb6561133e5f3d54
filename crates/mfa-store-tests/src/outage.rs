//! The tests only a real database shows: the database goes away in the middle of a request, and
//! comes back.
//!
//! What "goes away" means is the adapter's: for SQLite, another process holding the write lock past
//! the busy timeout, or a full disk; for PostgreSQL, the server terminating the connections and
//! refusing new ones for a while. The adapter implements [`Outage`] and calls
//! [`requests_fail_cleanly_while_the_database_is_away`] with a store and its outage; the checks are
//! the same for every store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mfa_core::{LoginStep, ManualClock, Refusal, Service, ServiceError, Store};
use rand_chacha::ChaCha20Rng;

use crate::T0;
use crate::fixture::{self, Accepted, Enrolled, acme, at_step};
use crate::hooks::{Before, Call, Hooked, HookedError, Hooks};

/// Takes the database away from a store that stays open on it, and brings it back.
pub trait Outage: Send + Sync {
    /// Makes the database unusable for the store under test, now and until [`end`](Self::end): a
    /// lock held by another process, a full disk, connections terminated and refused... Requests
    /// may then fail, but must fail with a typed error within the test's deadline.
    fn begin(&self) -> impl Future<Output = ()> + Send;

    /// Makes the database usable again. The store must serve the next request without being
    /// reopened.
    fn end(&self) -> impl Future<Output = ()> + Send;
}

/// How many sign-ins a cycle tries while the database is away, waiting for one to fail (a full disk
/// still takes writes that fit in the pages it has).
const MAX_SIGN_INS: usize = 500;

/// When the database goes away.
#[derive(Clone, Copy, Debug)]
enum Away {
    /// Between a request's reads and its write: the outage begins when the store is asked to write.
    MidRequest,
    /// Before the request starts.
    BeforeRequest,
}

/// Starts the outage when the store is asked to write, once armed: the request has loaded its
/// records and decided, and the database goes away just as it writes.
struct Interrupt<O> {
    outage: Arc<O>,
    armed: AtomicBool,
}

impl<O: Outage> Hooks for Interrupt<O> {
    async fn before(&self, call: Call) -> Before {
        if call.writes() && self.armed.swap(false, Ordering::SeqCst) {
            self.outage.begin().await;
        }
        Before::Proceed
    }
}

type Interrupting<S, O> = Hooked<S, Interrupt<O>>;

type Mfa<S, O> = Service<Arc<Interrupting<S, O>>, ManualClock, ChaCha20Rng>;

/// What a cycle carries over to the next.
struct Alice {
    enrolled: Enrolled,
    next_step: u64,
    backup_used: usize,
    /// The last audit sequence number checked.
    seen: u64,
}

/// The database goes away (as `outage` makes it) while a [`Service`] over `store` serves
/// requests, twice: once between a request's reads and its write, once before a request starts.
/// Each time the service, with its default retries, serves sign-ins until one fails, then a backup
/// code, a wrong code and a read; then the database comes back. Checked:
///
/// - every request ends within `deadline` (a lock held forever must not hang a sign-in forever),
///   without a panic, either as it would have anyway or with a typed store error
///   ([`ServiceError::Store`] or [`ServiceError::Contended`]), never refused by the rules for a
///   valid code; and at least one request fails (or the outage took nothing away);
/// - nothing is half-written: the audit log holds exactly the events of the requests that
///   succeeded, the failure counter counts only the failed attempt that was logged, the last
///   sign-in that succeeded is stored as used, and the code of the sign-in that failed is accepted
///   once the database is back (its record did not move), as is the backup code if it failed;
/// - the next requests work once the database is back, on the same store, not reopened.
///
/// Returns every error the service gave while the database was away, for the adapter to check
/// they are the ones it expects (say [`ServiceError::Contended`] for a lock held past the busy
/// timeout).
pub async fn requests_fail_cleanly_while_the_database_is_away<S, O>(
    store: S,
    outage: O,
    deadline: Duration,
) -> Vec<ServiceError<S::Error>>
where
    S: Store + 'static,
    O: Outage + 'static,
{
    let outage = Arc::new(outage);
    let store = Arc::new(Hooked {
        store,
        hooks: Interrupt {
            outage: Arc::clone(&outage),
            armed: AtomicBool::new(false),
        },
    });
    let (mfa, clock) = fixture::service(Arc::clone(&store), T0, 1);
    fixture::switch_on(&mfa).await;
    let mut alice = Alice {
        enrolled: Enrolled::new(&mfa, &clock, "alice").await,
        next_step: fixture::first_step() + 1,
        backup_used: 0,
        seen: 0,
    };
    alice.seen = fixture::audit(&*store).await.last().map_or(0, |e| e.seq);
    let mut errors = Vec::new();
    for away in [Away::MidRequest, Away::BeforeRequest] {
        cycle(
            &mfa,
            &clock,
            &store,
            &*outage,
            &mut alice,
            away,
            deadline,
            &mut errors,
        )
        .await;
    }
    errors
}

/// Runs `request` and returns its outcome, or fails the test if it takes longer than `deadline`.
async fn within<T>(deadline: Duration, what: &str, request: impl Future<Output = T>) -> T {
    tokio::time::timeout(deadline, request)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {deadline:?} while the database was away"))
}

/// Keeps a store's error (or a lost race that lasted all the retries), failing the test on any
/// other: a valid request refused by the rules would mean the outage changed the records.
fn store_failure<E: core::error::Error + 'static>(
    error: ServiceError<HookedError<E>>,
    what: &str,
    errors: &mut Vec<ServiceError<E>>,
) {
    assert!(
        matches!(error, ServiceError::Store(_) | ServiceError::Contended),
        "{what} while the database was away: {error:?}, not a store error"
    );
    errors.push(error.map_store(|error| match error {
        HookedError::Store(error) => error,
        // `Interrupt` only ever lets calls through.
        HookedError::Injected(error) => panic!("nothing is injected here: {error}"),
    }));
}

#[allow(
    clippy::too_many_arguments,
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom"
)]
async fn cycle<S: Store + 'static, O: Outage + 'static>(
    mfa: &Mfa<S, O>,
    clock: &ManualClock,
    store: &Interrupting<S, O>,
    outage: &O,
    alice: &mut Alice,
    away: Away,
    deadline: Duration,
    errors: &mut Vec<ServiceError<S::Error>>,
) {
    let (org, id, session) = (acme(), alice.enrolled.id.clone(), alice.enrolled.session);
    match away {
        Away::MidRequest => store.hooks.armed.store(true, Ordering::SeqCst),
        Away::BeforeRequest => outage.begin().await,
    }

    // Sign-ins, until one fails.
    let mut accepted = Vec::new();
    let mut failed = None;
    for _ in 0..MAX_SIGN_INS {
        let step = alice.next_step;
        alice.next_step += 1;
        clock.set(at_step(step, 3));
        let code = alice.enrolled.code(step);
        match within(
            deadline,
            "a sign-in",
            mfa.verify_totp(&org, &id, &session, &code),
        )
        .await
        {
            Ok(_) => accepted.push(step),
            Err(error) => {
                store_failure(error, "a valid TOTP code", errors);
                failed = Some(step);
                break;
            }
        }
    }
    assert!(
        !store.hooks.armed.load(Ordering::SeqCst),
        "{away:?}: no write reached the store"
    );
    let failed = failed.unwrap_or_else(|| {
        panic!("{away:?}: {MAX_SIGN_INS} sign-ins succeeded: the outage took nothing away")
    });

    // A backup code.
    let index = alice.backup_used;
    let backup = alice.enrolled.backup[index].clone();
    let left = u32::from(fixture::BACKUP_CODES) - u32::try_from(index).expect("small") - 1;
    clock.set(at_step(alice.next_step, 5));
    let backup_accepted = match within(
        deadline,
        "a backup code",
        mfa.verify_backup_code(&org, &id, &session, &backup),
    )
    .await
    {
        Ok(done) => {
            assert_eq!(done.remaining, left);
            true
        }
        Err(error) => {
            store_failure(error, "a valid backup code", errors);
            false
        }
    };

    // A wrong code: a failure to count, if the database takes it.
    let wrong_step = alice.next_step;
    alice.next_step += 1;
    clock.set(at_step(wrong_step, 9));
    let wrong = alice.enrolled.wrong_code(wrong_step);
    let wrong_logged = match within(
        deadline,
        "a wrong code",
        mfa.verify_totp(&org, &id, &session, &wrong),
    )
    .await
    {
        Err(ServiceError::Refused(Refusal::WrongCode)) => true,
        Err(error) => {
            store_failure(error, "a wrong code", errors);
            false
        }
        Ok(_) => panic!("a wrong code was accepted"),
    };

    // A read.
    match within(deadline, "a read", mfa.login_step(&org, &id)).await {
        Ok(step) => assert!(matches!(step, LoginStep::Challenge(_)), "{step:?}"),
        Err(error) => store_failure(error, "a read", errors),
    }

    outage.end().await;
    let context = format!(
        "{away:?}: {} sign-ins accepted, then one failed; backup code accepted: \
         {backup_accepted}; wrong code logged: {wrong_logged}",
        accepted.len()
    );
    println!("{context}");

    // The log holds exactly what succeeded.
    let events = fixture::audit(store).await;
    fixture::assert_no_acceptance_twice(&events);
    let logged: Vec<_> = events
        .iter()
        .filter(|stored| stored.seq > alice.seen)
        .map(|stored| (stored.event.kind_name(), fixture::acceptance(stored)))
        .collect();
    let mut expected: Vec<_> = accepted
        .iter()
        .map(|&step| {
            (
                "totp_accepted",
                Some(("alice".to_owned(), Accepted::Totp(step))),
            )
        })
        .collect();
    if backup_accepted {
        expected.push((
            "backup_code_accepted",
            Some(("alice".to_owned(), Accepted::Backup(left))),
        ));
    }
    if wrong_logged {
        expected.push(("attempt_rejected", None));
    }
    assert_eq!(logged, expected, "the log after the outage: {context}");
    let status = mfa
        .status(&org, &id)
        .await
        .expect("the database is back: status")
        .customer;
    assert_eq!(
        status.failures,
        u32::from(wrong_logged),
        "failures counted: {context}"
    );

    // The last sign-in that succeeded is stored as used...
    if let Some(&last) = accepted.last() {
        clock.set(at_step(last, 3));
        let again = mfa
            .verify_totp(&org, &id, &session, &alice.enrolled.code(last))
            .await;
        assert!(
            matches!(again, Err(ServiceError::Refused(Refusal::ReplayedCode))),
            "the code accepted at step {last} tried again: {again:?}: {context}"
        );
    }
    // ...and the one that failed left nothing behind: its code works now, on the same store.
    clock.set(at_step(failed, 3));
    let retried = mfa
        .verify_totp(&org, &id, &session, &alice.enrolled.code(failed))
        .await;
    assert!(
        retried.is_ok(),
        "the code that failed during the outage, tried again once the database is back: \
         {retried:?}: {context}"
    );
    clock.set(at_step(alice.next_step, 5));
    let backup_again = mfa.verify_backup_code(&org, &id, &session, &backup).await;
    if backup_accepted {
        assert!(
            matches!(
                backup_again,
                Err(ServiceError::Refused(Refusal::UsedBackupCode))
            ),
            "the backup code accepted during the outage, again: {backup_again:?}: {context}"
        );
    } else {
        assert_eq!(
            backup_again.map(|done| done.remaining).ok(),
            Some(left),
            "the backup code that failed during the outage, once it is back: {context}"
        );
    }
    alice.backup_used += 1;

    // A fresh sign-in.
    let step = alice.next_step;
    alice.next_step += 1;
    clock.set(at_step(step, 3));
    let _passed = mfa
        .verify_totp(&org, &id, &session, &alice.enrolled.code(step))
        .await
        .unwrap_or_else(|error| panic!("a fresh sign-in once the database is back: {error}"));
    let events = fixture::audit(store).await;
    fixture::assert_no_acceptance_twice(&events);
    alice.seen = events.last().map_or(alice.seen, |e| e.seq);
}
