#![doc = include_str!("../README.md")]
//!
//! The store conformance suite: one set of tests that every [`Store`] adapter runs from its own
//! `tests/`, as tower-sessions does for its session stores.
//!
//! ```ignore
//! // crates/mfa-sqlite/tests/conformance.rs
//! mfa_store_tests::conformance_suite!(async { mfa_sqlite::SqliteStore::open_in_memory().await.unwrap() });
//! ```
//!
//! The macro expands to one `#[tokio::test]` per check, each with a fresh store from the expression.
//! The checks cover the compare-and-swap contract of [`Store`], events written with their state (and
//! never without it), the audit log's order and filters, every transition through the [`Service`],
//! and many tasks racing to use one code (exactly one wins).
//!
//! Then the tests only a real database shows, for stores that other processes can open too:
//!
//! - [`processes`] ([`process_suite!`]): separate operating-system processes racing on one code
//!   (one wins), and a process killed with `SIGKILL` in the middle of a stream of sign-ins (no
//!   acceptance it reported is lost, none is logged twice, every used code stays used);
//! - [`outage`]: the database goes away in the middle of a request and comes back (a typed error
//!   within a deadline, nothing half-written, the next request works).

use std::sync::Arc;

use mfa_core::{
    Actor, CorruptRecord, CustomerId, Fault, KeyId, KeyRing, LoginStep, ManualClock, MfaSession,
    OrgId, OrgMfa, OrgPolicy, PassedBy, Refusal, SealingKey, Service, ServiceError, SessionCheck,
    Store, UnixTime,
    audit::{AuditExport, AuditQuery, Event, EventKind},
    machine::CustomerRecord,
    store::{DecodeError, Version, Written},
    uri::KeyUri,
};
use rand_chacha::ChaCha20Rng;

mod corrupt;
pub mod databases;
pub mod fixture;
mod hooks;
mod logs;
pub mod outage;
pub mod peers;
pub mod plaintext;
pub mod processes;
pub mod proxy;

pub use corrupt::{Garbage, Garbled};
pub use databases::{TempDb, fresh_schema, postgres_url};
pub use hooks::{Before, Call, Hooked, HookedError, Hooks};
pub use logs::Logs;
pub use outage::{Outage, requests_fail_cleanly_while_the_database_is_away};
pub use processes::ProcessStore;

/// Generates the conformance tests for a store; `$make` is an expression (usually an `async` block)
/// that gives a fresh, empty store each time it is evaluated.
///
/// - `conformance_suite!(make)`: every check, each a `#[tokio::test]` on a multi-thread runtime
///   of 4 workers;
/// - `conformance_suite!(optional make)`: `make` gives `Option<store>`, and `None` skips the test
///   (a database that is not configured on this machine; the expression says so itself);
/// - `conformance_suite!(runtime = current_thread, make)` (or `optional make`): every check on a
///   current-thread runtime, for a store with a path of its own there (the SQLite store sends
///   every call to its connection's thread).
#[macro_export]
macro_rules! conformance_suite {
    (runtime = current_thread, optional $make:expr) => {
        $crate::conformance_suite!(@list optional (flavor = "current_thread") $make);
    };
    (runtime = current_thread, $make:expr) => {
        $crate::conformance_suite!(@list required (flavor = "current_thread") $make);
    };
    (optional $make:expr) => {
        $crate::conformance_suite!(@list optional (flavor = "multi_thread", worker_threads = 4) $make);
    };
    ($make:expr) => {
        $crate::conformance_suite!(@list required (flavor = "multi_thread", worker_threads = 4) $make);
    };
    (@list $mode:ident $runtime:tt $make:expr) => {
        $crate::conformance_suite!(@tests $mode $runtime $make;
            absent_records_load_as_none,
            customer_writes_are_compare_and_swap,
            org_writes_are_compare_and_swap,
            events_are_written_with_their_record_and_never_without,
            audit_is_newest_first_filtered_and_paged,
            organisations_and_customers_are_isolated,
            the_whole_story_through_the_service,
            racing_writers_on_one_version_exactly_one_wins,
            racing_sign_ins_with_one_code_exactly_one_wins,
            racing_sign_ins_with_one_backup_code_exactly_one_wins,
            an_expected_version_for_an_absent_record_conflicts,
            racing_creators_exactly_one_wins,
            appended_events_are_logged_in_order,
            event_bytes_survive_the_store,
            loading_both_agrees_with_loading_each,
            exports_are_oldest_first_filtered_and_paged,
            secrets_are_found_and_counted_by_key,
            key_rotation_through_the_service_keeps_every_sign_in,
            corrupt_records_are_corruption_and_change_nothing,
        );
    };
    (@tests required $runtime:tt $make:expr; $($name:ident),* $(,)?) => {$(
        #[::tokio::test $runtime]
        async fn $name() {
            let store = $make.await;
            $crate::$name(store).await;
        }
    )*};
    (@tests optional $runtime:tt $make:expr; $($name:ident),* $(,)?) => {$(
        #[::tokio::test $runtime]
        async fn $name() {
            let Some(store) = $make.await else {
                return;
            };
            $crate::$name(store).await;
        }
    )*};
}

/// The start of every test's clock: 2026-01-01T00:00:00Z.
pub const T0: u64 = 1_767_225_600;

fn org(name: &str) -> OrgId {
    OrgId::new(name).expect("a valid id")
}

fn customer(name: &str) -> CustomerId {
    CustomerId::new(name).expect("a valid id")
}

fn event(org_id: &OrgId, customer_id: Option<&CustomerId>, by: &str) -> Event {
    Event {
        at: UnixTime::from_secs(T0),
        org: org_id.clone(),
        customer: customer_id.cloned(),
        kind: EventKind::Reset {
            by: Actor::new(by).expect("a name"),
        },
    }
}

fn all(customer_id: Option<&CustomerId>) -> AuditQuery {
    AuditQuery {
        customer: customer_id.cloned(),
        before_seq: None,
        limit: usize::MAX,
    }
}

/// A service over `store` with a manual clock at [`T0`], a fixed keyring and seeded RNG, and the
/// organisation `acme` switched on with fast backup-code hashing.
async fn service<S: Store>(store: S) -> (Service<S, ManualClock, ChaCha20Rng>, ManualClock) {
    let (mfa, clock) = fixture::service(store, T0, 1);
    let mfa = mfa.with_max_attempts(1_000);
    mfa.update_settings(
        &org("acme"),
        fixture::fast_settings(),
        &Actor::new("admin").unwrap(),
    )
    .await
    .expect("settings");
    mfa.set_org_mfa(&org("acme"), OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .expect("enable");
    (mfa, clock)
}

fn app_code(uri: &KeyUri, clock: &ManualClock) -> String {
    fixture::SoftApp::scan(uri).code_now(clock, 0)
}

use fixture::refusal;

/// The session a password sign-in of `name` keeps, whatever the step.
async fn signed_in<S: Store>(
    mfa: &Service<S, ManualClock, ChaCha20Rng>,
    o: &OrgId,
    name: &str,
) -> MfaSession {
    mfa.login_step(o, &customer(name))
        .await
        .expect("sign in")
        .session()
}

/// Enrolls `name` of `acme` in a session of its own; its key URI, and the session, passed.
async fn enrolled<S: Store>(
    mfa: &Service<S, ManualClock, ChaCha20Rng>,
    clock: &ManualClock,
    name: &str,
) -> (KeyUri, MfaSession) {
    let (o, c) = (org("acme"), customer(name));
    let session = signed_in(mfa, &o, name).await;
    let enrollment = mfa.start_enrollment(&o, &c, &session).await.expect("start");
    let passed = mfa
        .confirm_enrollment(&o, &c, &session, &app_code(&enrollment.uri, clock))
        .await
        .expect("confirm");
    (enrollment.uri, passed.session())
}

/// A configured customer `alice` of `acme`, her key URI and the session that enrolled her, with
/// the clock one step on.
async fn configured<S: Store>(
    mfa: &Service<S, ManualClock, ChaCha20Rng>,
    clock: &ManualClock,
) -> (KeyUri, MfaSession) {
    let configured = enrolled(mfa, clock, "alice").await;
    clock.advance(30);
    configured
}

/// Loading what was never written gives `None`.
pub async fn absent_records_load_as_none<S: Store>(store: S) {
    assert_eq!(store.load_org(&org("nobody")).await.expect("load"), None);
    assert_eq!(
        store
            .load_customer(&org("nobody"), &customer("nobody"))
            .await
            .expect("load"),
        None
    );
    assert!(
        store
            .audit(&org("nobody"), &all(None))
            .await
            .expect("audit")
            .is_empty()
    );
}

/// A customer write succeeds only at the version it expects, once.
pub async fn customer_writes_are_compare_and_swap<S: Store>(store: S) {
    let (o, c) = (org("acme"), customer("alice"));
    let record = CustomerRecord::default();
    let Written::Stored(v1) = store
        .write_customer(&o, &c, None, &record, &[])
        .await
        .expect("create")
    else {
        panic!("creating an absent record must succeed")
    };
    assert_eq!(
        store
            .write_customer(&o, &c, None, &record, &[])
            .await
            .expect("write"),
        Written::Conflict,
        "it exists now"
    );
    let Written::Stored(v2) = store
        .write_customer(&o, &c, Some(v1), &record, &[])
        .await
        .expect("update")
    else {
        panic!("writing at the current version must succeed")
    };
    assert_ne!(v1, v2);
    assert_eq!(
        store
            .write_customer(&o, &c, Some(v1), &record, &[])
            .await
            .expect("write"),
        Written::Conflict,
        "stale version"
    );
    let loaded = store
        .load_customer(&o, &c)
        .await
        .expect("load")
        .expect("present")
        .decode()
        .unwrap();
    assert_eq!((loaded.value, loaded.version), (record, v2));
}

/// An organisation write succeeds only at the version it expects, once.
pub async fn org_writes_are_compare_and_swap<S: Store>(store: S) {
    let o = org("acme");
    let on = OrgPolicy::default().with_mfa(OrgMfa::On);
    let Written::Stored(v1) = store.write_org(&o, None, &on, &[]).await.expect("create") else {
        panic!("create")
    };
    assert_eq!(
        store.write_org(&o, None, &on, &[]).await.expect("write"),
        Written::Conflict
    );
    let off = on.clone().with_mfa(OrgMfa::Off);
    let Written::Stored(v2) = store
        .write_org(&o, Some(v1), &off, &[])
        .await
        .expect("update")
    else {
        panic!("update")
    };
    assert_eq!(
        store
            .write_org(&o, Some(v1), &on, &[])
            .await
            .expect("write"),
        Written::Conflict
    );
    let loaded = store
        .load_org(&o)
        .await
        .expect("load")
        .expect("present")
        .decode()
        .unwrap();
    assert_eq!((loaded.value, loaded.version), (off, v2));
}

/// The events of a write are stored with it; a write that loses its race stores none.
pub async fn events_are_written_with_their_record_and_never_without<S: Store>(store: S) {
    let (o, c) = (org("acme"), customer("alice"));
    let record = CustomerRecord::default();
    let Written::Stored(v1) = store
        .write_customer(&o, &c, None, &record, &[event(&o, Some(&c), "one")])
        .await
        .expect("write")
    else {
        panic!("create")
    };
    let lost = store
        .write_customer(&o, &c, None, &record, &[event(&o, Some(&c), "lost")])
        .await
        .expect("write");
    assert_eq!(lost, Written::Conflict);
    let two = [event(&o, Some(&c), "two"), event(&o, Some(&c), "three")];
    let Written::Stored(v2) = store
        .write_customer(&o, &c, Some(v1), &record, &two)
        .await
        .expect("write")
    else {
        panic!("update")
    };
    // A stale update with one event (a sign-in's write) stores neither; a current one stores both.
    let stale = store
        .write_customer(&o, &c, Some(v1), &record, &[event(&o, Some(&c), "stale")])
        .await
        .expect("write");
    assert_eq!(stale, Written::Conflict);
    let Written::Stored(_) = store
        .write_customer(&o, &c, Some(v2), &record, &[event(&o, Some(&c), "four")])
        .await
        .expect("write")
    else {
        panic!("update")
    };
    let logged: Vec<String> = store
        .audit(&o, &all(Some(&c)))
        .await
        .expect("audit")
        .into_iter()
        .map(|stored| match stored.event.kind {
            EventKind::Reset { by } => by.as_str().to_owned(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(logged, ["four", "three", "two", "one"]);
    let lost_org = store
        .write_org(
            &o,
            Some(mfa_core::store::Version(u64::MAX)),
            &OrgPolicy::default(),
            &[event(&o, None, "lost")],
        )
        .await;
    assert_eq!(lost_org.expect("write"), Written::Conflict);
    assert_eq!(store.audit(&o, &all(None)).await.expect("audit").len(), 4);
}

/// The audit log comes newest first, with increasing sequence numbers, filtered and paged.
pub async fn audit_is_newest_first_filtered_and_paged<S: Store>(store: S) {
    let o = org("acme");
    let (alice, bob) = (customer("alice"), customer("bob"));
    let mut versions = std::collections::HashMap::new();
    for i in 0..10 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        let expected = versions.get(who.as_str()).copied();
        let written = store
            .write_customer(
                &o,
                who,
                expected,
                &CustomerRecord::default(),
                &[event(&o, Some(who), &i.to_string())],
            )
            .await
            .expect("write");
        let Written::Stored(version) = written else {
            panic!("write {i}")
        };
        versions.insert(who.as_str().to_string(), version);
    }
    let everything = store.audit(&o, &all(None)).await.expect("audit");
    assert_eq!(everything.len(), 10);
    assert!(
        everything.windows(2).all(|pair| pair[0].seq > pair[1].seq),
        "newest first"
    );
    let alices = store.audit(&o, &all(Some(&alice))).await.expect("audit");
    assert_eq!(alices.len(), 5);
    assert!(
        alices
            .iter()
            .all(|stored| stored.event.customer.as_ref() == Some(&alice))
    );
    let page = store
        .audit(
            &o,
            &AuditQuery {
                customer: None,
                before_seq: None,
                limit: 3,
            },
        )
        .await
        .expect("audit");
    assert_eq!(page, everything[..3]);
    let next = AuditQuery {
        customer: None,
        before_seq: Some(page[2].seq),
        limit: 3,
    };
    assert_eq!(
        store.audit(&o, &next).await.expect("audit"),
        everything[3..6]
    );
}

/// One organisation's records and events are not another's.
pub async fn organisations_and_customers_are_isolated<S: Store>(store: S) {
    let (acme, other) = (org("acme"), org("other"));
    let c = customer("alice");
    let on = OrgPolicy::default().with_mfa(OrgMfa::On);
    assert!(matches!(
        store
            .write_org(&acme, None, &on, &[event(&acme, None, "acme")])
            .await
            .expect("write"),
        Written::Stored(_)
    ));
    assert_eq!(store.load_org(&other).await.expect("load"), None);
    assert!(matches!(
        store
            .write_customer(
                &acme,
                &c,
                None,
                &CustomerRecord::default(),
                &[event(&acme, Some(&c), "x")]
            )
            .await
            .expect("write"),
        Written::Stored(_)
    ));
    assert_eq!(store.load_customer(&other, &c).await.expect("load"), None);
    assert_eq!(
        store
            .load_customer(&acme, &customer("bob"))
            .await
            .expect("load"),
        None
    );
    assert!(
        store
            .audit(&other, &all(None))
            .await
            .expect("audit")
            .is_empty()
    );
}

/// Every transition, through the service: enroll, confirm, replay, backup codes, sticky after
/// disable, reset.
pub async fn the_whole_story_through_the_service<S: Store>(store: S) {
    let (mfa, clock) = service(store).await;
    let (o, alice, bob) = (org("acme"), customer("alice"), customer("bob"));
    assert!(matches!(
        mfa.login_step(&o, &alice).await.expect("step"),
        LoginStep::Enroll(_)
    ));
    let (uri, enrolling) = configured(&mfa, &clock).await;
    assert!(matches!(
        mfa.check_session(&o, &alice, &enrolling)
            .await
            .expect("check"),
        mfa_core::SessionCheck::Complete(passed) if passed.by == PassedBy::Enrollment
    ));
    let step = mfa.login_step(&o, &alice).await.expect("step");
    assert!(matches!(step, LoginStep::Challenge(_)));
    let session = step.session();
    let code = app_code(&uri, &clock);
    let accepted = mfa
        .verify_totp(&o, &alice, &session, &code)
        .await
        .expect("sign in");
    assert_eq!(accepted.passed.method(), PassedBy::Totp);
    let session = accepted.passed.session();
    assert_eq!(
        refusal(mfa.verify_totp(&o, &alice, &session, &code).await),
        Refusal::ReplayedCode
    );
    let issued = mfa
        .generate_backup_codes(&o, &alice, &session)
        .await
        .expect("codes");
    let (codes, session) = (issued.codes, issued.passed.session());
    // A new set of codes ends the other sessions, whatever the store.
    assert_eq!(
        mfa.check_session(&o, &alice, &enrolling)
            .await
            .expect("check"),
        mfa_core::SessionCheck::Ended
    );
    assert_eq!(
        mfa.verify_backup_code(&o, &alice, &session, codes[2].as_str())
            .await
            .expect("backup")
            .remaining,
        4
    );
    assert_eq!(
        refusal(
            mfa.verify_backup_code(&o, &alice, &session, codes[2].as_str())
                .await
        ),
        Refusal::UsedBackupCode
    );
    mfa.set_org_mfa(&o, OrgMfa::Off, &Actor::new("admin").unwrap())
        .await
        .expect("disable");
    assert!(matches!(
        mfa.login_step(&o, &alice).await.expect("step"),
        LoginStep::Challenge(_)
    ));
    assert!(matches!(
        mfa.login_step(&o, &bob).await.expect("step"),
        LoginStep::Done(_)
    ));
    // Bob was never stored: there is nothing of his to reset.
    assert_eq!(
        refusal(mfa.reset(&o, &bob, &Actor::new("admin").unwrap()).await),
        Refusal::NotFound
    );
    assert_eq!(
        mfa.store().load_customer(&o, &bob).await.expect("load"),
        None
    );
    mfa.reset(&o, &alice, &Actor::new("admin").unwrap())
        .await
        .expect("reset");
    assert_eq!(
        mfa.check_session(&o, &alice, &session)
            .await
            .expect("check"),
        mfa_core::SessionCheck::Ended
    );
    assert!(matches!(
        mfa.login_step(&o, &alice).await.expect("step"),
        LoginStep::Done(_)
    ));
    let events = mfa.audit(&o, &all(Some(&alice))).await.expect("audit");
    assert!(matches!(&events[0].event.kind, EventKind::Reset { by } if by.as_str() == "admin"));
    let names: Vec<_> = events
        .iter()
        .rev()
        .map(|stored| stored.event.kind_name())
        .collect();
    assert_eq!(
        names,
        [
            "enrollment_started",
            "enrollment_confirmed",
            "totp_accepted",
            "attempt_rejected",
            "backup_codes_generated",
            "backup_code_accepted",
            "attempt_rejected",
            "reset"
        ]
    );
}

/// Many writers with the same expected version: exactly one stores.
pub async fn racing_writers_on_one_version_exactly_one_wins<S: Store + 'static>(store: S) {
    let store = Arc::new(store);
    let (o, c) = (org("acme"), customer("alice"));
    let Written::Stored(v1) = store
        .write_customer(&o, &c, None, &CustomerRecord::default(), &[])
        .await
        .expect("create")
    else {
        panic!("create")
    };
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (store, o, c) = (Arc::clone(&store), o.clone(), c.clone());
            tokio::spawn(async move {
                let events = [event(&o, Some(&c), &format!("writer {i}"))];
                store
                    .write_customer(&o, &c, Some(v1), &CustomerRecord::default(), &events)
                    .await
                    .expect("write")
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += usize::from(matches!(task.await.expect("task"), Written::Stored(_)));
    }
    assert_eq!(stored, 1);
    assert_eq!(
        store.audit(&o, &all(Some(&c))).await.expect("audit").len(),
        1,
        "only the winner's event"
    );
}

/// Many sign-ins racing with the same TOTP code: exactly one is accepted.
pub async fn racing_sign_ins_with_one_code_exactly_one_wins<S: Store + 'static>(store: S) {
    let (mfa, clock) = service(store).await;
    let (uri, session) = configured(&mfa, &clock).await;
    let code = app_code(&uri, &clock);
    let mfa = Arc::new(mfa);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (mfa, code) = (Arc::clone(&mfa), code.clone());
            tokio::spawn(async move {
                mfa.verify_totp(&org("acme"), &customer("alice"), &session, &code)
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => accepted += 1,
            // The losers submitted the code of the step just accepted: a second submission,
            // refused without counting toward a lockout.
            Err(ServiceError::Refused(Refusal::ReplayedCode)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
    let status = mfa
        .status(&org("acme"), &customer("alice"))
        .await
        .expect("status")
        .customer;
    assert_eq!((status.failures, status.locked_until), (0, None));
}

/// Many sign-ins racing with the same backup code: exactly one is accepted.
pub async fn racing_sign_ins_with_one_backup_code_exactly_one_wins<S: Store + 'static>(store: S) {
    let (mfa, clock) = service(store).await;
    let (_, session) = configured(&mfa, &clock).await;
    let issued = mfa
        .generate_backup_codes(&org("acme"), &customer("alice"), &session)
        .await
        .expect("codes");
    let code = issued.codes[0].as_str().to_string();
    let session = issued.passed.session();
    let mfa = Arc::new(mfa);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (mfa, code) = (Arc::clone(&mfa), code.clone());
            tokio::spawn(async move {
                mfa.verify_backup_code(&org("acme"), &customer("alice"), &session, &code)
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(done) => {
                accepted += 1;
                assert_eq!(done.remaining, 4);
            }
            Err(ServiceError::Refused(Refusal::UsedBackupCode | Refusal::Locked { .. })) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
}

/// Expecting a version for a record that does not exist is a conflict, never an upsert (which would
/// bring back a row deleted by hand, with an old version).
pub async fn an_expected_version_for_an_absent_record_conflicts<S: Store>(store: S) {
    let (o, c) = (org("acme"), customer("alice"));
    let written = store
        .write_customer(
            &o,
            &c,
            Some(mfa_core::store::Version(1)),
            &CustomerRecord::default(),
            &[],
        )
        .await;
    assert_eq!(written.expect("write"), Written::Conflict);
    let written = store
        .write_org(
            &o,
            Some(mfa_core::store::Version(1)),
            &OrgPolicy::default(),
            &[],
        )
        .await;
    assert_eq!(written.expect("write"), Written::Conflict);
    assert_eq!(store.load_customer(&o, &c).await.expect("load"), None);
    assert_eq!(store.load_org(&o).await.expect("load"), None);
}

/// Many writers creating the same record at once (the first enrollment's race): exactly one stores.
pub async fn racing_creators_exactly_one_wins<S: Store + 'static>(store: S) {
    let store = Arc::new(store);
    let (o, c) = (org("acme"), customer("alice"));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, o, c) = (Arc::clone(&store), o.clone(), c.clone());
            tokio::spawn(async move {
                let events = [event(&o, Some(&c), &format!("creator {i}"))];
                store
                    .write_customer(&o, &c, None, &CustomerRecord::default(), &events)
                    .await
                    .expect("write")
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += usize::from(matches!(task.await.expect("task"), Written::Stored(_)));
    }
    assert_eq!(stored, 1);
    assert_eq!(
        store.audit(&o, &all(Some(&c))).await.expect("audit").len(),
        1
    );
}

/// Events appended without a record change are logged after what came before, and a customer's
/// filter leaves out organisation-level events.
pub async fn appended_events_are_logged_in_order<S: Store>(store: S) {
    let (o, c) = (org("acme"), customer("alice"));
    store
        .append_events(&[event(&o, None, "org-level")])
        .await
        .expect("append");
    store
        .append_events(&[event(&o, Some(&c), "first"), event(&o, Some(&c), "second")])
        .await
        .expect("append");
    store.append_events(&[]).await.expect("nothing to append");
    let mine = store.audit(&o, &all(Some(&c))).await.expect("audit");
    let names: Vec<_> = mine
        .iter()
        .map(|stored| format!("{:?}", stored.event.kind))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].contains("second") && names[1].contains("first"),
        "{names:?}"
    );
    assert_eq!(store.audit(&o, &all(None)).await.expect("audit").len(), 3);
    let before = AuditQuery {
        customer: Some(c.clone()),
        before_seq: Some(mine[0].seq),
        limit: 10,
    };
    assert_eq!(store.audit(&o, &before).await.expect("audit"), mine[1..]);
}

/// Every kind of event the service writes reads back whole from the store.
pub async fn event_bytes_survive_the_store<S: Store>(store: S) {
    let (mfa, clock) = service(store).await;
    let (uri, session) = configured(&mfa, &clock).await;
    let (o, alice) = (org("acme"), customer("alice"));
    let _ = mfa.verify_totp(&o, &alice, &session, "12ab56").await;
    let _ = mfa
        .verify_totp(&o, &alice, &session, &app_code(&uri, &clock))
        .await
        .expect("sign in");
    let issued = mfa
        .generate_backup_codes(&o, &alice, &session)
        .await
        .expect("codes");
    let _ = mfa
        .verify_backup_code(
            &o,
            &alice,
            &issued.passed.session(),
            issued.codes[0].as_str(),
        )
        .await
        .expect("backup");
    mfa.reset(&o, &alice, &Actor::new("admin").unwrap())
        .await
        .expect("reset");
    let events = mfa
        .audit(
            &o,
            &AuditQuery {
                customer: None,
                before_seq: None,
                limit: 1_000,
            },
        )
        .await
        .expect("audit");
    let kinds: std::collections::BTreeSet<_> = events
        .iter()
        .map(|stored| stored.event.kind_name())
        .collect();
    for kind in [
        "org_enabled",
        "org_settings_changed",
        "enrollment_started",
        "enrollment_confirmed",
        "attempt_rejected",
        "totp_accepted",
        "backup_codes_generated",
        "backup_code_accepted",
        "reset",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        events
            .iter()
            .all(|stored| stored.event.org == o && stored.event.at >= UnixTime::from_secs(T0))
    );
}

/// [`Store::load_org_and_customer`] reads what [`Store::load_org`] and [`Store::load_customer`]
/// read, whichever of the two exists, and nothing of other organisations or customers.
pub async fn loading_both_agrees_with_loading_each<S: Store>(store: S) {
    let (acme, globex, alice, bob) = (
        org("acme"),
        org("globex"),
        customer("alice"),
        customer("bob"),
    );
    let both = |o: OrgId, c: CustomerId| {
        let store = &store;
        async move {
            let together = store
                .load_org_and_customer(&o, &c)
                .await
                .expect("load both");
            let apart = (
                store.load_org(&o).await.expect("load org"),
                store.load_customer(&o, &c).await.expect("load customer"),
            );
            assert_eq!(together, apart, "{o} / {c}");
            together
        }
    };
    assert_eq!(both(acme.clone(), alice.clone()).await, (None, None));

    // A customer without a policy, then a policy too, written twice so versions differ.
    let record = CustomerRecord::default();
    let Written::Stored(_) = store
        .write_customer(&acme, &alice, None, &record, &[])
        .await
        .expect("create")
    else {
        panic!("creating an absent record must succeed")
    };
    let (policy, loaded) = both(acme.clone(), alice.clone()).await;
    assert_eq!(policy, None);
    assert_eq!(loaded.expect("alice").value.decode(), Ok(record));

    let on = OrgPolicy::default().with_mfa(OrgMfa::On);
    let Written::Stored(v1) = store
        .write_org(&acme, None, &OrgPolicy::default(), &[])
        .await
        .expect("create")
    else {
        panic!("creating an absent policy must succeed")
    };
    let Written::Stored(v2) = store
        .write_org(&acme, Some(v1), &on, &[])
        .await
        .expect("update")
    else {
        panic!("writing at the current version must succeed")
    };
    let (policy, loaded) = both(acme.clone(), alice.clone()).await;
    assert_eq!(
        policy.map(|p| (p.value.decode(), p.version)),
        Some((Ok(on), v2))
    );
    assert!(loaded.is_some());

    // A policy without this customer; another organisation's customer of the same name.
    let (policy, loaded) = both(acme.clone(), bob.clone()).await;
    assert!(policy.is_some());
    assert_eq!(loaded, None);
    assert_eq!(both(globex, alice).await, (None, None));
}

/// Exports read the same events as the newest-first audit, oldest first, from a time on, one
/// customer's or all, in pages that continue after the last sequence number.
pub async fn exports_are_oldest_first_filtered_and_paged<S: Store>(store: S) {
    let (o, other) = (org("acme"), org("globex"));
    let (alice, bob) = (customer("alice"), customer("bob"));
    let mut versions = std::collections::HashMap::new();
    for i in 0..12_u64 {
        let who = if i % 3 == 0 { &bob } else { &alice };
        let mut logged = event(&o, Some(who), &i.to_string());
        logged.at = UnixTime::from_secs(T0 + 60 * i);
        let expected = versions.get(who.as_str()).copied();
        let Written::Stored(version) = store
            .write_customer(&o, who, expected, &CustomerRecord::default(), &[logged])
            .await
            .expect("write")
        else {
            panic!("write {i}")
        };
        versions.insert(who.as_str().to_owned(), version);
        // Another organisation's events in between are never exported.
        store
            .append_events(&[event(&other, Some(&alice), "elsewhere")])
            .await
            .expect("append");
    }
    let mut newest_first = store.audit(&o, &all(None)).await.expect("audit");
    newest_first.reverse();
    let export = |customer: Option<&CustomerId>, since: Option<u64>, limit: usize| AuditExport {
        customer: customer.cloned(),
        since: since.map(UnixTime::from_secs),
        after_seq: None,
        limit,
    };
    let everything = store
        .export_audit(&o, &export(None, None, 100))
        .await
        .expect("export");
    assert_eq!(everything, newest_first, "the same events, oldest first");

    // Paged: each page after the last one's final sequence number, until an empty page.
    let mut paged = Vec::new();
    let mut query = export(None, None, 5);
    loop {
        let page = store.export_audit(&o, &query).await.expect("export");
        assert!(page.len() <= 5);
        let Some(last) = page.last() else { break };
        query.after_seq = Some(last.seq);
        paged.extend(page);
    }
    assert_eq!(paged, everything);

    // From a time on (inclusive), and one customer's.
    let since = store
        .export_audit(&o, &export(None, Some(T0 + 60 * 7), 100))
        .await
        .expect("export");
    assert_eq!(since, everything[7..]);
    let bobs = store
        .export_audit(&o, &export(Some(&bob), Some(T0 + 60), 100))
        .await
        .expect("export");
    let want: Vec<_> = everything
        .iter()
        .filter(|e| e.event.customer.as_ref() == Some(&bob) && e.event.at.as_secs() >= T0 + 60)
        .cloned()
        .collect();
    assert_eq!(bobs, want);
    assert_eq!(bobs.len(), 3);

    // Limits and cursors at the edges.
    assert!(
        store
            .export_audit(&o, &export(None, None, 0))
            .await
            .expect("export")
            .is_empty()
    );
    let beyond = AuditExport {
        after_seq: Some(u64::MAX),
        ..export(None, None, 10)
    };
    assert!(
        store
            .export_audit(&o, &beyond)
            .await
            .expect("export")
            .is_empty()
    );
    assert!(
        store
            .export_audit(&o, &export(None, Some(u64::MAX), 10))
            .await
            .expect("export")
            .is_empty()
    );
}

/// Two services over one store: the first seals under key 1; the second holds keys 1 and 2 with 2
/// active, as during a rotation.
#[allow(clippy::type_complexity, reason = "two services, one store")]
async fn rotating<S: Store>(
    store: S,
) -> (
    Service<Arc<S>, ManualClock, ChaCha20Rng>,
    Service<Arc<S>, ManualClock, ChaCha20Rng>,
    ManualClock,
) {
    let store = Arc::new(store);
    let (old, clock) = service(Arc::clone(&store)).await;
    // The new key active, the kit's (key 1) kept to open what it sealed.
    let mut keys = KeyRing::new(SealingKey::new(KeyId::new(2), [7; 32]));
    keys.add(fixture::key()).expect("a second key");
    let new = Service::new(store, clock.clone(), keys, fixture::rng(2)).with_max_attempts(1_000);
    (old, new, clock)
}

/// Every (organisation, customer) a key seals, walked a page at a time.
async fn all_sealed_under<S: Store>(store: &S, key: u32, page: usize) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let batch = store
            .sealed_under(KeyId::new(key), after.as_ref(), page)
            .await
            .expect("sealed under");
        assert!(batch.len() <= page);
        let Some(last) = batch.last().cloned() else {
            return found;
        };
        found.extend(
            batch
                .into_iter()
                .map(|(o, c)| (o.as_str().to_owned(), c.as_str().to_owned())),
        );
        after = Some(last);
    }
}

/// Secrets are found by the key that seals them, configured and pending alike, in (organisation,
/// customer) order, and counted per key; a customer without a secret is in neither.
pub async fn secrets_are_found_and_counted_by_key<S: Store>(store: S) {
    let (old, new, clock) = rotating(store).await;
    let acme = org("acme");
    for name in ["carol", "alice", "dave"] {
        let session = signed_in(&old, &acme, name).await;
        let enrollment = old
            .start_enrollment(&acme, &customer(name), &session)
            .await
            .expect("start");
        if name != "dave" {
            let _passed = old
                .confirm_enrollment(
                    &acme,
                    &customer(name),
                    &session,
                    &app_code(&enrollment.uri, &clock),
                )
                .await
                .expect("confirm");
        }
    }
    for name in ["bob", "erin"] {
        let session = signed_in(&new, &acme, name).await;
        new.start_enrollment(&acme, &customer(name), &session)
            .await
            .expect("start");
    }
    // A customer who was reset holds no secret.
    new.reset(&acme, &customer("erin"), &Actor::new("admin").unwrap())
        .await
        .expect("reset");
    let store = new.store();
    assert_eq!(
        store.count_sealed().await.expect("count"),
        vec![(KeyId::new(1), 3), (KeyId::new(2), 1)]
    );
    let pairs = |names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ("acme".to_owned(), (*n).to_owned()))
            .collect()
    };
    for page in [1, 2, 100] {
        assert_eq!(
            all_sealed_under(store, 1, page).await,
            pairs(&["alice", "carol", "dave"])
        );
        assert_eq!(all_sealed_under(store, 2, page).await, pairs(&["bob"]));
        assert!(all_sealed_under(store, 3, page).await.is_empty());
    }
    assert!(
        store
            .sealed_under(KeyId::new(1), None, 0)
            .await
            .expect("sealed under")
            .is_empty()
    );
}

/// Resealing moves each secret to the active key with its audit event, once; every customer
/// signs in as before; a keyring without the needed key is refused naming that key.
pub async fn key_rotation_through_the_service_keeps_every_sign_in<S: Store>(store: S) {
    let (old, new, clock) = rotating(store).await;
    let acme = org("acme");
    let mut uris = Vec::new();
    for name in ["alice", "bob"] {
        let (uri, session) = enrolled(&old, &clock, name).await;
        uris.push((name, uri, session));
    }
    clock.advance(30);
    for (name, _, _) in &uris {
        assert_eq!(
            new.reseal(&acme, &customer(name)).await.expect("reseal"),
            mfa_core::Resealed::Moved {
                from: KeyId::new(1),
                to: KeyId::new(2)
            }
        );
        assert_eq!(
            new.reseal(&acme, &customer(name)).await.expect("reseal"),
            mfa_core::Resealed::AlreadyCurrent(KeyId::new(2)),
            "a second pass changes nothing"
        );
    }
    assert_eq!(
        new.reseal(&acme, &customer("nobody"))
            .await
            .expect("reseal"),
        mfa_core::Resealed::NoSecret
    );
    let store = new.store();
    assert_eq!(
        store.count_sealed().await.expect("count"),
        vec![(KeyId::new(2), 2)]
    );
    let resealed = store
        .audit(&acme, &all(None))
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.event.kind_name() == "secret_resealed")
        .count();
    assert_eq!(resealed, 2, "one event per secret moved");
    for (name, uri, session) in &uris {
        let _passed = new
            .verify_totp(&acme, &customer(name), session, &app_code(uri, &clock))
            .await
            .expect("signs in under the new key");
    }
    // The old keyring alone no longer opens the secrets, and says which key it lacks.
    clock.advance(30);
    let (name, uri, session) = &uris[0];
    let refused = old
        .verify_totp(&acme, &customer(name), session, &app_code(uri, &clock))
        .await;
    assert!(
        matches!(
            refused,
            Err(ServiceError::Fault(Fault::Seal(mfa_core::seal::SealError::UnknownKey(id))))
                if id == KeyId::new(2)
        ),
        "a fault, not a refusal: {refused:?}"
    );
}

/// Bytes the store hands back that this version cannot read (damaged, or written by a newer
/// version) are corruption, not an outage: every call on them answers
/// [`ServiceError::Corrupt`] naming the organisation and customer, writes nothing, logs nothing and
/// passes no one. Once the bytes read again, the customer is exactly as before: the code that met
/// the corrupt record was never consumed.
pub async fn corrupt_records_are_corruption_and_change_nothing<S: Store>(store: S) {
    let (mfa, clock) = service(Garbled::garbled(store)).await;
    let (o, alice) = (org("acme"), customer("alice"));
    let (uri, session) = configured(&mfa, &clock).await;
    let issued = mfa
        .generate_backup_codes(&o, &alice, &session)
        .await
        .expect("backup codes");
    let session = issued.passed.session();
    let before = mfa.audit(&o, &all(None)).await.expect("audit");
    let code = app_code(&uri, &clock);
    let backup = issued.codes[0].as_str().to_owned();
    let admin = Actor::new("admin").expect("a name");

    let unknown_format = [0xEE, 1, 2, 3];
    let damaged = [2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    for (bytes, want) in [
        (&unknown_format[..], DecodeError::UnknownFormat(0xEE)),
        (&damaged[..], DecodeError::Corrupt),
    ] {
        mfa.store()
            .garble(Some((o.clone(), Some(alice.clone()))), bytes);
        let corrupt = |what: &str, error: Option<CorruptRecord>| {
            let error = error.unwrap_or_else(|| panic!("{what}: not reported as corruption"));
            assert_eq!(
                (&error.org, error.customer.as_ref(), error.error),
                (&o, Some(&alice), want),
                "{what}"
            );
            assert!(
                error.to_string().contains("alice") && error.to_string().contains("acme"),
                "{what}: the message names the record: {error}"
            );
        };
        corrupt("login", corruption(mfa.login_step(&o, &alice).await));
        corrupt(
            "check",
            corruption(mfa.check_session(&o, &alice, &session).await),
        );
        corrupt("status", corruption(mfa.status(&o, &alice).await));
        corrupt(
            "totp",
            corruption(mfa.verify_totp(&o, &alice, &session, &code).await),
        );
        corrupt(
            "backup code",
            corruption(mfa.verify_backup_code(&o, &alice, &session, &backup).await),
        );
        corrupt(
            "new backup codes",
            corruption(mfa.generate_backup_codes(&o, &alice, &session).await),
        );
        corrupt(
            "enroll",
            corruption(mfa.start_enrollment(&o, &alice, &session).await),
        );
        corrupt(
            "confirm",
            corruption(mfa.confirm_enrollment(&o, &alice, &session, &code).await),
        );
        corrupt("reset", corruption(mfa.reset(&o, &alice, &admin).await));
        corrupt("reseal", corruption(mfa.reseal(&o, &alice).await));
        // Another customer of the organisation is not affected.
        let bob = mfa.status(&o, &customer("bob")).await.expect("bob");
        assert!(!bob.stored);
    }
    // A policy that does not read names the organisation, and no customer.
    mfa.store().garble(Some((o.clone(), None)), &damaged);
    let policy = corruption(mfa.login_step(&o, &alice).await).expect("the policy is corrupt");
    assert_eq!((&policy.org, policy.customer.as_ref()), (&o, None));
    assert!(corruption(mfa.org_policy(&o).await).is_some());

    mfa.store().garble(None, &[]);
    assert_eq!(
        mfa.audit(&o, &all(None)).await.expect("audit"),
        before,
        "nothing was logged"
    );
    let status = mfa.status(&o, &alice).await.expect("status").customer;
    assert_eq!(
        (status.failures, status.backup_codes_remaining),
        (0, 5),
        "nothing was written"
    );
    let accepted = mfa
        .verify_totp(&o, &alice, &session, &code)
        .await
        .expect("the code met only corrupt bytes: it was never consumed");
    assert_eq!(accepted.passed.method(), PassedBy::Totp);
}

/// The corruption a call reported, if that is what it did.
fn corruption<T: std::fmt::Debug, E: std::error::Error>(
    result: Result<T, ServiceError<E>>,
) -> Option<CorruptRecord> {
    match result {
        Err(ServiceError::Corrupt(corrupt)) => Some(corrupt),
        Ok(value) => panic!("a corrupt record was acted on: {value:?}"),
        Err(other) => panic!("corruption reported as something else: {other}"),
    }
}

/// For stores on SQLite files, whose tables take a value of any type in any column (they are not
/// `STRICT`): rows damaged by hand (text or a number where the record's bytes belong, a version
/// of 0, of text, or one no write can follow) are that record's corruption, naming it, never a store outage; nothing is
/// written over them, and the customer beside them is unaffected. `execute` runs one SQL
/// statement on the store's file, as an operator's `sqlite3` would.
pub async fn sqlite_rows_damaged_by_hand_are_corruption<S, F>(store: S, execute: F)
where
    S: Store,
    F: AsyncFn(&str),
{
    let (mfa, clock) = service(store).await;
    let o = org("acme");
    let damages = [
        "record = 'garbage'",
        "record = 5",
        "version = 0",
        "version = 'abc'",
        "version = 9223372036854775807",
    ];
    let mut customers = Vec::new();
    for (i, damage) in damages.iter().enumerate() {
        let name = format!("c{i}");
        let (_, session) = enrolled(&mfa, &clock, &name).await;
        execute(&format!(
            "UPDATE customers SET {damage} WHERE org = 'acme' AND customer = '{name}'"
        ))
        .await;
        customers.push((customer(&name), session, *damage));
    }
    let (_, bob_session) = enrolled(&mfa, &clock, "bob").await;
    clock.advance(30);
    let before = mfa.audit(&o, &all(None)).await.expect("audit");
    let admin = Actor::new("admin").expect("a name");
    for (id, session, damage) in &customers {
        for (what, error) in [
            ("status", corruption(mfa.status(&o, id).await)),
            ("sign-in", corruption(mfa.login_step(&o, id).await)),
            (
                "code",
                corruption(mfa.verify_totp(&o, id, session, "123456").await),
            ),
            ("reset", corruption(mfa.reset(&o, id, &admin).await)),
        ] {
            let error = error.unwrap_or_else(|| panic!("{damage}, {what}: not corruption"));
            assert_eq!(
                (&error.org, error.customer.as_ref()),
                (&o, Some(id)),
                "{damage}, {what}"
            );
        }
    }
    assert_eq!(
        mfa.audit(&o, &all(None)).await.expect("audit"),
        before,
        "nothing was logged or written"
    );
    assert!(
        mfa.check_session(&o, &customer("bob"), &bob_session)
            .await
            .is_ok()
    );
}

/// A customer's record deleted by hand (an operator's way out of a damaged row) and made again by
/// a new enrollment never brings an earlier session back: its factor generation is drawn anew, so
/// a session that passed the old factor stays over, however the new record's history runs.
/// `delete` removes the customer's row, as an operator's SQL would.
pub async fn a_record_deleted_by_hand_and_made_again_ends_old_sessions<S, F>(store: S, delete: F)
where
    S: Store,
    F: AsyncFn(&OrgId, &CustomerId),
{
    let (mfa, clock) = service(store).await;
    let (o, alice) = (org("acme"), customer("alice"));
    let (_, session) = configured(&mfa, &clock).await;
    let issued = mfa
        .generate_backup_codes(&o, &alice, &session)
        .await
        .expect("backup codes");
    let old = issued.passed.session();
    assert!(
        mfa.check_session(&o, &alice, &old)
            .await
            .expect("check")
            .is_complete()
    );
    delete(&o, &alice).await;
    // The same history again: enrolled, then a new set of codes.
    let (_, session) = enrolled(&mfa, &clock, "alice").await;
    let _again = mfa
        .generate_backup_codes(&o, &alice, &session)
        .await
        .expect("backup codes");
    assert_eq!(
        mfa.check_session(&o, &alice, &old).await.expect("check"),
        SessionCheck::Ended,
        "a session of the deleted record came back"
    );
}

/// Versions start at 1, grow by one per write, and are never handed out again for a key, even
/// after its row is deleted by hand while the store is in use: a node that read a version before
/// the delete must never write over what comes next. `delete_all` removes every customer and
/// organisation row, as an operator's SQL would; it is called twice.
pub async fn a_row_deleted_by_hand_never_gives_its_versions_again<S, F>(store: S, delete_all: F)
where
    S: Store,
    F: AsyncFn(),
{
    let (acme, alice) = (org("acme"), customer("alice"));
    let record = CustomerRecord::default();
    let mut expected = None;
    for version in 1..=3 {
        let written = store
            .write_customer(&acme, &alice, expected, &record, &[])
            .await
            .expect("write");
        assert_eq!(written, Written::Stored(Version(version)));
        expected = Some(Version(version));
    }
    assert_eq!(
        store
            .write_org(&acme, None, &OrgPolicy::default(), &[])
            .await
            .expect("write"),
        Written::Stored(Version(1))
    );
    delete_all().await;
    for (expected, outcome) in [
        (Some(Version(3)), Written::Conflict),
        (None, Written::Stored(Version(4))),
        (Some(Version(3)), Written::Conflict),
        (Some(Version(4)), Written::Stored(Version(5))),
    ] {
        assert_eq!(
            store
                .write_customer(&acme, &alice, expected, &record, &[])
                .await
                .expect("write"),
            outcome,
            "expecting {expected:?}"
        );
    }
    assert_eq!(
        store
            .write_org(&acme, None, &OrgPolicy::default(), &[])
            .await
            .expect("write"),
        Written::Stored(Version(2))
    );
    // Deleted again, and again created: still above every earlier version.
    delete_all().await;
    assert_eq!(
        store
            .write_customer(&acme, &alice, None, &record, &[])
            .await
            .expect("write"),
        Written::Stored(Version(6))
    );
    // Versions no row can hold are conflicts, not errors.
    for expected in [
        Version(u64::MAX),
        Version(i64::MAX as u64),
        Version(1 << 63),
    ] {
        assert_eq!(
            store
                .write_customer(&acme, &alice, Some(expected), &record, &[])
                .await
                .expect("write"),
            Written::Conflict
        );
    }
}
