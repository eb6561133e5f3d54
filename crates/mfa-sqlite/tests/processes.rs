//! Several operating-system processes verify the same TOTP code against one database file at the
//! same moment: exactly one is accepted.
//!
//! The test binary runs itself again as each worker: `child_worker` below does nothing unless
//! [`WORKER`] names a database, in which case it opens that file, waits for the parent's signal on
//! standard input, verifies the code, and prints `ACCEPTED` or `REJECTED` after a marker.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::TempDb;
use mfa_core::{
    Clock, CustomerId, EventKind, KeyId, KeyRing, ManualClock, MfaError, OrgId, SealingKey,
    Service, ServiceError, UnixTime,
};
use mfa_sqlite::SqliteStore;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The database file a child works on; its presence makes `child_worker` a worker.
const WORKER: &str = "MFA_SQLITE_TEST_WORKER_DB";
/// The code the children race with.
const CODE: &str = "MFA_SQLITE_TEST_WORKER_CODE";
/// The Unix time on the children's clocks.
const TIME: &str = "MFA_SQLITE_TEST_WORKER_TIME";
/// Prefixes each line a child reports, to find it among the test harness's own output.
const MARK: &str = "mfa-sqlite-worker:";
const PROCESSES: usize = 8;
const T0: u64 = 1_767_225_600;

fn keys() -> KeyRing {
    KeyRing::new(SealingKey::new(KeyId::new(1), [9; 32]))
}

fn service(
    store: Arc<SqliteStore>,
    now: u64,
    seed: u64,
) -> (
    Service<Arc<SqliteStore>, ManualClock, ChaCha20Rng>,
    ManualClock,
) {
    let clock = ManualClock::new(UnixTime::from_secs(now));
    let mfa = Service::new(
        store,
        clock.clone(),
        keys(),
        ChaCha20Rng::seed_from_u64(seed),
    )
    // Every loser retries after each winner; never give up before the race is decided.
    .with_max_attempts(1_000);
    (mfa, clock)
}

fn ids() -> (OrgId, CustomerId) {
    (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice").unwrap(),
    )
}

/// Acts as a worker when run by [`several_processes_racing_on_one_code_accept_it_once`].
#[tokio::test]
async fn child_worker() {
    let Ok(path) = std::env::var(WORKER) else {
        return;
    };
    let code = std::env::var(CODE).unwrap();
    let now: u64 = std::env::var(TIME).unwrap().parse().unwrap();
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let (mfa, _clock) = service(store, now, u64::from(std::process::id()));
    let (acme, alice) = ids();
    println!("\n{MARK} READY");
    // Wait for the parent's go: a line on standard input, sent once every worker is ready.
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let verdict = match mfa.verify_totp(&acme, &alice, &code).await {
        Ok(passed) => {
            assert_eq!(passed.customer(), &alice);
            "ACCEPTED".to_owned()
        }
        Err(ServiceError::Mfa(MfaError::ReplayedCode | MfaError::Locked { .. })) => {
            "REJECTED".to_owned()
        }
        Err(other) => format!("FAILED {other:?}"),
    };
    println!("\n{MARK} {verdict}");
}

fn spawn_worker(path: &std::path::Path, code: &str, now: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_worker", "--exact", "--nocapture", "--test-threads=1"])
        .env(WORKER, path)
        .env(CODE, code)
        .env(TIME, now.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's output up to its `READY` line.
fn wait_ready(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("a worker ended before it was ready: {stderr}");
        }
        if line.trim() == format!("{MARK} READY") {
            return stdout;
        }
    }
}

/// Runs the workers, lets them go at once, and returns their verdicts.
fn race(path: &std::path::Path, code: &str, now: u64) -> Vec<String> {
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|_| spawn_worker(path, code, now))
        .collect();
    let mut outputs: Vec<_> = children.iter_mut().map(wait_ready).collect();
    for child in &mut children {
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let mut verdicts = Vec::new();
    for (child, stdout) in children.iter_mut().zip(&mut outputs) {
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        let status = child.wait().unwrap();
        assert!(status.success(), "a worker failed: {rest}\n{stderr}");
        let verdict = rest
            .lines()
            .find_map(|line| line.trim().strip_prefix(MARK))
            .map(|verdict| verdict.trim().to_owned())
            .unwrap_or_else(|| panic!("no verdict in: {rest}"));
        verdicts.push(verdict);
    }
    verdicts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_racing_on_one_code_accept_it_once() {
    let db = TempDb::new("processes");
    let (acme, alice) = ids();

    // The parent sets up the organisation and a configured customer, then steps aside.
    let store = Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let (mfa, clock) = service(Arc::clone(&store), T0, 1);
    mfa.set_org_enabled(&acme, true, "admin").await.unwrap();
    let enrollment = mfa.start_enrollment(&acme, &alice).await.unwrap();
    let totp = enrollment.uri.as_totp().unwrap();
    let secret = enrollment.uri.secret();
    let confirm = totp.generate(secret, clock.now()).unwrap().to_string();
    let _ = mfa
        .confirm_enrollment(&acme, &alice, &confirm)
        .await
        .unwrap();
    clock.advance(30);
    let now = clock.now().as_secs();
    let code = totp.generate(secret, clock.now()).unwrap().to_string();
    let code_again = code.clone();

    // Every worker opens the file and waits; then all are told to go at once. (Pipes and waits
    // block, so off the runtime's threads.)
    let path = db.path().to_path_buf();
    let verdicts = tokio::task::spawn_blocking(move || race(&path, &code, now))
        .await
        .unwrap();
    println!("verdicts: {verdicts:?}");
    let accepted = verdicts.iter().filter(|v| *v == "ACCEPTED").count();
    let rejected = verdicts.iter().filter(|v| *v == "REJECTED").count();
    assert_eq!((accepted, rejected), (1, PROCESSES - 1), "{verdicts:?}");

    // The log agrees: one acceptance after the enrollment, with its audit event.
    let events = mfa
        .audit(
            &acme,
            &mfa_core::AuditQuery {
                customer: Some(alice.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let accepted_events = events
        .iter()
        .filter(|stored| matches!(stored.event.kind, EventKind::TotpAccepted { .. }))
        .count();
    assert_eq!(accepted_events, 1);
    assert!(
        mfa.verify_totp(&acme, &alice, &code_again).await.is_err(),
        "the parent sees the code as used too"
    );
    drop(mfa);
    Arc::into_inner(store).unwrap().close().await.unwrap();
}
