//! `rotation`: `mfa admin keys rotate` on a million stored customers, on SQLite and on PostgreSQL.
//!
//! Every customer is a real enrollment (a secret sealed under key 1 for that organisation and
//! customer, confirmed with its code), made with `mfa-core` in memory and copied into the store's
//! tables in bulk, since a sealed secret only opens for the customer it was sealed for. Then the
//! real `mfa` binary (built in release) rotates to key 2 while the clock runs, and afterwards the
//! bench checks the outcome through the store: every secret is under key 2, and a sample of
//! customers signs in with a keyring that holds key 2 only.
//!
//! Variables: `MFA_BENCH_ROTATION_CUSTOMERS` (default 1,000,000), `MFA_BENCH_ROTATION_STORES`
//! (default `sqlite,postgres`), `MFA_BENCH_DIR` (where the SQLite file goes; default `target/tmp`), `MFA_BENCH_POSTGRES_URL` or `MFA_TEST_POSTGRES_URL` (without
//! either, PostgreSQL is skipped with a message).
//!
//! Run: `MFA_BENCH_POSTGRES_URL=postgres://root@127.0.0.1:5432/mfa_ci cargo bench -p mfa-benches --bench rotation`.

#[allow(
    dead_code,
    reason = "shared with the `stores` bench, which uses the rest"
)]
#[path = "stores/postgres.rs"]
mod postgres;
#[allow(
    dead_code,
    reason = "shared with the `stores` bench, which uses the rest"
)]
#[path = "stores/sign_in.rs"]
mod sign_in;
#[allow(
    dead_code,
    reason = "shared with the `stores` bench, which uses the rest"
)]
#[path = "stores/sqlite.rs"]
mod sqlite;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mfa_core::{
    CustomerId, KeyId, KeyRing, LoginStep, ManualClock, OrgId, OrgMfa, OrgPolicy, SealingKey,
    Service, Store, UnixTime,
    machine::{Context, CustomerRecord},
    uri::KeyUri,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600;
/// Customers per organisation.
const PER_ORG: u64 = 1000;
/// How many customers sign in afterwards, spread over the whole range.
const SAMPLE: u64 = 100;

const OLD_KEY: [u8; 32] = [7; 32];
const NEW_KEY: [u8; 32] = [9; 32];

/// One stored customer.
struct Row {
    org: String,
    customer: String,
    record: Vec<u8>,
}

fn ids(i: u64) -> (String, String) {
    (
        format!("org{:06}", i / PER_ORG),
        format!("customer{i:07}@example.test"),
    )
}

fn is_sampled(i: u64, customers: u64) -> bool {
    i.is_multiple_of((customers / SAMPLE).max(1))
}

/// `customers` configured customers under key 1, made on two threads; and the key URIs of the
/// sampled ones.
fn enroll(customers: u64) -> (Vec<Row>, Vec<(u64, KeyUri)>) {
    let halves = [(0, customers / 2), (customers / 2, customers)];
    std::thread::scope(|scope| {
        let workers: Vec<_> = halves
            .into_iter()
            .map(|(from, to)| scope.spawn(move || enroll_range(from, to, customers)))
            .collect();
        let mut rows = Vec::new();
        let mut sampled = Vec::new();
        for worker in workers {
            let (part, uris) = worker.join().expect("enrollment thread");
            rows.extend(part);
            sampled.extend(uris);
        }
        (rows, sampled)
    })
}

fn enroll_range(from: u64, to: u64, customers: u64) -> (Vec<Row>, Vec<(u64, KeyUri)>) {
    let keys = KeyRing::new(SealingKey::new(KeyId::new(1), OLD_KEY));
    let policy = OrgPolicy::default().with_mfa(OrgMfa::On);
    let mut rng = ChaCha20Rng::seed_from_u64(from);
    let now = UnixTime::from_secs(T0);
    let mut rows = Vec::new();
    let mut sampled = Vec::new();
    for i in from..to {
        let (org, customer) = ids(i);
        let (org_id, customer_id) = (
            OrgId::new(org.as_str()).expect("id"),
            CustomerId::new(customer.as_str()).expect("id"),
        );
        let ctx = Context {
            org: &org_id,
            customer: &customer_id,
            now,
        };
        let record = CustomerRecord::default();
        let LoginStep::Enroll(session) = record.login_step(&policy, &ctx) else {
            panic!("MFA is on and the customer has none: enroll");
        };
        let (pending, _, enrollment) = record
            .start_enrollment(&session, &policy, &keys, &ctx, &mut rng)
            .into_parts();
        let (pending, enrollment) = (pending.expect("a record"), enrollment.expect("enrolled"));
        let uri = enrollment.uri;
        let code = uri
            .as_totp()
            .expect("TOTP")
            .generate(uri.secret(), now)
            .expect("after T0")
            .to_string();
        let (configured, _, passed) = pending
            .confirm_enrollment(&session, &code, &policy, &keys, &ctx, &mut rng)
            .into_parts();
        let _passed = passed.expect("confirmed");
        rows.push(Row {
            org,
            customer,
            record: configured.expect("a record").to_bytes(),
        });
        if is_sampled(i, customers) {
            sampled.push((i, uri));
        }
    }
    (rows, sampled)
}

/// Builds the `mfa` binary in release and gives its path.
fn mfa_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "mfa-cli",
            "--bin",
            "mfa",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the mfa binary builds");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("release/mfa")
}

/// Writes `id:hex` to `path`, readable by its owner only.
fn key_file(path: &Path, id: u32, key: &[u8; 32]) {
    use std::os::unix::fs::OpenOptionsExt;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("a key file");
    std::io::Write::write_all(&mut file, format!("{id}:{hex}\n").as_bytes()).expect("written");
}

/// Runs `mfa admin ... keys rotate` and gives how long it took.
fn rotate(mfa: &Path, database: &[&str], dir: &Path) -> Duration {
    let (old, new) = (dir.join("old.key"), dir.join("new.key"));
    let start = Instant::now();
    let output = Command::new(mfa)
        .arg("admin")
        .args(database)
        .args(["keys", "rotate", "--new-key-file"])
        .arg(&new)
        .arg("--key-file")
        .arg(&old)
        .output()
        .expect("mfa runs");
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the rotation succeeds: {stderr}{}",
        String::from_utf8_lossy(&output.stdout)
    );
    if let Some(last) = String::from_utf8_lossy(&output.stdout).lines().last() {
        println!("  mfa: {last}");
    }
    took
}

/// Every secret is under key 2, and the sampled customers sign in with key 2 alone.
async fn check<S: Store>(store: S, customers: u64, sampled: &[(u64, KeyUri)]) {
    let counts = store.count_sealed().await.expect("count");
    assert_eq!(
        counts,
        vec![(KeyId::new(2), customers)],
        "every secret moved"
    );
    let clock = ManualClock::new(UnixTime::from_secs(T0 + 60));
    let service = Service::new(
        store,
        clock.clone(),
        KeyRing::new(SealingKey::new(KeyId::new(2), NEW_KEY)),
        ChaCha20Rng::seed_from_u64(1),
    );
    for (i, uri) in sampled {
        let (org, customer) = ids(*i);
        let code = uri
            .as_totp()
            .expect("TOTP")
            .generate(uri.secret(), mfa_core::Clock::now(&clock))
            .expect("after T0")
            .to_string();
        let (org, customer) = (
            OrgId::new(org).expect("id"),
            CustomerId::new(customer).expect("id"),
        );
        let session = service
            .login_step(&org, &customer)
            .await
            .expect("the store answers")
            .session();
        let _passed = service
            .verify_totp(&org, &customer, &session, &code)
            .await
            .expect("signs in under the new key");
    }
}

fn report(store: &str, customers: u64, took: Duration) {
    #[allow(clippy::cast_precision_loss, reason = "a rate for people to read")]
    let rate = customers as f64 / took.as_secs_f64();
    println!(
        "{store}: rotated {customers} secrets in {:.1} s ({rate:.0} per second)",
        took.as_secs_f64()
    );
}

async fn sqlite_run(mfa: &Path, rows: &[Row], sampled: &[(u64, KeyUri)], keys: &Path) {
    let dir = sqlite::BenchDir::new();
    let path = dir.file("rotation.db");
    println!("SQLite file on: {}", dir.file_system());
    // The store creates and migrates the file; the rows then go in as one transaction.
    mfa_sqlite::SqliteStore::open(&path)
        .await
        .expect("opens")
        .close()
        .await
        .expect("closes");
    let start = Instant::now();
    {
        let mut connection = rusqlite::Connection::open(&path).expect("opens");
        let transaction = connection.transaction().expect("begin");
        {
            let mut insert = transaction
                .prepare(
                    "INSERT INTO customers (org, customer, version, state, sealing_key_id, record)
                     VALUES (?1, ?2, 1, 'configured', 1, ?3)",
                )
                .expect("prepare");
            for row in rows {
                insert
                    .execute(rusqlite::params![row.org, row.customer, row.record])
                    .expect("insert");
            }
        }
        transaction.commit().expect("commit");
    }
    println!("  seeded in {:.1} s", start.elapsed().as_secs_f64());
    let url = format!("sqlite://{}", path.display());
    let took = rotate(mfa, &["--database-url", &url], keys);
    report("SQLite", rows.len() as u64, took);
    let store = mfa_sqlite::SqliteStore::open(&path).await.expect("opens");
    check(Arc::new(store), rows.len() as u64, sampled).await;
}

async fn postgres_run(mfa: &Path, url: &str, rows: &[Row], sampled: &[(u64, KeyUri)], keys: &Path) {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;

    let schema = postgres::BenchSchema::new(url);
    let store = schema.open_store().await;
    store.close();
    let client = postgres::connect(url).await;
    let start = Instant::now();
    let sink = client
        .copy_in(&format!(
            "COPY {}.customers (org, customer, version, state, sealing_key_id, record)
             FROM STDIN BINARY",
            schema.quoted()
        ))
        .await
        .expect("copy");
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::BYTEA,
        ],
    );
    let mut writer = std::pin::pin!(writer);
    for row in rows {
        writer
            .as_mut()
            .write(&[
                &row.org,
                &row.customer,
                &1_i64,
                &"configured",
                &1_i64,
                &row.record,
            ])
            .await
            .expect("row");
    }
    writer.finish().await.expect("copied");
    client
        .batch_execute(&format!("VACUUM ANALYZE {}.customers", schema.quoted()))
        .await
        .expect("vacuum");
    println!("  seeded in {:.1} s", start.elapsed().as_secs_f64());
    let took = rotate(
        mfa,
        &["--database-url", url, "--schema", schema.name()],
        keys,
    );
    report("PostgreSQL", rows.len() as u64, took);
    check(
        Arc::new(schema.open_store().await),
        rows.len() as u64,
        sampled,
    )
    .await;
}

fn main() {
    let customers: u64 = std::env::var("MFA_BENCH_ROTATION_CUSTOMERS")
        .ok()
        .map_or(1_000_000, |n| n.parse().expect("a number of customers"));
    let mfa = mfa_binary();
    let start = Instant::now();
    let (rows, sampled) = enroll(customers);
    println!(
        "{customers} enrollments made in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // The key files live apart from the SQLite run's directory, which goes when its run ends.
    let keys = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tmp")
        .join(format!("mfa-rotation-keys-{}", std::process::id()));
    std::fs::create_dir_all(&keys).expect("a directory for the keys");
    key_file(&keys.join("old.key"), 1, &OLD_KEY);
    key_file(&keys.join("new.key"), 2, &NEW_KEY);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let stores =
        std::env::var("MFA_BENCH_ROTATION_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    if stores.split(',').any(|store| store == "sqlite") {
        runtime.block_on(sqlite_run(&mfa, &rows, &sampled, &keys));
    }
    if stores.split(',').any(|store| store == "postgres")
        && let Some(url) = postgres::url()
    {
        runtime.block_on(postgres_run(&mfa, &url, &rows, &sampled, &keys));
    }
    std::fs::remove_dir_all(&keys).expect("the keys are removed");
}
