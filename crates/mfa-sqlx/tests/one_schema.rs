//! One schema, any driver: a database written through one driver is read and written through the
//! other, both ways, on both engines. The first store enrolls a customer, signs her in and logs;
//! the second reads her as she is (a used step stays used), rotates the sealing key, signs her in
//! and exports the audit log with every event of both; then the first again, with the new key only.

mod common;

use mfa_core::{
    KeyId, KeyRing, ManualClock, Refusal, Resealed, SealingKey, Service, ServiceError, Store,
    audit::AuditExport,
};
use mfa_store_tests::fixture::{self, Enrolled, acme, at_step, first_step};
use mfa_store_tests::{TempDb, fresh_schema, postgres_url};
use rand_chacha::ChaCha20Rng;

const OLD_KEY: [u8; 32] = [9; 32];
const NEW_KEY: [u8; 32] = [4; 32];

/// The keyring after a rotation: the new key active, the old one kept to open what it sealed.
fn rotated() -> KeyRing {
    let mut keys = KeyRing::new(SealingKey::new(KeyId::new(1), OLD_KEY));
    keys.add(SealingKey::new(KeyId::new(2), NEW_KEY)).unwrap();
    keys.set_active(KeyId::new(2)).unwrap();
    keys
}

fn with_keys<S: Store>(
    store: S,
    keys: KeyRing,
    clock: &ManualClock,
) -> Service<S, ManualClock, ChaCha20Rng> {
    Service::new(store, clock.clone(), keys, fixture::rng(7))
}

/// Every event of `acme`, oldest first, read a page of 2 at a time (an export's cursor).
async fn export<S: Store>(store: &S) -> Vec<(u64, &'static str)> {
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .export_audit(
                &acme(),
                &AuditExport {
                    after_seq: after,
                    limit: 2,
                    ..AuditExport::default()
                },
            )
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return events;
        };
        after = Some(last.seq);
        events.extend(
            page.iter()
                .map(|stored| (stored.seq, stored.event.kind_name())),
        );
    }
}

async fn hand_over<A: Store, B: Store>(
    first: A,
    open_second: impl AsyncFnOnce() -> B,
    reopen_first: impl AsyncFnOnce() -> A,
) {
    // The first driver: enrolled (key 1), one sign-in.
    let (mfa, clock) = fixture::service(first, mfa_store_tests::T0, 1);
    fixture::switch_on(&mfa).await;
    let alice = Enrolled::new(&mfa, &clock, "alice").await;
    let step = first_step() + 2;
    clock.set(at_step(step, 1));
    let _passed = mfa
        .verify_totp(&acme(), &alice.id, &alice.session, &alice.code(step))
        .await
        .unwrap();
    let written = export(mfa.store()).await;
    drop(mfa);

    // The second driver reads her as she is: that step stays used.
    let second = with_keys(open_second().await, rotated(), &clock);
    assert!(matches!(
        second
            .verify_totp(&acme(), &alice.id, &alice.session, &alice.code(step))
            .await,
        Err(ServiceError::Refused(Refusal::ReplayedCode))
    ));
    assert_eq!(
        second.store().count_sealed().await.unwrap(),
        [(KeyId::new(1), 1)]
    );
    assert_eq!(
        second.reseal(&acme(), &alice.id).await.unwrap(),
        Resealed::Moved {
            from: KeyId::new(1),
            to: KeyId::new(2)
        }
    );
    clock.set(at_step(step + 1, 1));
    let _passed = second
        .verify_totp(&acme(), &alice.id, &alice.session, &alice.code(step + 1))
        .await
        .unwrap();
    let both = export(second.store()).await;
    assert_eq!(
        &both[..written.len()],
        &written[..],
        "the first driver's events, as written"
    );
    assert_eq!(
        both[written.len()..]
            .iter()
            .map(|(_, kind)| *kind)
            .collect::<Vec<_>>(),
        ["attempt_rejected", "secret_resealed", "totp_accepted"]
    );
    drop(second);

    // The first driver again, with the new key alone.
    let new_only = KeyRing::new(SealingKey::new(KeyId::new(2), NEW_KEY));
    let first = with_keys(reopen_first().await, new_only, &clock);
    assert_eq!(
        first.store().count_sealed().await.unwrap(),
        [(KeyId::new(2), 1)]
    );
    clock.set(at_step(step + 2, 1));
    let accepted = first
        .verify_totp(&acme(), &alice.id, &alice.session, &alice.code(step + 2))
        .await
        .unwrap();
    assert_eq!(accepted.passed.customer(), &alice.id);
    assert_eq!(&export(first.store()).await[..both.len()], &both[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_written_by_rusqlite_is_read_by_sqlx_and_back() {
    let db = TempDb::new("one-schema-a");
    let path = db.path().to_owned();
    hand_over(
        mfa_sqlite::SqliteStore::open(&path).await.unwrap(),
        async || {
            mfa_sqlx::SqliteStore::new(common::sqlite_pool(&path).await)
                .await
                .unwrap()
        },
        async || mfa_sqlite::SqliteStore::open(&path).await.unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_written_by_sqlx_is_read_by_rusqlite_and_back() {
    let db = TempDb::new("one-schema-b");
    let path = db.path().to_owned();
    hand_over(
        mfa_sqlx::SqliteStore::new(common::sqlite_pool(&path).await)
            .await
            .unwrap(),
        async || mfa_sqlite::SqliteStore::open(&path).await.unwrap(),
        async || {
            mfa_sqlx::SqliteStore::new(common::sqlite_pool(&path).await)
                .await
                .unwrap()
        },
    )
    .await;
}

async fn postgres_store(url: &str, schema: &str) -> mfa_postgres::PostgresStore {
    mfa_postgres::PostgresStore::connect_with(
        url.parse().unwrap(),
        mfa_postgres::PostgresOptions::default().schema(schema),
    )
    .await
    .unwrap()
}

async fn sqlx_store(url: &str, schema: &str) -> mfa_sqlx::PgStore {
    mfa_sqlx::PgStore::with_options(
        common::pg_pool(url).await,
        mfa_sqlx::PgOptions::default().schema(schema),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_written_by_tokio_postgres_is_read_by_sqlx_and_back() {
    let Some(url) = postgres_url() else { return };
    let schema = common::Schema {
        name: fresh_schema("one_schema_a"),
        url: url.clone(),
    };
    hand_over(
        postgres_store(&url, &schema.name).await,
        async || sqlx_store(&url, &schema.name).await,
        async || postgres_store(&url, &schema.name).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_written_by_sqlx_is_read_by_tokio_postgres_and_back() {
    let Some(url) = postgres_url() else { return };
    let schema = common::Schema {
        name: fresh_schema("one_schema_b"),
        url: url.clone(),
    };
    hand_over(
        sqlx_store(&url, &schema.name).await,
        async || postgres_store(&url, &schema.name).await,
        async || sqlx_store(&url, &schema.name).await,
    )
    .await;
}
