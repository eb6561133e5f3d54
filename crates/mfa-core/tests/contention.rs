//! What one customer's expensive calls must not do to everyone else's: hold the service's RNG while
//! argon2id hashes a new set of backup codes (it used to, and every enrollment of every customer
//! waited behind it), or write the audit log without bound (300 malformed codes used to append 300
//! rows; now the first of each kind a minute, and one count).

use std::sync::mpsc;
use std::time::Duration;

use mfa_core::{
    Actor, Clock, CustomerId, MemoryStore, OrgId, OrgMfa, Refusal, Service, ServiceError, Settings,
    Store, UnixTime,
    audit::{AuditQuery, COALESCE_WINDOW_SECS, EventKind, Rejection},
    backup::BackupHashParams,
    machine::CustomerRecord,
};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;

use mfa_store_tests::{
    T0,
    fixture::{self, SoftApp},
};

/// A CSPRNG that says when it is first drawn from.
struct Signalling {
    inner: ChaCha20Rng,
    drawn: Option<mpsc::Sender<()>>,
}

impl Signalling {
    fn signal(&mut self) {
        if let Some(drawn) = self.drawn.take() {
            let _ = drawn.send(());
        }
    }
}

impl rand_core::TryRng for Signalling {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.signal();
        Ok(self.inner.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.signal();
        Ok(self.inner.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.signal();
        self.inner.fill_bytes(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Signalling {}

fn ids() -> (OrgId, CustomerId, CustomerId) {
    (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice@acme.test").unwrap(),
        CustomerId::new("bob@acme.test").unwrap(),
    )
}

/// While one customer's new backup codes hash (five argon2id evaluations at a real cost), another
/// customer's enrollment, which needs the service's RNG too, completes: the RNG is held only to
/// draw a seed. With the lock held across the hashing, the enrollment finished after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_backup_codes_does_not_hold_up_other_enrollments() {
    let (org, alice, bob) = ids();
    let (setup, clock) = fixture::service(MemoryStore::new(), T0, 1);
    let mut settings = Settings::default();
    // Slow enough (several hundred milliseconds for five codes in a test build) that an
    // enrollment, which takes microseconds, has all the time it needs.
    settings.backup_hash = BackupHashParams::new(8 * 1024, 2, 1).unwrap();
    setup
        .update_settings(&org, settings, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    setup
        .set_org_mfa(&org, OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    let session = setup.login_step(&org, &alice).await.unwrap().session();
    let enrollment = setup
        .start_enrollment(&org, &alice, &session)
        .await
        .unwrap();
    let code = SoftApp::scan(&enrollment.uri).code_now(&clock, 0);
    let passed = setup
        .confirm_enrollment(&org, &alice, &session, &code)
        .await
        .unwrap();

    // The same records, in a service whose RNG says when it is drawn from.
    let (drawn, first_draw) = mpsc::channel();
    let store = std::sync::Arc::new(MemoryStore::new());
    for customer in [&alice, &bob] {
        if let Some(record) = setup.store().load_customer(&org, customer).await.unwrap() {
            let written = store
                .write_customer(&org, customer, None, &record.value.decode().unwrap(), &[])
                .await
                .unwrap();
            assert!(matches!(written, mfa_core::store::Written::Stored(_)));
        }
    }
    let policy = setup.org_policy(&org).await.unwrap();
    let written = store.write_org(&org, None, &policy, &[]).await.unwrap();
    assert!(matches!(written, mfa_core::store::Written::Stored(_)));
    let mfa = std::sync::Arc::new(Service::new(
        store,
        clock.clone(),
        fixture::keys(),
        Signalling {
            inner: fixture::rng(2),
            drawn: Some(drawn),
        },
    ));

    let hashing = {
        let (mfa, org, alice, session) =
            (mfa.clone(), org.clone(), alice.clone(), passed.session());
        tokio::spawn(async move { mfa.generate_backup_codes(&org, &alice, &session).await })
    };
    first_draw
        .recv_timeout(Duration::from_secs(10))
        .expect("the backup codes drew their randomness");
    let bob_session = mfa.login_step(&org, &bob).await.unwrap().session();
    let bob_started = tokio::time::timeout(
        Duration::from_secs(10),
        mfa.start_enrollment(&org, &bob, &bob_session),
    )
    .await
    .expect("bob's enrollment finishes")
    .unwrap();
    assert!(
        !hashing.is_finished(),
        "bob's enrollment finished while alice's codes were still hashing"
    );
    assert!(bob_started.expires_at > clock.now());
    let issued = hashing.await.unwrap().unwrap();
    assert_eq!(issued.codes.len(), 5);
}

/// Finding 7: 300 malformed codes from one session within a minute leave one `attempt_rejected`
/// event, not 300; the next one after the minute leaves its own event and the count of the 299
/// repeats. Attempts while locked out are coalesced the same way, each kind on its own; wrong codes,
/// which count toward lockout, are never coalesced.
#[tokio::test]
async fn repeated_refusals_are_coalesced_without_losing_the_first_of_each_kind() {
    let (org, alice, _) = ids();
    let (mfa, clock) = fixture::service(MemoryStore::new(), T0, 3);
    mfa.set_org_mfa(&org, OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    let session = mfa.login_step(&org, &alice).await.unwrap().session();
    let enrollment = mfa.start_enrollment(&org, &alice, &session).await.unwrap();
    let totp = enrollment.uri.as_totp().unwrap();
    let code = totp
        .generate(enrollment.uri.secret(), clock.now())
        .unwrap()
        .to_string();
    let session = mfa
        .confirm_enrollment(&org, &alice, &session, &code)
        .await
        .unwrap()
        .session();
    let all = AuditQuery {
        limit: usize::MAX,
        ..AuditQuery::default()
    };
    let logged = |events: &[mfa_core::audit::StoredEvent], wanted: Rejection| {
        events
            .iter()
            .filter(|stored| {
                matches!(stored.event.kind, EventKind::AttemptRejected { reason, .. } if reason == wanted)
            })
            .count()
    };

    let before = mfa.audit(&org, &all).await.unwrap().len();
    for _ in 0..300 {
        assert!(matches!(
            mfa.verify_totp(&org, &alice, &session, "x").await,
            Err(ServiceError::Refused(Refusal::InvalidCode(_)))
        ));
    }
    let events = mfa.audit(&org, &all).await.unwrap();
    assert_eq!(
        events.len(),
        before + 1,
        "one event for 300 malformed codes"
    );
    assert_eq!(logged(&events, Rejection::Malformed), 1);

    // Half a minute later she signs in; a minute after the repeats, the next malformed code is
    // logged with the count of the repeats before it, stamped when it is written (after the
    // sign-in), so the log stays in time order and an export from a time on cannot skip it.
    clock.advance(COALESCE_WINDOW_SECS / 2);
    let now = totp
        .generate(enrollment.uri.secret(), clock.now())
        .unwrap()
        .to_string();
    let _passed = mfa.verify_totp(&org, &alice, &session, &now).await.unwrap();
    clock.advance(COALESCE_WINDOW_SECS / 2);
    let _ = mfa.verify_totp(&org, &alice, &session, "x").await;
    let events = mfa.audit(&org, &all).await.unwrap();
    assert_eq!(logged(&events, Rejection::Malformed), 2);
    assert!(
        events.windows(2).all(|w| w[0].event.at >= w[1].event.at),
        "newest first, in time order too: {events:#?}"
    );
    let counts: Vec<_> = events
        .iter()
        .filter_map(|stored| match stored.event.kind {
            EventKind::RejectionsCoalesced {
                reason,
                count,
                from,
                to,
                ..
            } => Some((reason, count, from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        counts,
        [(
            Rejection::Malformed,
            299,
            UnixTime::from_secs(T0),
            UnixTime::from_secs(T0)
        )]
    );

    // Wrong codes count toward lockout and are each logged; then the lockout's refusals coalesce.
    let before = mfa.audit(&org, &all).await.unwrap();
    for _ in 0..5 {
        let _ = mfa.verify_totp(&org, &alice, &session, "000000").await;
    }
    for _ in 0..100 {
        assert!(matches!(
            mfa.verify_totp(&org, &alice, &session, "000000").await,
            Err(ServiceError::Refused(Refusal::Locked { .. }))
        ));
    }
    let events = mfa.audit(&org, &all).await.unwrap();
    assert_eq!(
        logged(&events, Rejection::WrongCode) - logged(&before, Rejection::WrongCode),
        5
    );
    assert_eq!(
        logged(&events, Rejection::Locked),
        1,
        "the first while locked"
    );
    assert!(
        events.len() < before.len() + 5 + 2 + 2,
        "{} events",
        events.len()
    );
    // The record itself was never rewritten by the refusals while locked.
    let record: CustomerRecord = mfa
        .store()
        .load_customer(&org, &alice)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap()
        .value;
    assert_eq!(record.status(clock.now()).failures, 5);
}

/// The count of a customer's repeated refusals is written once the window is over with the next
/// refusal of anyone, not only when that customer comes back: an attacker who stops sending does
/// not keep the count out of the log.
#[tokio::test]
async fn a_closed_window_is_written_with_the_next_refusal_of_anyone() {
    let (org, alice, bob) = ids();
    let (mfa, clock) = fixture::service(MemoryStore::new(), T0, 4);
    mfa.set_org_mfa(&org, OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    let alice_session = mfa.login_step(&org, &alice).await.unwrap().session();
    let bob_session = mfa.login_step(&org, &bob).await.unwrap().session();
    for (who, session) in [(&alice, &alice_session), (&bob, &bob_session)] {
        let _enrollment = mfa.start_enrollment(&org, who, session).await.unwrap();
    }
    for _ in 0..50 {
        let _ = mfa
            .confirm_enrollment(&org, &alice, &alice_session, "x")
            .await;
    }
    let counted = |events: &[mfa_core::audit::StoredEvent]| {
        events
            .iter()
            .filter_map(
                |stored| match (&stored.event.kind, &stored.event.customer) {
                    (EventKind::RejectionsCoalesced { count, .. }, Some(who)) if who == &alice => {
                        Some(*count)
                    }
                    _ => None,
                },
            )
            .collect::<Vec<_>>()
    };
    let all = AuditQuery {
        limit: usize::MAX,
        ..AuditQuery::default()
    };
    clock.advance(COALESCE_WINDOW_SECS);
    let _ = mfa.confirm_enrollment(&org, &bob, &bob_session, "x").await;
    assert_eq!(counted(&mfa.audit(&org, &all).await.unwrap()), [49]);
}
