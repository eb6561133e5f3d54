//! The database goes away: a connection killed in the middle of a write, a server that cannot be
//! reached, a network cut while a write is in flight. Each gives a typed error, never a panic or a
//! wrong answer; nothing is half-written; and the next request works once the database is back.
//!
//! "Unreachable" is made with a small TCP proxy between the store and the server, which the test
//! cuts (closing every connection through it and refusing new ones) and restores.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Proxy, TestStore, fresh_schema, raw_client, test_store, test_store_with, through_proxy, url,
};
use mfa_core::{
    Actor, CustomerId, ManualClock, MfaSession, OrgId, OrgMfa, Refusal, Service, ServiceError,
    Store,
    audit::{AuditQuery, EventKind},
    store::Version,
    uri::KeyUri,
};
use mfa_postgres::{PostgresError, PostgresOptions, PostgresStore};
use mfa_store_tests::HookedError;
use mfa_store_tests::fixture::{self, SoftApp};
use rand_chacha::ChaCha20Rng;

type Mfa<S> = Service<S, ManualClock, ChaCha20Rng>;

fn ids() -> (OrgId, CustomerId) {
    (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice").unwrap(),
    )
}

/// The kit's service: a manual clock at its `T0`, a fixed keyring, a seeded RNG.
fn service<S: Store>(store: S) -> (Mfa<S>, ManualClock) {
    mfa_store_tests::fixture::service(store, mfa_store_tests::T0, 5)
}

/// Switches `acme` on and configures `alice`; returns her key URI and the session that enrolled
/// her, with the clock one step on.
async fn configured<S: Store>(mfa: &Mfa<S>, clock: &ManualClock) -> (KeyUri, MfaSession) {
    let (acme, alice) = ids();
    let settings = fixture::fast_settings();
    mfa.update_settings(&acme, settings, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    mfa.set_org_mfa(&acme, OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    let session = mfa.login_step(&acme, &alice).await.unwrap().session();
    let enrollment = mfa.start_enrollment(&acme, &alice, &session).await.unwrap();
    let code = app_code(&enrollment.uri, clock);
    let passed = mfa
        .confirm_enrollment(&acme, &alice, &session, &code)
        .await
        .unwrap();
    clock.advance(30);
    (enrollment.uri, passed.session())
}

fn app_code(uri: &KeyUri, clock: &ManualClock) -> String {
    SoftApp::scan(uri).code_now(clock, 0)
}

/// Alice's record version and how many sign-ins with an app code the log holds for her.
async fn written<S: Store>(store: &S) -> (Version, usize) {
    let (acme, alice) = ids();
    let version = store
        .load_customer(&acme, &alice)
        .await
        .unwrap()
        .unwrap()
        .decode()
        .unwrap()
        .version;
    let accepted = store
        .audit(
            &acme,
            &AuditQuery {
                customer: Some(alice),
                before_seq: None,
                limit: 1_000,
            },
        )
        .await
        .unwrap()
        .iter()
        .filter(|stored| matches!(stored.event.kind, EventKind::TotpAccepted { .. }))
        .count();
    (version, accepted)
}

/// Locks Alice's row from another connection, as a long transaction would, so a write to it waits
/// in the server. Returns the connection; `ROLLBACK` on it lets the write go on.
async fn hold_row_lock(url: &str, schema: &str) -> tokio_postgres::Client {
    let client = raw_client(url).await;
    client
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM \"{schema}\".customers
             WHERE org = 'acme' AND customer = 'alice' FOR UPDATE;"
        ))
        .await
        .unwrap();
    client
}

/// The server process of the connection whose statement waits for a lock on `schema`'s customers.
async fn waiting_backend(url: &str, schema: &str) -> i32 {
    let client = raw_client(url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%customers%'",
                &[&format!("\"{schema}\"")],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(
            Instant::now() < deadline,
            "the write never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_write_leaves_nothing_and_the_next_request_works() {
    let Some(store) = test_store("killed").await else {
        return;
    };
    let store = Arc::new(store);
    let (url, schema) = (store.hooks.url.clone(), store.store.schema().to_owned());
    let (mfa, clock) = service(Arc::clone(&store));
    let (uri, session) = configured(&mfa, &clock).await;
    let code = app_code(&uri, &clock);
    let before = written(&store).await;

    let lock = hold_row_lock(&url, &schema).await;
    let mfa = Arc::new(mfa);
    let attempt = {
        let (mfa, code) = (Arc::clone(&mfa), code.clone());
        tokio::spawn(async move {
            let (acme, alice) = ids();
            mfa.verify_totp(&acme, &alice, &session, &code).await
        })
    };
    // The write waits on the lock, inside the server; the server kills its connection.
    let pid = waiting_backend(&url, &schema).await;
    let killer = raw_client(&url).await;
    let killed: bool = killer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    match attempt.await.unwrap() {
        Err(ServiceError::Store(HookedError::Store(PostgresError::Postgres(_)))) => {}
        other => panic!("expected a typed store error, got {other:?}"),
    }
    lock.batch_execute("ROLLBACK").await.unwrap();

    // The killed transaction rolled back: the record and the log are as they were.
    assert_eq!(written(&store).await, before);
    // The pool drops the dead connection; the same code now works, once.
    let (acme, alice) = ids();
    let _ = mfa
        .verify_totp(&acme, &alice, &session, &code)
        .await
        .unwrap();
    assert_eq!(written(&store).await.1, before.1 + 1);
    assert!(matches!(
        mfa.verify_totp(&acme, &alice, &session, &code).await,
        Err(ServiceError::Refused(Refusal::ReplayedCode))
    ));
}

/// The store over the proxy, and the same schema directly (to look at what was written).
async fn proxied_store(label: &str) -> Option<(Proxy, Arc<PostgresStore>, TestStore)> {
    proxied_store_with(
        label,
        PostgresOptions::default().timeout(Duration::from_secs(2)),
    )
    .await
}

async fn proxied_store_with(
    label: &str,
    options: PostgresOptions,
) -> Option<(Proxy, Arc<PostgresStore>, TestStore)> {
    let url = url()?;
    let direct =
        test_store_with(&url, PostgresOptions::default().schema(fresh_schema(label))).await;
    let (upstream, make) = through_proxy(&url);
    let proxy = Proxy::start(upstream).await;
    let proxied =
        PostgresStore::connect_with(make(proxy.port), options.schema(direct.store.schema()))
            .await
            .unwrap();
    Some((proxy, Arc::new(proxied), direct))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_typed_error_and_service_resumes_when_it_is_back() {
    let Some((proxy, store, direct)) = proxied_store("unreachable").await else {
        return;
    };
    let (mfa, clock) = service(Arc::clone(&store));
    let (uri, session) = configured(&mfa, &clock).await;
    let code = app_code(&uri, &clock);
    let (acme, alice) = ids();
    let before = written(&direct).await;

    proxy.down().await;
    for _ in 0..3 {
        let started = Instant::now();
        match mfa.verify_totp(&acme, &alice, &session, &code).await {
            Err(ServiceError::Store(PostgresError::Pool(_) | PostgresError::Postgres(_))) => {}
            other => panic!("expected a typed store error, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "an outage must not hang a sign-in"
        );
        assert!(matches!(
            mfa.status(&acme, &alice).await,
            Err(ServiceError::Store(_))
        ));
    }
    assert_eq!(
        written(&direct).await,
        before,
        "nothing was written while down"
    );

    proxy.up();
    let _ = mfa
        .verify_totp(&acme, &alice, &session, &code)
        .await
        .unwrap();
    assert_eq!(written(&direct).await.1, before.1 + 1);
    assert!(matches!(
        mfa.verify_totp(&acme, &alice, &session, &code).await,
        Err(ServiceError::Refused(Refusal::ReplayedCode))
    ));
}

/// The network is cut after the write was sent and before its answer came back. The server may
/// still commit it (the request had reached it whole): the caller sees an error and must treat the
/// outcome as unknown. Whatever happened, the record and its event are there together or not at
/// all, and the code is accepted exactly once over both tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_during_a_write_never_lets_a_code_count_twice() {
    let Some((proxy, store, direct)) = proxied_store("cut").await else {
        return;
    };
    let (mfa, clock) = service(Arc::clone(&store));
    let (uri, session) = configured(&mfa, &clock).await;
    let code = app_code(&uri, &clock);
    let (acme, alice) = ids();
    let before = written(&direct).await;

    let lock = hold_row_lock(&direct.hooks.url, direct.store.schema()).await;
    let mfa = Arc::new(mfa);
    let attempt = {
        let (mfa, code) = (Arc::clone(&mfa), code.clone());
        tokio::spawn(async move {
            let (acme, alice) = ids();
            mfa.verify_totp(&acme, &alice, &session, &code).await
        })
    };
    let _ = waiting_backend(&direct.hooks.url, direct.store.schema()).await;
    proxy.down().await;
    let first = attempt.await.unwrap();
    assert!(
        matches!(first, Err(ServiceError::Store(_))),
        "the caller cannot know: {first:?}"
    );
    // The server goes on with the statement it received once the lock is free.
    lock.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (version, accepted) = written(&direct).await;
    let committed = accepted == before.1 + 1;
    assert!(accepted == before.1 || committed, "{accepted}");
    assert_eq!(
        version.0 - before.0.0,
        u64::from(committed),
        "the record and its event are written together or not at all"
    );

    proxy.up();
    let second = mfa.verify_totp(&acme, &alice, &session, &code).await;
    if committed {
        assert!(
            matches!(second, Err(ServiceError::Refused(Refusal::ReplayedCode))),
            "{second:?}"
        );
    } else {
        let _ = second.unwrap();
    }
    assert_eq!(
        written(&direct).await.1,
        before.1 + 1,
        "accepted exactly once"
    );
}

/// The store-generic outage checks of `mfa-store-tests`, with the network to the server cut (every
/// connection closed, new ones refused) while the database is "away".
struct Cut(Proxy);

impl mfa_store_tests::Outage for Cut {
    async fn begin(&self) {
        self.0.down().await;
    }

    async fn end(&self) {
        self.0.up();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_cleanly_while_the_network_is_cut() {
    let Some((proxy, store, _direct)) = proxied_store("generic").await else {
        return;
    };
    let errors = mfa_store_tests::requests_fail_cleanly_while_the_database_is_away(
        store,
        Cut(proxy),
        Duration::from_secs(10),
    )
    .await;
    assert!(!errors.is_empty());
    assert!(
        errors.iter().all(|error| matches!(
            error,
            ServiceError::Store(PostgresError::Pool(_) | PostgresError::Postgres(_))
        )),
        "{errors:?}"
    );
}

/// The server stops answering without closing anything (a partition, a frozen host): statements get
/// no answer, new connections no handshake. Requests fail with a typed error once the query or
/// connect timeout passes, instead of hanging, and work again when the network does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out_instead_of_hanging() {
    let options = PostgresOptions::default()
        .timeout(Duration::from_millis(500))
        .query_timeout(Duration::from_millis(500));
    let Some((proxy, store, direct)) = proxied_store_with("silent", options).await else {
        return;
    };
    let (mfa, clock) = service(Arc::clone(&store));
    let (uri, session) = configured(&mfa, &clock).await;
    let code = app_code(&uri, &clock);
    let (acme, alice) = ids();
    let before = written(&direct).await;

    proxy.freeze();
    for _ in 0..3 {
        let started = Instant::now();
        match mfa.verify_totp(&acme, &alice, &session, &code).await {
            Err(ServiceError::Store(PostgresError::Timeout | PostgresError::Pool(_))) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        written(&direct).await,
        before,
        "nothing was written while silent"
    );

    proxy.thaw();
    let _ = mfa
        .verify_totp(&acme, &alice, &session, &code)
        .await
        .unwrap();
    assert_eq!(written(&direct).await.1, before.1 + 1);
    proxy.down().await;
}
