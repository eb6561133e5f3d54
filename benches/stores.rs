//! `stores`: one sign-in end to end through each store, beside the least work the database must do
//! for it; PostgreSQL's throughput with concurrent customers; and whether a sign-in slows down with
//! the number of customers stored.
//!
//! # What is timed
//!
//! - `sign_in/<store>/mfa`: [`Service::verify_totp`](mfa_core::Service::verify_totp) for an enrolled
//!   customer, with a fresh valid code each time (the customer's clock moves one 30 s step on and
//!   the code of the new step is typed; that costs under a microsecond): load the policy and the
//!   record, unseal the secret, verify, write the record back only if unchanged, with its
//!   `totp_accepted` event, in one transaction. It runs as a task on a multi-thread tokio runtime,
//!   as in a server.
//! - `sign_in/<store>/reference`: the least work the database must do for that sign-in, written
//!   directly with the same driver on a connection with the same settings: one transaction that
//!   updates one row (conditional on its version) and inserts one row, with the same bytes, the same
//!   tables and indexes, and statements prepared once. For SQLite, `BEGIN IMMEDIATE`, `UPDATE`,
//!   `INSERT`, `COMMIT` on the calling thread (WAL, `synchronous = FULL`, a file of its own on the
//!   same file system). For PostgreSQL, its cheapest honest form: one statement (a data-modifying
//!   `WITH`), so one round trip and one commit.
//! - `sign_in/<store>/reference_read_then_write`: the same, after one `SELECT` of the policy and
//!   the record, which any implementation must read to check a code (on PostgreSQL a second round
//!   trip, on the same connection). `sign_in/postgres/reference_4_round_trips`: `BEGIN`, `UPDATE`,
//!   `INSERT`, `COMMIT`, as most code writes it.
//! - `sign_in/<store>/store_load_customer`: one call to the store alone (`Store::load_customer`),
//!   what each of the service's calls costs beyond the database's own work.
//! - `sign_in/sqlx_sqlite/mfa`, `sign_in/sqlx_postgres/mfa`: the same sign-in through `mfa-sqlx`
//!   on a sqlx pool (4 SQLite connections, 16 PostgreSQL ones, no ping before each acquire),
//!   beside the same references.
//! - `postgres_throughput/{mfa,sqlx,reference}/<n>`: `n` customers signing in at once, each a task
//!   doing sign-ins back to back (the reference: `n` connections each doing its write); criterion
//!   reports sign-ins per second.
//! - `customers_stored/<store>/<n>`: the end-to-end sign-in again, with `n` customers (and as
//!   many audit events) stored. The filler goes in with set-based SQL (copies of real record, policy
//!   and event bytes); the benchmarked customer is a real enrollment, since a sealed secret only
//!   opens for the organisation and customer it was sealed for.
//!
//! Before anything is timed, each pair is checked to do the same job: a sign-in through the service
//! passes, the same code is then refused as a replay, and one more sign-in raises the record's
//! version by one and adds exactly one event; each form of the reference does the same to its own
//! row, with records and events of the same sizes.
//!
//! # Where
//!
//! The SQLite files go in `target/tmp/mfa-bench-<pid>/` (or `$MFA_BENCH_DIR`), a disk like a real
//! user's database rather than `/dev/shm`; the bench prints what `df -T` says about it, since a
//! durable commit costs an fsync there. PostgreSQL is `$MFA_BENCH_POSTGRES_URL` (or
//! `$MFA_TEST_POSTGRES_URL`), in a schema of its own per run, `mfa_bench_<pid>_<n>`, dropped at the
//! end; without either variable the PostgreSQL benches print that they were skipped.
//!
//! `$MFA_BENCH_CUSTOMERS` lists the sizes of `customers_stored` (default `1000,1000000`; seeding a
//! million customers takes seconds).
//!
//! Run: `MFA_BENCH_POSTGRES_URL=postgres://root@127.0.0.1:5432/mfa_ci cargo bench -p mfa-benches --bench stores`.

#[allow(
    dead_code,
    reason = "shared with the `rotation` bench, which uses a little more"
)]
#[path = "stores/postgres.rs"]
mod postgres;
#[path = "stores/sign_in.rs"]
mod sign_in;
#[path = "stores/sqlite.rs"]
mod sqlite;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use mfa_core::Store;
use tokio::runtime::Runtime;

use sign_in::SignIn;

/// The customer every single-customer bench signs in.
const ALICE: &str = "alice@acme.test";

/// The sizes of `customers_stored`, from `$MFA_BENCH_CUSTOMERS`.
fn store_sizes() -> Vec<u64> {
    std::env::var("MFA_BENCH_CUSTOMERS").map_or_else(
        |_| vec![1_000, 1_000_000],
        |list| {
            list.split(',')
                .map(|n| {
                    n.trim()
                        .replace('_', "")
                        .parse()
                        .expect("MFA_BENCH_CUSTOMERS: numbers")
                })
                .collect()
        },
    )
}

/// A multi-thread runtime, one worker per core, as a server's.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Settings for benches whose iterations take a hundred microseconds or more: every sample the
/// same number of iterations (criterion's linear sampling would need minutes), and fewer samples.
fn slow(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
}

/// The time `iters` sign-ins of `customer` take, back to back in one task on `runtime`.
fn time_sign_ins<S: Store + 'static>(
    runtime: &Runtime,
    customer: &Arc<SignIn<S>>,
    iters: u64,
) -> Duration {
    let customer = Arc::clone(customer);
    runtime
        .block_on(runtime.spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                let _ = black_box(customer.sign_in().await);
            }
            start.elapsed()
        }))
        .expect("the sign-ins ran")
}

/// The time `iters` reads of the customer's record through the store take (no service, no write),
/// back to back in one task on `runtime`.
fn time_loads<S: Store + 'static>(
    runtime: &Runtime,
    customer: &Arc<SignIn<S>>,
    iters: u64,
) -> Duration {
    let customer = Arc::clone(customer);
    runtime
        .block_on(runtime.spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                customer.load_record().await;
            }
            start.elapsed()
        }))
        .expect("the loads ran")
}

/// The SQLite store with Alice enrolled, and the reference on a file of its own, checked to do the
/// same job.
async fn sqlite_pair(
    dir: &sqlite::BenchDir,
) -> (Arc<SignIn<mfa_sqlite::SqliteStore>>, sqlite::Reference) {
    let path = dir.file("sign_in.sqlite3");
    let store = Arc::new(sqlite::open_store(&path).await);
    SignIn::switch_on(&store).await;
    let ours = SignIn::enroll(&store, ALICE).await;
    ours.assert_signs_in_once().await;

    let check = sqlite::connect(&path);
    let before = sqlite::counts(&check, ours.customer());
    let _ = ours.sign_in().await;
    let after = sqlite::counts(&check, ours.customer());
    assert_eq!(
        after,
        (before.0 + 1, before.1 + 1),
        "a sign-in raises the version by one and logs one event"
    );
    let (record, event, kind) = sqlite::last_write(&check, ours.customer());
    assert_eq!(kind, "totp_accepted");
    let policy = sqlite::policy(&check);
    drop(check);

    let reference_path = dir.file("reference.sqlite3");
    sqlite::open_store(&reference_path)
        .await
        .close()
        .await
        .expect("the store closes");
    let mut reference = sqlite::Reference::new(
        &reference_path,
        &policy,
        record.clone(),
        event.clone(),
        kind.clone(),
    );
    for read_first in [false, true] {
        let before = sqlite::counts(reference.connection(), reference.customer());
        if read_first {
            reference.read_then_write();
        } else {
            reference.write();
        }
        let after = sqlite::counts(reference.connection(), reference.customer());
        assert_eq!(
            after,
            (before.0 + 1, before.1 + 1),
            "the reference does the same (read first: {read_first})"
        );
    }
    let written = sqlite::last_write(reference.connection(), reference.customer());
    assert_eq!(
        (written.0.len(), written.1.len(), written.2),
        (record.len(), event.len(), kind),
        "the reference writes rows of the same sizes"
    );
    (Arc::new(ours), reference)
}

/// The PostgreSQL store with Alice enrolled, and the reference on its own connection and row,
/// checked to do the same job in both of its forms.
async fn postgres_pair(
    url: &str,
    schema: &postgres::BenchSchema,
) -> (
    Arc<SignIn<mfa_postgres::PostgresStore>>,
    postgres::Reference,
) {
    let store = Arc::new(schema.open_store().await);
    SignIn::switch_on(&store).await;
    let ours = SignIn::enroll(&store, ALICE).await;
    ours.assert_signs_in_once().await;

    let s = schema.quoted();
    let check = postgres::connect(url).await;
    let before = postgres::counts(&check, &s, ours.customer()).await;
    let _ = ours.sign_in().await;
    let after = postgres::counts(&check, &s, ours.customer()).await;
    assert_eq!(
        after,
        (before.0 + 1, before.1 + 1),
        "a sign-in raises the version by one and logs one event"
    );
    let (record, event, kind) = postgres::last_write(&check, &s, ours.customer()).await;
    assert_eq!(kind, "totp_accepted");

    let mut reference = postgres::Reference::new(
        url,
        &s,
        "reference@acme.test",
        record.clone(),
        event.clone(),
        kind.clone(),
    )
    .await;
    for form in [
        postgres::Form::OneStatement,
        postgres::Form::ReadThenOneStatement,
        postgres::Form::FourRoundTrips,
    ] {
        let before = postgres::counts(reference.client(), &s, reference.customer()).await;
        reference.write(form).await;
        let after = postgres::counts(reference.client(), &s, reference.customer()).await;
        assert_eq!(
            after,
            (before.0 + 1, before.1 + 1),
            "the reference ({form:?}) does the same"
        );
    }
    let written = postgres::last_write(reference.client(), &s, reference.customer()).await;
    assert_eq!(
        (written.0.len(), written.1.len(), written.2),
        (record.len(), event.len(), kind),
        "the reference writes rows of the same sizes"
    );
    (Arc::new(ours), reference)
}

/// A store of `mfa-sqlx` on a pool as a host would make one: a fresh SQLite file.
async fn sqlx_sqlite_store(dir: &sqlite::BenchDir) -> mfa_sqlx::SqliteStore {
    let path = dir.file("sqlx.sqlite3");
    // No ping before each acquire (sqlx's default pings): the store closes a connection that
    // failed itself, as mfa-postgres's pool recycles without a ping.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(mfa_sqlx::SqliteStore::connect_options(&path))
        .await
        .expect("the pool");
    mfa_sqlx::SqliteStore::new(pool).await.expect("the store")
}

/// A store of `mfa-sqlx` on a pool of 16 connections in `schema` (as many as `mfa-postgres`'s).
async fn sqlx_postgres_store(url: &str, schema: &postgres::BenchSchema) -> mfa_sqlx::PgStore {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect(url)
        .await
        .expect("the pool");
    mfa_sqlx::PgStore::with_options(pool, mfa_sqlx::PgOptions::default().schema(schema.name()))
        .await
        .expect("the store")
}

/// Alice enrolled on `store`, checked to sign in once.
async fn alice_on<S: Store + 'static>(store: S) -> Arc<SignIn<S>> {
    let store = Arc::new(store);
    SignIn::switch_on(&store).await;
    let alice = SignIn::enroll(&store, ALICE).await;
    alice.assert_signs_in_once().await;
    Arc::new(alice)
}

fn sign_in(c: &mut Criterion, runtime: &Runtime, dir: &sqlite::BenchDir, url: Option<&str>) {
    let mut group = c.benchmark_group("sign_in");
    slow(&mut group);

    let mut pair = None;
    let mut setup = || runtime.block_on(sqlite_pair(dir));
    group.bench_function("sqlite/mfa", |b| {
        let (ours, _) = pair.get_or_insert_with(&mut setup);
        b.iter_custom(|iters| time_sign_ins(runtime, ours, iters));
    });
    for (id, read_first) in [
        ("sqlite/reference", false),
        ("sqlite/reference_read_then_write", true),
    ] {
        group.bench_function(id, |b| {
            let (_, reference) = pair.get_or_insert_with(&mut setup);
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    if read_first {
                        reference.read_then_write();
                    } else {
                        reference.write();
                    }
                }
                start.elapsed()
            });
        });
    }
    group.bench_function("sqlite/store_load_customer", |b| {
        let (ours, _) = pair.get_or_insert_with(&mut setup);
        b.iter_custom(|iters| time_loads(runtime, ours, iters));
    });
    drop(pair);
    let mut alice = None;
    group.bench_function("sqlx_sqlite/mfa", |b| {
        let alice = alice.get_or_insert_with(|| {
            runtime.block_on(alice_on(runtime.block_on(sqlx_sqlite_store(dir))))
        });
        b.iter_custom(|iters| time_sign_ins(runtime, alice, iters));
    });
    drop(alice);

    let Some(url) = url else {
        group.finish();
        return;
    };
    let schema = postgres::BenchSchema::new(url);
    let mut pair = None;
    let mut setup = || {
        let (ours, reference) = runtime.block_on(postgres_pair(url, &schema));
        (ours, Arc::new(tokio::sync::Mutex::new(reference)))
    };
    group.bench_function("postgres/mfa", |b| {
        let (ours, _) = pair.get_or_insert_with(&mut setup);
        b.iter_custom(|iters| time_sign_ins(runtime, ours, iters));
    });
    for (id, form) in [
        ("postgres/reference", postgres::Form::OneStatement),
        (
            "postgres/reference_read_then_write",
            postgres::Form::ReadThenOneStatement,
        ),
        (
            "postgres/reference_4_round_trips",
            postgres::Form::FourRoundTrips,
        ),
    ] {
        group.bench_function(id, |b| {
            let (_, reference) = pair.get_or_insert_with(&mut setup);
            b.iter_custom(|iters| {
                let reference = Arc::clone(reference);
                runtime
                    .block_on(runtime.spawn(async move {
                        let mut reference = reference.lock().await;
                        let start = Instant::now();
                        for _ in 0..iters {
                            reference.write(form).await;
                        }
                        start.elapsed()
                    }))
                    .expect("the writes ran")
            });
        });
    }
    group.bench_function("postgres/store_load_customer", |b| {
        let (ours, _) = pair.get_or_insert_with(&mut setup);
        b.iter_custom(|iters| time_loads(runtime, ours, iters));
    });
    // The pool closes before the schema is dropped.
    drop(pair);
    drop(schema);
    let schema = postgres::BenchSchema::new(url);
    let mut alice = None;
    group.bench_function("sqlx_postgres/mfa", |b| {
        let alice = alice.get_or_insert_with(|| {
            runtime.block_on(async { alice_on(sqlx_postgres_store(url, &schema).await).await })
        });
        b.iter_custom(|iters| time_sign_ins(runtime, alice, iters));
    });
    drop(alice);
    drop(schema);
    group.finish();
}

/// `n` customers of one PostgreSQL store (each with a service of its own over the shared store and
/// pool), and `n` reference writers on connections of their own.
struct Crowd {
    customers: Vec<Arc<SignIn<mfa_postgres::PostgresStore>>>,
    references: Vec<Arc<tokio::sync::Mutex<postgres::Reference>>>,
}

async fn crowd(url: &str, schema: &postgres::BenchSchema, n: usize) -> Crowd {
    let store = Arc::new(schema.open_store().await);
    SignIn::switch_on(&store).await;
    let mut customers = Vec::new();
    for i in 0..n {
        let customer = SignIn::enroll(&store, &format!("customer{i}@acme.test")).await;
        customer.assert_signs_in_once().await;
        customers.push(Arc::new(customer));
    }
    let s = schema.quoted();
    let check = postgres::connect(url).await;
    let (record, event, kind) = postgres::last_write(&check, &s, customers[0].customer()).await;
    let mut references = Vec::new();
    for i in 0..n {
        let mut reference = postgres::Reference::new(
            url,
            &s,
            &format!("reference{i}@acme.test"),
            record.clone(),
            event.clone(),
            kind.clone(),
        )
        .await;
        reference.write(postgres::Form::OneStatement).await;
        references.push(Arc::new(tokio::sync::Mutex::new(reference)));
    }
    Crowd {
        customers,
        references,
    }
}

fn postgres_throughput(c: &mut Criterion, runtime: &Runtime, url: Option<&str>) {
    let Some(url) = url else {
        return;
    };
    let mut group = c.benchmark_group("postgres_throughput");
    slow(&mut group);
    for n in [1, 4, 16] {
        let schema = postgres::BenchSchema::new(url);
        let mut crowd_once = None;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("mfa/{n}"), |b| {
            let crowd = crowd_once.get_or_insert_with(|| runtime.block_on(crowd(url, &schema, n)));
            b.iter_custom(|iters| {
                let tasks: Vec<_> = crowd
                    .customers
                    .iter()
                    .map(|customer| {
                        let customer = Arc::clone(customer);
                        async move {
                            for _ in 0..iters {
                                let _ = black_box(customer.sign_in().await);
                            }
                        }
                    })
                    .collect();
                time_all(runtime, tasks)
            });
        });
        group.bench_function(format!("reference/{n}"), |b| {
            let crowd = crowd_once.get_or_insert_with(|| runtime.block_on(crowd(url, &schema, n)));
            b.iter_custom(|iters| {
                let tasks: Vec<_> = crowd
                    .references
                    .iter()
                    .map(|reference| {
                        let reference = Arc::clone(reference);
                        async move {
                            let mut reference = reference.lock().await;
                            for _ in 0..iters {
                                reference.write(postgres::Form::OneStatement).await;
                            }
                        }
                    })
                    .collect();
                time_all(runtime, tasks)
            });
        });
        drop(crowd_once);
        drop(schema);
        let schema = postgres::BenchSchema::new(url);
        let mut sqlx_crowd = None;
        group.bench_function(format!("sqlx/{n}"), |b| {
            let customers = sqlx_crowd.get_or_insert_with(|| {
                runtime.block_on(async {
                    let store = Arc::new(sqlx_postgres_store(url, &schema).await);
                    SignIn::switch_on(&store).await;
                    let mut customers = Vec::new();
                    for i in 0..n {
                        let customer =
                            SignIn::enroll(&store, &format!("customer{i}@acme.test")).await;
                        customer.assert_signs_in_once().await;
                        customers.push(Arc::new(customer));
                    }
                    customers
                })
            });
            b.iter_custom(|iters| {
                let tasks: Vec<_> = customers
                    .iter()
                    .map(|customer| {
                        let customer = Arc::clone(customer);
                        async move {
                            for _ in 0..iters {
                                let _ = black_box(customer.sign_in().await);
                            }
                        }
                    })
                    .collect();
                time_all(runtime, tasks)
            });
        });
        drop(sqlx_crowd);
        drop(schema);
    }
    group.finish();
}

/// Spawns every task at once on `runtime` and returns the time until the last one ends.
fn time_all<F>(runtime: &Runtime, tasks: Vec<F>) -> Duration
where
    F: Future<Output = ()> + Send + 'static,
{
    runtime.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        for handle in handles {
            handle.await.expect("the task ran");
        }
        start.elapsed()
    })
}

/// A SQLite store with `n` customers (Alice, enrolled, and filler) and as many events.
async fn sqlite_with(dir: &sqlite::BenchDir, n: u64) -> Arc<SignIn<mfa_sqlite::SqliteStore>> {
    let path = dir.file(&format!("customers_{n}.sqlite3"));
    let store = Arc::new(sqlite::open_store(&path).await);
    SignIn::switch_on(&store).await;
    let alice = SignIn::enroll(&store, ALICE).await;
    let _ = alice.sign_in().await;
    let (record, event, _) = sqlite::last_write(&sqlite::connect(&path), ALICE);
    let policy = sqlite::policy(&sqlite::connect(&path));
    let start = Instant::now();
    sqlite::seed(&path, n, &record, &policy, &event);
    eprintln!(
        "customers_stored/sqlite/{n}: seeded in {:.1?}",
        start.elapsed()
    );
    alice.assert_signs_in_once().await;
    Arc::new(alice)
}

/// A PostgreSQL store with `n` customers (Alice, enrolled, and filler) and as many events.
async fn postgres_with(
    url: &str,
    schema: &postgres::BenchSchema,
    n: u64,
) -> Arc<SignIn<mfa_postgres::PostgresStore>> {
    let store = Arc::new(schema.open_store().await);
    SignIn::switch_on(&store).await;
    let alice = SignIn::enroll(&store, ALICE).await;
    let _ = alice.sign_in().await;
    let s = schema.quoted();
    let client = postgres::connect(url).await;
    let (record, event, _) = postgres::last_write(&client, &s, ALICE).await;
    let policy = postgres::policy(&client, &s).await;
    let start = Instant::now();
    postgres::seed(&client, &s, n, &record, &policy, &event).await;
    eprintln!(
        "customers_stored/postgres/{n}: seeded in {:.1?}",
        start.elapsed()
    );
    alice.assert_signs_in_once().await;
    Arc::new(alice)
}

fn customers_stored(
    c: &mut Criterion,
    runtime: &Runtime,
    dir: &sqlite::BenchDir,
    url: Option<&str>,
) {
    let mut group = c.benchmark_group("customers_stored");
    slow(&mut group);
    for n in store_sizes() {
        let mut alice = None;
        group.bench_function(format!("sqlite/{n}"), |b| {
            let alice = alice.get_or_insert_with(|| runtime.block_on(sqlite_with(dir, n)));
            b.iter_custom(|iters| time_sign_ins(runtime, alice, iters));
        });
        // The store's thread closes the file; then it goes, so the largest files never pile up.
        drop(alice);
        let _ = std::fs::remove_file(dir.file(&format!("customers_{n}.sqlite3")));

        if let Some(url) = url {
            let schema = postgres::BenchSchema::new(url);
            let mut alice = None;
            group.bench_function(format!("postgres/{n}"), |b| {
                let alice =
                    alice.get_or_insert_with(|| runtime.block_on(postgres_with(url, &schema, n)));
                b.iter_custom(|iters| time_sign_ins(runtime, alice, iters));
            });
            drop(alice);
            drop(schema);
        }
    }
    group.finish();
}

fn main() {
    let runtime = runtime();
    let dir = sqlite::BenchDir::new();
    eprintln!(
        "SQLite files in {}; df -T: {}",
        dir.path().display(),
        dir.file_system()
    );
    let url = postgres::url();
    let mut criterion = Criterion::default().configure_from_args();
    sign_in(&mut criterion, &runtime, &dir, url.as_deref());
    postgres_throughput(&mut criterion, &runtime, url.as_deref());
    customers_stored(&mut criterion, &runtime, &dir, url.as_deref());
    criterion.final_summary();
}
