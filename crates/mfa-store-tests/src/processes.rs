//! The tests only a real database shows, with separate operating-system processes on one database:
//! several processes racing to use one code, and a process killed (`SIGKILL`) in the middle of a
//! stream of sign-ins.
//!
//! An adapter implements [`ProcessStore`] (how to make a fresh database, and how any process opens
//! a store on it from a string) and invokes [`process_suite!`](crate::process_suite) in one of its
//! `tests/` files:
//!
//! ```ignore
//! // crates/mfa-sqlite/tests/processes.rs
//! struct SqliteFile { /* a temporary file */ }
//! impl mfa_store_tests::ProcessStore for SqliteFile { /* ... */ }
//! mfa_store_tests::process_suite!(SqliteFile);
//! ```
//!
//! The test binary runs itself again as each child process: the macro adds a test named
//! `mfa_store_tests_child` that does nothing unless an environment variable gives it a role, in
//! which case it opens the store at the location it is given, reads its instructions on standard
//! input, and reports on standard output (each line after a marker, flushed before the next step).

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mfa_core::{
    Refusal, ServiceError, Store, UnixTime,
    audit::{EventKind, StoredEvent},
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::T0;
use crate::fixture::{self, Accepted, Enrolled, acme, at_step};

/// A database that separate processes can share, and how each of them opens a store on it.
///
/// For SQLite the location is a file path; for PostgreSQL, a connection URL.
pub trait ProcessStore: Sized + Send + Sync + 'static {
    /// The store.
    type Store: Store + 'static;

    /// A fresh, empty database for one test, removed (if need be) when this value is dropped.
    /// `label` names the test, for file or database names. `None` skips the test: the database
    /// is not configured on this machine (the implementation says so itself, or fails when it
    /// must not skip).
    fn create(label: &str) -> impl Future<Output = Option<Self>> + Send;

    /// Where the database is, as every process of the test is told: a path, a URL.
    fn location(&self) -> &str;

    /// Opens a store on the database at `location`, in the test's process or in a child. Panics
    /// when it cannot: this is a test.
    fn open(location: &str) -> impl Future<Output = Self::Store> + Send;

    /// Closes a store this process opened, waiting until it has let go of the database. Dropping
    /// it is the default.
    fn close(store: Self::Store) -> impl Future<Output = ()> + Send {
        async move { drop(store) }
    }

    /// Checks the database right after a process using it was killed, before anything opens it
    /// again (SQLite: `PRAGMA integrity_check`). Panics on damage. Nothing by default.
    fn check_after_kill(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Generates the process tests for a [`ProcessStore`] type, and the child-process entry point they
/// need (a test named `mfa_store_tests_child` that does nothing when run on its own). Invoke it once
/// per test binary.
#[macro_export]
macro_rules! process_suite {
    ($store:ty) => {
        /// Does nothing unless one of the tests below started this binary as a child process.
        #[test]
        fn mfa_store_tests_child() {
            $crate::processes::child::<$store>();
        }

        $crate::process_suite!(@tests $store;
            processes_racing_on_one_code_accept_it_once,
            a_process_killed_mid_stream_loses_no_acceptance,
        );
    };
    (@tests $store:ty; $($name:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::processes::$name::<$store>(
                $crate::processes::ChildTest::in_module(::core::module_path!()),
            )
            .await;
        }
    )*};
}

/// The test a child process runs: `mfa_store_tests_child` in the module that invoked
/// [`process_suite!`](crate::process_suite).
#[derive(Clone, Debug)]
pub struct ChildTest {
    name: String,
}

impl ChildTest {
    /// The child test of the module at `module_path` (as `module_path!()` gives it, starting with the
    /// test binary's crate name, which test names leave out).
    #[must_use]
    pub fn in_module(module_path: &str) -> Self {
        let name = match module_path.split_once("::") {
            Some((_, module)) => format!("{module}::mfa_store_tests_child"),
            None => "mfa_store_tests_child".to_owned(),
        };
        Self { name }
    }

    /// Starts the test binary again as a child process in `role` on the database at `location`,
    /// with its standard streams piped.
    fn spawn(&self, role: &str, location: &str) -> Child {
        Command::new(std::env::current_exe().expect("the test binary's path"))
            .args([
                self.name.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, role)
            .env(LOCATION, location)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("a child process")
    }
}

/// Names the child's role; its presence makes `mfa_store_tests_child` a child.
const ROLE: &str = "MFA_STORE_TESTS_CHILD";
/// The database's location, for the child.
const LOCATION: &str = "MFA_STORE_TESTS_LOCATION";
/// Sets the seed of the kill timings, to replay a run.
const SEED: &str = "MFA_STORE_TESTS_SEED";
/// Prefixes each line a child reports, to find it among the test harness's own output.
const MARK: &str = "mfa-store-tests:";
const RACE: &str = "race";
const STREAM: &str = "stream";

/// The child process's work, when [`ROLE`] names one: the body of the `mfa_store_tests_child` test.
#[doc(hidden)]
pub fn child<P: ProcessStore>() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let location = std::env::var(LOCATION).expect("the parent names the database");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        match role.as_str() {
            RACE => race_worker::<P>(&location).await,
            STREAM => stream_worker::<P>(&location).await,
            other => panic!("no child role {other}"),
        }
    });
}

/// Reports one line to the parent, flushed at once (it may be killed the next moment). The line
/// starts afresh: the test harness may have printed the start of a line before the test ran.
fn say(message: &str) {
    // One write of a short line: a pipe takes it whole or, if the child dies first, not at all.
    let line = format!("\n{MARK} {message}\n");
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(line.as_bytes())
        .expect("report to the parent");
    stdout.flush().expect("report to the parent");
}

fn read_line() -> String {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .expect("read from the parent");
    line.trim().to_owned()
}

/// The next line a child reported, without the marker; `None` once its output has ended. A line
/// cut short (the child died writing it) is not a report.
fn next_report(stdout: &mut BufReader<ChildStdout>) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if stdout
            .read_line(&mut line)
            .expect("read the child's output")
            == 0
        {
            return None;
        }
        if let Some(report) = line
            .strip_suffix('\n')
            .and_then(|l| l.trim().strip_prefix(MARK))
        {
            return Some(report.trim().to_owned());
        }
    }
}

/// What the child wrote to its standard error (its panic message, if it panicked).
fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    stderr
}

// ---------------------------------------------------------------------------------------------
// Racing processes.

/// How many processes race.
const RACERS: usize = 8;

/// A racer: reads `<unix time> <code>` from the parent, opens the store, says `ready`, waits for
/// `go`, verifies `alice`'s code and reports `accepted`, `replayed`, or what else happened.
async fn race_worker<P: ProcessStore>(location: &str) {
    let task = read_line();
    let (now, code) = task.split_once(' ').expect("<time> <code>");
    let now: u64 = now.parse().expect("a Unix time");
    let (mfa, _clock) =
        fixture::service(P::open(location).await, now, u64::from(std::process::id()));
    // Every loser retries after each winner; it must never give up before the race is decided.
    let mfa = mfa.with_max_attempts(1_000);
    let alice = mfa_core::CustomerId::new("alice").expect("a valid id");
    // Each racer is a node where alice signed in with her password.
    let session = mfa
        .login_step(&acme(), &alice)
        .await
        .expect("sign in")
        .session();
    say("ready");
    let go = read_line();
    assert_eq!(go, "go");
    let verdict = match mfa.verify_totp(&acme(), &alice, &session, code).await {
        Ok(accepted) => {
            assert_eq!(accepted.passed.customer(), &alice);
            "accepted".to_owned()
        }
        Err(ServiceError::Refused(Refusal::ReplayedCode)) => "replayed".to_owned(),
        Err(other) => format!("failed {other}"),
    };
    say(&verdict);
}

/// Starts the racers, lets them all go at once, and returns their verdicts.
fn race(child: &ChildTest, location: &str, now: u64, code: &str) -> Vec<String> {
    let mut racers: Vec<Child> = (0..RACERS).map(|_| child.spawn(RACE, location)).collect();
    let mut outputs = Vec::new();
    for racer in &mut racers {
        let mut stdin = racer.stdin.take().expect("piped");
        writeln!(stdin, "{now} {code}").expect("instruct a racer");
        racer.stdin = Some(stdin);
        let mut stdout = BufReader::new(racer.stdout.take().expect("piped"));
        if next_report(&mut stdout).as_deref() != Some("ready") {
            panic!("a racer ended before it was ready: {}", stderr_of(racer));
        }
        outputs.push(stdout);
    }
    // Every racer has the database open and waits: go.
    for racer in &mut racers {
        writeln!(racer.stdin.as_mut().expect("kept"), "go").expect("start a racer");
    }
    racers
        .iter_mut()
        .zip(&mut outputs)
        .map(|(racer, stdout)| {
            let verdict = next_report(stdout);
            let status = racer.wait().expect("wait for a racer");
            let stderr = stderr_of(racer);
            assert!(status.success(), "a racer failed: {verdict:?} {stderr}");
            verdict.unwrap_or_else(|| panic!("a racer gave no verdict: {stderr}"))
        })
        .collect()
}

/// Several operating-system processes verify the same TOTP code against one database at the same
/// moment: exactly one is accepted, the others are told it was replayed, and the audit log holds
/// one acceptance.
pub async fn processes_racing_on_one_code_accept_it_once<P: ProcessStore>(child: ChildTest) {
    let Some(db) = P::create("race").await else {
        return;
    };
    let location = db.location().to_owned();

    // The parent sets up the organisation and a configured customer, then steps aside.
    let store = Arc::new(P::open(&location).await);
    let (mfa, clock) = fixture::service(Arc::clone(&store), T0, 1);
    fixture::switch_on(&mfa).await;
    let alice = Enrolled::new(&mfa, &clock, "alice").await;
    let step = fixture::first_step() + 1;
    let code = alice.code(step);
    let now = at_step(step, 1).as_secs();

    // Pipes and waits block, so off the runtime's threads.
    let (racing_location, racing_code) = (location.clone(), code.clone());
    let verdicts =
        tokio::task::spawn_blocking(move || race(&child, &racing_location, now, &racing_code))
            .await
            .expect("the race");
    let accepted = verdicts.iter().filter(|v| *v == "accepted").count();
    let replayed = verdicts.iter().filter(|v| *v == "replayed").count();
    assert_eq!((accepted, replayed), (1, RACERS - 1), "{verdicts:?}");

    // The log agrees: one acceptance of that step, with its event.
    let events = fixture::audit(&*store).await;
    fixture::assert_no_acceptance_twice(&events);
    let sign_ins: Vec<_> = events
        .iter()
        .filter(|stored| matches!(stored.event.kind, EventKind::TotpAccepted { .. }))
        .filter_map(fixture::acceptance)
        .collect();
    assert_eq!(sign_ins, [("alice".to_owned(), Accepted::Totp(step))]);
    clock.set(UnixTime::from_secs(now));
    assert!(
        matches!(
            mfa.verify_totp(&acme(), &alice.id, &alice.session, &code)
                .await,
            Err(ServiceError::Refused(Refusal::ReplayedCode))
        ),
        "the parent sees the code as used too"
    );
    drop(mfa);
    P::close(Arc::into_inner(store).expect("the service is gone")).await;
}

// ---------------------------------------------------------------------------------------------
// A process killed in the middle of a stream.

/// Steps in each child's plan: far more than it gets through before it is killed.
const PLAN_LEN: usize = 200;

/// When the parent kills the child (after a random pause of up to [`MAX_JITTER_MICROS`]).
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// Once it has reported this many acceptances: usually between two requests.
    AfterAccepted(usize),
    /// Once it has said it is starting this step: usually while the request is in flight.
    OnAttempt(usize),
}

/// The rounds: each starts a child on the database and kills it. Every fourth step (3, 7, 11...) is
/// a backup code, so some kills land on those.
const KILLS: [Kill; 12] = [
    Kill::OnAttempt(0),
    Kill::AfterAccepted(1),
    Kill::OnAttempt(3),
    Kill::AfterAccepted(4),
    Kill::OnAttempt(5),
    Kill::OnAttempt(7),
    Kill::AfterAccepted(9),
    Kill::OnAttempt(10),
    Kill::OnAttempt(11),
    Kill::AfterAccepted(13),
    Kill::OnAttempt(14),
    Kill::OnAttempt(15),
];

/// The longest pause before a kill, in microseconds: about as long as a step takes, so a kill on
/// an attempt lands anywhere in that request (loads, decision, write, commit, report), and a kill
/// after an acceptance anywhere in the next one or two.
const MAX_JITTER_MICROS: u64 = 1_500;

/// A customer of the stream test: the app, the codes, and how many codes were used (in order).
struct Streamed {
    enrolled: Enrolled,
    backup_used: usize,
}

/// One step of a child's plan.
#[derive(Clone, Debug)]
struct Step {
    customer: usize,
    at: UnixTime,
    code: String,
    kind: StepKind,
}

#[derive(Clone, Copy, Debug)]
enum StepKind {
    /// A TOTP code of this time step.
    Totp(u64),
    /// The backup code at this index of the customer's set.
    Backup(usize),
}

impl Step {
    /// The acceptance this step leaves in the audit log.
    fn acceptance(&self, customers: &[Streamed]) -> (String, Accepted) {
        let name = customers[self.customer].enrolled.id.as_str().to_owned();
        let accepted = match self.kind {
            StepKind::Totp(step) => Accepted::Totp(step),
            StepKind::Backup(index) => {
                let left = usize::from(fixture::BACKUP_CODES) - index - 1;
                Accepted::Backup(u32::try_from(left).expect("at most 16"))
            }
        };
        (name, accepted)
    }

    /// Verifies this step's code through `mfa`, as of its time.
    async fn verify<S: Store>(
        &self,
        mfa: &mfa_core::Service<S, mfa_core::ManualClock, ChaCha20Rng>,
        clock: &mfa_core::ManualClock,
        customers: &[Streamed],
    ) -> Result<(), ServiceError<S::Error>> {
        clock.set(self.at);
        let enrolled = &customers[self.customer].enrolled;
        let (customer, session) = (&enrolled.id, &enrolled.session);
        match self.kind {
            StepKind::Totp(_) => mfa
                .verify_totp(&acme(), customer, session, &self.code)
                .await
                .map(drop),
            StepKind::Backup(_) => mfa
                .verify_backup_code(&acme(), customer, session, &self.code)
                .await
                .map(drop),
        }
    }
}

/// The next [`PLAN_LEN`] steps: the customers in turn, each step one time step later than the last,
/// every fourth step the customer's next unused backup code (while any is left).
fn plan(customers: &[Streamed], first_step: u64) -> Vec<Step> {
    let mut next_backup: Vec<usize> = customers.iter().map(|c| c.backup_used).collect();
    (0..PLAN_LEN)
        .map(|i| {
            let customer = i % customers.len();
            let step = first_step + u64::try_from(i).expect("small");
            let enrolled = &customers[customer].enrolled;
            let index = next_backup[customer];
            if i % 4 == 3 && index < enrolled.backup.len() {
                next_backup[customer] += 1;
                Step {
                    customer,
                    at: at_step(step, 11),
                    code: enrolled.backup[index].clone(),
                    kind: StepKind::Backup(index),
                }
            } else {
                Step {
                    customer,
                    at: at_step(step, 7),
                    code: enrolled.code(step),
                    kind: StepKind::Totp(step),
                }
            }
        })
        .collect()
}

/// The plan as the child reads it: `<totp|backup> <customer> <unix time> <code>` per line.
fn plan_text(plan: &[Step], customers: &[Streamed]) -> String {
    plan.iter()
        .map(|step| {
            let kind = match step.kind {
                StepKind::Totp(_) => "totp",
                StepKind::Backup(_) => "backup",
            };
            let customer = customers[step.customer].enrolled.id.as_str();
            format!("{kind} {customer} {} {}\n", step.at.as_secs(), step.code)
        })
        .collect()
}

/// A streamer: reads its plan from standard input, opens the store, and runs the steps in order,
/// saying `attempt <i>` before each and `accepted <i>` once the service has accepted it (then
/// `done`, if it lives that long). Any refusal is reported and ends the stream.
async fn stream_worker<P: ProcessStore>(location: &str) {
    let mut plan = String::new();
    std::io::stdin()
        .read_to_string(&mut plan)
        .expect("read the plan");
    let (mfa, clock) = fixture::service(P::open(location).await, T0, u64::from(std::process::id()));
    // Each customer signs in with the password here once, before the stream: the session every
    // one of their steps gives its code in.
    let mut sessions = std::collections::HashMap::new();
    for line in plan.lines() {
        let customer = line.split(' ').nth(1).expect("a plan line").to_owned();
        if let std::collections::hash_map::Entry::Vacant(slot) = sessions.entry(customer) {
            let id = mfa_core::CustomerId::new(slot.key().as_str()).expect("a valid id");
            let step = mfa.login_step(&acme(), &id).await.expect("sign in");
            slot.insert(step.session());
        }
    }
    say("ready");
    for (i, line) in plan.lines().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [kind, name, at, code] = fields[..] else {
            panic!("a plan line: {line}")
        };
        let customer = mfa_core::CustomerId::new(name).expect("a valid id");
        let session = &sessions[name];
        clock.set(UnixTime::from_secs(at.parse().expect("a Unix time")));
        say(&format!("attempt {i}"));
        let outcome = match kind {
            "totp" => mfa
                .verify_totp(&acme(), &customer, session, code)
                .await
                .map(drop),
            "backup" => mfa
                .verify_backup_code(&acme(), &customer, session, code)
                .await
                .map(drop),
            other => panic!("a step kind: {other}"),
        };
        match outcome {
            Ok(()) => say(&format!("accepted {i}")),
            Err(error) => {
                say(&format!("refused {i} {error}"));
                return;
            }
        }
    }
    say("done");
}

/// What the parent saw of a child before and after it killed it.
#[derive(Debug, Default)]
struct Observed {
    /// The steps the child reported accepted, in the order reported.
    accepted: Vec<usize>,
    /// The last step the child said it was starting.
    announced: Option<usize>,
    /// Every report, for the failure messages.
    reports: Vec<String>,
    /// What the child wrote to standard error.
    stderr: String,
}

/// Starts a streamer on `plan`, kills it as `kill` says (after `jitter`), and reads what it
/// reported before it died.
fn run_until_killed(
    child: &ChildTest,
    location: &str,
    plan: &str,
    kill: Kill,
    jitter: Duration,
) -> Observed {
    let mut streamer = child.spawn(STREAM, location);
    // Closing standard input ends the plan.
    streamer
        .stdin
        .take()
        .expect("piped")
        .write_all(plan.as_bytes())
        .expect("send the plan");
    let mut stdout = BufReader::new(streamer.stdout.take().expect("piped"));
    let mut observed = Observed::default();
    let mut killed = false;
    // After the kill, the reports still in the pipe are read too: the child made them before it
    // died, each after its step was accepted.
    while let Some(report) = next_report(&mut stdout) {
        let (what, index) = report.split_once(' ').unwrap_or((report.as_str(), ""));
        let index: Option<usize> = index.split(' ').next().and_then(|i| i.parse().ok());
        match what {
            "attempt" => observed.announced = index,
            "accepted" => observed.accepted.extend(index),
            _ => {}
        }
        let due = match kill {
            Kill::AfterAccepted(count) => what == "accepted" && observed.accepted.len() == count,
            Kill::OnAttempt(step) => what == "attempt" && index == Some(step),
        };
        observed.reports.push(report);
        if due && !killed {
            std::thread::sleep(jitter);
            // SIGKILL on Unix: no destructor, no flush, no rollback runs in the child.
            streamer.kill().expect("kill the child");
            killed = true;
        }
    }
    let status = streamer.wait().expect("wait for the child");
    observed.stderr = stderr_of(&mut streamer);
    assert!(
        killed && died_of_kill(status),
        "the child was to be killed ({kill:?}) but ended with {status}: {observed:#?}"
    );
    observed
}

#[cfg(unix)]
fn died_of_kill(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}

#[cfg(not(unix))]
fn died_of_kill(status: ExitStatus) -> bool {
    !status.success()
}

/// The seed of the kill timings: [`SEED`] if set, else the clock's nanoseconds (printed, to replay
/// a failure).
fn jitter_seed() -> u64 {
    std::env::var(SEED)
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| u64::from(elapsed.subsec_nanos()))
        })
}

/// A child process runs a stream of sign-ins (TOTP codes of three customers across advancing time
/// steps, and their backup codes) and is killed with `SIGKILL` at a different moment in each of
/// several rounds: after it reported `k` acceptances, or just as it started a request. After each
/// kill the database is checked ([`ProcessStore::check_after_kill`]) and opened afresh, and:
///
/// - every acceptance the child reported has its audit event, and the new acceptances in the log
///   are exactly the first steps of its plan, in order: the reported ones, and at most one more
///   (the request in flight, committed before the child could print it: allowed), never the
///   reverse;
/// - no customer has two acceptances of one time step, nor of one backup code, in the whole log;
/// - every code the child got accepted (or committed) is refused when tried again, as replayed or
///   used, at the time it was first accepted;
/// - the request in flight that did not commit left nothing behind: its code is accepted now;
/// - each customer signs in with a fresh code.
pub async fn a_process_killed_mid_stream_loses_no_acceptance<P: ProcessStore>(child: ChildTest) {
    let started = Instant::now();
    let Some(db) = P::create("killed").await else {
        return;
    };
    let location = db.location().to_owned();
    let seed = jitter_seed();
    println!("kill timings: {SEED}={seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);

    let store = Arc::new(P::open(&location).await);
    let (mfa, clock) = fixture::service(Arc::clone(&store), T0, 1);
    fixture::switch_on(&mfa).await;
    let mut customers = Vec::new();
    for name in ["alice", "bob", "carol"] {
        customers.push(Streamed {
            enrolled: Enrolled::new(&mfa, &clock, name).await,
            backup_used: 0,
        });
    }
    let mut seen = fixture::audit(&*store).await.last().map_or(0, |e| e.seq);
    drop(mfa);
    P::close(Arc::into_inner(store).expect("the service is gone")).await;

    let mut next_step = fixture::first_step() + 1;
    let (mut in_flight_commits, mut in_flight_lost) = (0, 0);
    for (round, kill) in KILLS.into_iter().enumerate() {
        let plan = plan(&customers, next_step);
        next_step += u64::try_from(PLAN_LEN).expect("small");
        let jitter = Duration::from_micros(rng.next_u64() % MAX_JITTER_MICROS);
        let (text, child, at) = (
            plan_text(&plan, &customers),
            child.clone(),
            location.clone(),
        );
        let observed =
            tokio::task::spawn_blocking(move || run_until_killed(&child, &at, &text, kill, jitter))
                .await
                .expect("the child's round");

        db.check_after_kill().await;
        let store = Arc::new(P::open(&location).await);
        let (mfa, clock) = fixture::service(Arc::clone(&store), T0, 2);
        let events = fixture::audit(&*store).await;
        fixture::assert_no_acceptance_twice(&events);
        let committed = new_acceptances(&events, seen, &observed);
        let reported = observed.accepted.len();
        let context = format!("round {round}, {kill:?} after {jitter:?}: {observed:#?}");
        assert!(
            observed.accepted.iter().copied().eq(0..reported),
            "the child reports its steps in order: {context}"
        );
        assert!(
            !observed
                .reports
                .iter()
                .any(|report| report.starts_with("refused")),
            "a planned code was refused: {context}"
        );
        assert!(
            committed.len() >= reported,
            "an acceptance the child reported is missing from the audit log ({} of {reported} \
             logged): {context}",
            committed.len()
        );
        assert!(
            committed.len() <= reported + 1
                && (committed.len() == reported || observed.announced == Some(reported)),
            "the log holds acceptances the child never started: {committed:?}, {context}"
        );
        for (j, got) in committed.iter().enumerate() {
            assert_eq!(
                *got,
                plan[j].acceptance(&customers),
                "the log's acceptance {j} is not step {j} of the plan: {context}"
            );
        }
        in_flight_commits += committed.len() - reported;

        // Every code that counted is refused now, at the very time it was accepted.
        for step in &plan[..committed.len()] {
            let outcome = step.verify(&mfa, &clock, &customers).await;
            let refused = match step.kind {
                StepKind::Totp(_) => Refusal::ReplayedCode,
                StepKind::Backup(_) => Refusal::UsedBackupCode,
            };
            assert!(
                matches!(&outcome, Err(ServiceError::Refused(error)) if *error == refused),
                "{step:?} tried again: {outcome:?}, expected {refused:?}: {context}"
            );
        }
        let mut used = committed.len();
        // A request in flight that did not commit left nothing behind: its code still works.
        if observed.announced == Some(committed.len()) {
            let step = &plan[committed.len()];
            let outcome = step.verify(&mfa, &clock, &customers).await;
            assert!(
                outcome.is_ok(),
                "{step:?} was in flight when the child died and is not in the log, yet it is \
                 refused: {outcome:?}: {context}"
            );
            used += 1;
            in_flight_lost += 1;
        }
        for step in &plan[..used] {
            if let StepKind::Backup(index) = step.kind {
                customers[step.customer].backup_used = index + 1;
            }
        }
        // And the database takes new sign-ins (which also clear the failures the retries counted).
        for customer in &customers {
            clock.set(at_step(next_step, 3));
            let code = customer.enrolled.code(next_step);
            next_step += 1;
            let _passed = mfa
                .verify_totp(
                    &acme(),
                    &customer.enrolled.id,
                    &customer.enrolled.session,
                    &code,
                )
                .await
                .unwrap_or_else(|error| panic!("a fresh sign-in after the restart: {error}"));
        }
        let events = fixture::audit(&*store).await;
        fixture::assert_no_acceptance_twice(&events);
        seen = events.last().map_or(seen, |e| e.seq);
        drop(mfa);
        P::close(Arc::into_inner(store).expect("the service is gone")).await;
        println!(
            "round {round}: {kill:?} after {jitter:?}: {reported} reported, {} logged",
            committed.len()
        );
    }
    println!(
        "{} kills: {in_flight_commits} requests in flight committed (never reported), \
         {in_flight_lost} did not (and their codes still worked), {:?}",
        KILLS.len(),
        started.elapsed()
    );
}

/// The acceptances logged after `seen`, oldest first. The stream writes nothing else: any other
/// event (a refusal, a lockout) means a planned code was refused.
fn new_acceptances(
    events: &[StoredEvent],
    seen: u64,
    observed: &Observed,
) -> Vec<(String, Accepted)> {
    events
        .iter()
        .filter(|stored| stored.seq > seen)
        .map(|stored| {
            fixture::acceptance(stored).unwrap_or_else(|| {
                panic!("the stream logged {stored:?}, not an acceptance: {observed:#?}")
            })
        })
        .collect()
}
