//! `mfa admin` through its real binary, against a SQLite file and (when `MFA_TEST_POSTGRES_URL` is
//! set) a fresh PostgreSQL schema per test: each test seeds the store through `mfa-core`'s service,
//! runs the command, and checks the store and the output. The rotation test kills the command with
//! SIGKILL half way and reruns it.
//!
//! Without `MFA_TEST_POSTGRES_URL` the PostgreSQL half prints that it was skipped and passes, unless
//! `MFA_REQUIRE_POSTGRES=1` makes that a failure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use mfa_core::{
    Actor, Clock, CustomerId, KeyId, KeyRing, ManualClock, OrgId, OrgMfa, SealingKey, Service,
    Store, UnixTime,
    audit::{AuditExport, AuditQuery, Event, EventKind, Factor, Rejection, StoredEvent},
    store::Written,
    uri::KeyUri,
};
use mfa_postgres::deadpool_postgres::tokio_postgres::{self, NoTls, config::Host};
use mfa_postgres::{PostgresOptions, PostgresStore};
use mfa_sqlite::SqliteStore;
use mfa_store_tests::fixture::{self, SoftApp};
use rand::SeedableRng;
use rand::rngs::StdRng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::runtime::Runtime;

/// Seeded events happen at this time (an hour ago, on a step boundary); sign-ins after the
/// rotation a few steps later.
fn t_seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now - 3600) / 30 * 30
}

fn rfc3339(secs: u64) -> String {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap())
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

fn org(id: &str) -> OrgId {
    OrgId::new(id).unwrap()
}

fn customer(id: &str) -> CustomerId {
    CustomerId::new(id).unwrap()
}

/// A key file as the portal writes it (bare hex: key id 1) or as `keys generate` does (`ID:HEX`).
fn write_key_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key's bytes and its ring.
fn ring(id: u32, bytes: &[u8; 32]) -> KeyRing {
    KeyRing::new(SealingKey::new(KeyId::new(id), *bytes))
}

/// What must go when a test ends: the SQLite file's directory, or the PostgreSQL schema.
enum Cleanup {
    Dir(#[allow(dead_code, reason = "held for its Drop")] tempfile::TempDir),
    Schema { url: String, schema: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Self::Schema { url, schema } = self {
            let (url, schema) = (url.clone(), schema.clone());
            // A thread and runtime of its own: this runs inside or outside a runtime.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await
                        .unwrap();
                });
            })
            .join();
        }
    }
}

/// One store under test: the store itself for seeding and checking, the arguments that name it to
/// the command, a clock for the seeding service, and a scratch directory for key files.
struct Db<S> {
    // Declared first: the store closes before its file or schema goes.
    store: Arc<S>,
    runtime: Runtime,
    args: Vec<String>,
    /// When the seeding happens (the clock's start).
    t0: u64,
    clock: ManualClock,
    scratch: tempfile::TempDir,
    _cleanup: Cleanup,
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl Db<SqliteStore> {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.db");
        let runtime = runtime();
        let store = runtime.block_on(SqliteStore::open(&path)).unwrap();
        Self::new(
            store,
            runtime,
            vec![
                "--database-url".into(),
                format!("sqlite://{}", path.display()),
            ],
            Cleanup::Dir(dir),
        )
    }
}

impl Db<PostgresStore> {
    /// A fresh schema, or `None` (after saying so once) when the PostgreSQL tests skip.
    fn postgres() -> Option<Self> {
        let url = mfa_store_tests::postgres_url()?;
        let schema = mfa_store_tests::fresh_schema("cli");
        let runtime = runtime();
        let store = runtime
            .block_on(PostgresStore::connect_with(
                url.parse().unwrap(),
                PostgresOptions::default().schema(schema.clone()),
            ))
            .unwrap();
        let args = vec![
            "--database-url".into(),
            cli_url(&url),
            "--schema".into(),
            schema.clone(),
        ];
        Some(Self::new(
            store,
            runtime,
            args,
            Cleanup::Schema { url, schema },
        ))
    }
}

/// The test database as a `postgres://` URL, which is what the command takes (the test variable
/// may be in key-value form, `host=/var/run/postgresql user=ci dbname=mfa_ci`).
fn cli_url(url: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return url.to_owned();
    }
    let config: tokio_postgres::Config = url.parse().unwrap();
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or(user);
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) => format!("postgresql://{user}@{host}:{port}/{db}"),
        Some(Host::Unix(dir)) => {
            format!(
                "postgresql://{user}@/{db}?host={}&port={port}",
                dir.display()
            )
        }
        None => format!("postgresql://{user}@/{db}?host=/var/run/postgresql&port={port}"),
    }
}

impl<S: Store + 'static> Db<S> {
    fn new(store: S, runtime: Runtime, args: Vec<String>, cleanup: Cleanup) -> Self {
        let t0 = t_seed();
        Self {
            store: Arc::new(store),
            runtime,
            args,
            t0,
            clock: ManualClock::new(UnixTime::from_secs(t0)),
            scratch: tempfile::tempdir().unwrap(),
            _cleanup: cleanup,
        }
    }

    fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// The service over this store with `keys`, on the test's clock.
    fn service(&self, keys: KeyRing) -> Service<Arc<S>, ManualClock, StdRng> {
        Service::new(
            Arc::clone(&self.store),
            self.clock.clone(),
            keys,
            StdRng::from_rng(&mut rand::rng()),
        )
    }

    /// `mfa admin <database> <args>`, with no input and no key in the environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mfa"));
        command
            .arg("admin")
            .args(&self.args)
            .args(args)
            .env_remove("MFA_SEALING_KEY")
            .env_remove("MFA_DATABASE_URL")
            .stdin(Stdio::null());
        command
    }

    fn mfa(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// The whole audit log of `org`, oldest first, read from the store.
    fn events(&self, org_id: &str) -> Vec<StoredEvent> {
        let mut events = Vec::new();
        let mut query = AuditExport::default();
        loop {
            let page = self
                .block_on(self.store.export_audit(&org(org_id), &query))
                .unwrap();
            let Some(last) = page.last() else {
                return events;
            };
            query.after_seq = Some(last.seq);
            events.extend(page);
        }
    }
}

/// Switches MFA on for `org` and enrolls each customer: the key URIs their apps hold.
async fn enroll<S: Store>(
    service: &Service<S, ManualClock, StdRng>,
    org_id: &str,
    customers: impl IntoIterator<Item = String>,
) -> BTreeMap<String, KeyUri> {
    let org = org(org_id);
    service
        .set_org_mfa(&org, OrgMfa::On, &Actor::new("seed").unwrap())
        .await
        .unwrap();
    let mut apps = BTreeMap::new();
    for id in customers {
        let who = customer(&id);
        let session = service.login_step(&org, &who).await.unwrap().session();
        let enrollment = service
            .start_enrollment(&org, &who, &session)
            .await
            .unwrap();
        let code = app_code(&enrollment.uri, service.clock().now());
        let _passed = service
            .confirm_enrollment(&org, &who, &session, &code)
            .await
            .unwrap();
        apps.insert(id, enrollment.uri);
    }
    apps
}

fn app_code(uri: &KeyUri, now: UnixTime) -> String {
    SoftApp::scan(uri).code(now.as_secs() / 30)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[track_caller]
fn assert_status(output: &Output, status: i32) {
    assert_eq!(
        output.status.code(),
        Some(status),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// Exit 2 or 1 with exactly one line on stderr, `mfa: ...`, that contains `expected`.
#[track_caller]
fn assert_fails(output: &Output, status: i32, expected: &str) {
    assert_status(output, status);
    let stderr = stderr(output);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("mfa: "), "{stderr}");
    assert!(stderr.contains(expected), "{expected:?} in {stderr}");
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output)).unwrap()
}

/// The line of a two-column table that starts with `name`, its value.
fn field(output: &Output, name: &str) -> String {
    stdout(output)
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .filter(|rest| rest.starts_with("  "))
                .map(|rest| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name:?} in {}", stdout(output)))
}

// ---------------------------------------------------------------------------------------------
// The checks, each run on every store.

fn org_switch_shows_in_org_show<S: Store + 'static>(db: &Db<S>) {
    let never = db.mfa(&["org", "show", "acme"]);
    assert_status(&never, 0);
    assert_eq!(
        field(&never, "mfa"),
        "off (never switched on: default settings)"
    );
    assert_eq!(
        json(&db.mfa(&["org", "show", "acme", "--format", "json"]))["stored"],
        false
    );

    assert_status(&db.mfa(&["org", "enable", "acme", "--by", "ops@acme"]), 0);
    let on = db.mfa(&["org", "show", "acme"]);
    assert_eq!(field(&on, "mfa"), "on");
    assert_eq!(field(&on, "totp"), "SHA1, 6 digits, 30 s");
    let on = json(&db.mfa(&["org", "show", "acme", "--format", "json"]));
    assert_eq!(
        (on["enabled"].clone(), on["stored"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(on["backup_code_count"], 5);
    assert_eq!(on["step_up_max_age_secs"], 600);
    assert!(
        db.block_on(db.service(ring(1, &[1; 32])).org_policy(&org("acme")))
            .unwrap()
            .enabled()
    );
    assert_eq!(
        json(&db.mfa(&["org", "show", "other", "--format", "json"]))["enabled"],
        false,
        "one organisation's switch is its own"
    );

    assert_status(&db.mfa(&["org", "disable", "acme", "--by", "ops@acme"]), 0);
    assert_eq!(field(&db.mfa(&["org", "show", "acme"]), "mfa"), "off");
    let kinds: Vec<(String, String)> = db
        .events("acme")
        .iter()
        .map(|stored| match &stored.event.kind {
            EventKind::OrgEnabled { by } | EventKind::OrgDisabled { by } => {
                (stored.event.kind_name().to_owned(), by.to_string())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("org_enabled".to_owned(), "ops@acme".to_owned()),
            ("org_disabled".to_owned(), "ops@acme".to_owned())
        ]
    );
}

fn customer_show_never_prints_a_secret<S: Store + 'static>(db: &Db<S>) {
    let service = db.service(ring(1, &[1; 32]));
    let settings = fixture::fast_settings();
    db.block_on(service.update_settings(&org("acme"), settings, &Actor::new("seed").unwrap()))
        .unwrap();
    let apps = db.block_on(enroll(&service, "acme", ["alice".to_owned()]));
    // Alice signs in with a code, then makes backup codes in that session.
    service.clock().advance(30);
    let session = db
        .block_on(service.login_step(&org("acme"), &customer("alice")))
        .unwrap()
        .session();
    let code = app_code(&apps["alice"], service.clock().now());
    let passed = db
        .block_on(service.verify_totp(&org("acme"), &customer("alice"), &session, &code))
        .unwrap();
    let codes = db
        .block_on(service.generate_backup_codes(
            &org("acme"),
            &customer("alice"),
            &passed.passed.session(),
        ))
        .unwrap()
        .codes;
    let secret = apps["alice"].secret().to_base32().as_str().to_owned();

    let table = db.mfa(&["customer", "show", "acme", "alice"]);
    assert_status(&table, 0);
    assert_eq!(field(&table, "state"), "configured");
    assert_eq!(field(&table, "configured since"), rfc3339(db.t0));
    assert_eq!(field(&table, "backup codes left"), "5");
    assert_eq!(field(&table, "locked until"), "not locked");
    let shown = json(&db.mfa(&["customer", "show", "acme", "alice", "--format", "json"]));
    assert_eq!(shown["state"], "configured");
    assert_eq!(shown["configured_since"], rfc3339(db.t0));
    assert_eq!(shown["backup_codes_remaining"], 5);
    assert_eq!(shown["locked_until"], serde_json::Value::Null);
    assert_eq!(shown["org_enabled"], true);

    // A customer the store has never seen is unconfigured, not an error.
    let unknown = db.mfa(&["customer", "show", "acme", "nobody"]);
    assert_status(&unknown, 0);
    assert_eq!(field(&unknown, "state"), "unconfigured (no MFA record)");
    let unknown = json(&db.mfa(&["customer", "show", "acme", "nobody", "--format", "json"]));
    assert_eq!(
        (unknown["stored"].clone(), unknown["state"].clone()),
        (false.into(), "unconfigured".into())
    );

    // Nothing any command prints holds the secret or a backup code, in any spelling.
    let mut printed = String::new();
    for args in [
        &["customer", "show", "acme", "alice"][..],
        &["customer", "show", "acme", "alice", "--format", "json"],
        &["audit", "acme"],
        &["audit", "acme", "--format", "jsonl"],
        &["keys", "status", "--format", "json"],
    ] {
        let output = db.mfa(args);
        assert_status(&output, 0);
        printed.push_str(&stdout(&output));
        printed.push_str(&stderr(&output));
    }
    let printed = printed.to_ascii_uppercase().replace(['-', ' '], "");
    assert!(!printed.contains(&secret[..16]), "the secret was printed");
    for code in &codes {
        let code = code.as_str().to_ascii_uppercase().replace('-', "");
        assert!(!printed.contains(&code), "a backup code was printed");
    }
}

fn reset_asks_then_works_and_is_audited<S: Store + 'static>(db: &Db<S>) {
    let service = db.service(ring(1, &[1; 32]));
    db.block_on(enroll(
        &service,
        "acme",
        ["alice".to_owned(), "bob".to_owned()],
    ));
    let state = |who: &str| {
        json(&db.mfa(&["customer", "show", "acme", who, "--format", "json"]))["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Not a terminal, no --yes: refused before anything is touched.
    let refused = db.mfa(&["customer", "reset", "acme", "alice", "--by", "ops"]);
    assert_fails(&refused, 2, "--yes");
    assert_eq!(state("alice"), "configured");

    // On a terminal it asks; anything but yes changes nothing, yes resets.
    if let Some(answered_no) = on_a_terminal(
        db,
        &["customer", "reset", "acme", "alice", "--by", "ops"],
        "no\n",
    ) {
        let (status, screen) = answered_no;
        assert_eq!(status, Some(1), "{screen}");
        assert!(screen.contains("Type yes to reset"), "{screen}");
        assert!(screen.contains("nothing was reset"), "{screen}");
        assert_eq!(state("alice"), "configured");
        let (status, screen) = on_a_terminal(
            db,
            &["customer", "reset", "acme", "alice", "--by", "ops"],
            "yes\n",
        )
        .unwrap();
        assert_eq!(status, Some(0), "{screen}");
        assert_eq!(state("alice"), "unconfigured");
    }

    let reset = db.mfa(&["customer", "reset", "acme", "bob", "--by", "ops", "--yes"]);
    assert_status(&reset, 0);
    assert!(stdout(&reset).contains("reset customer bob of organisation acme"));
    assert_eq!(state("bob"), "unconfigured");
    // The customer sets MFA up again at the next sign-in.
    assert!(matches!(
        db.block_on(service.login_step(&org("acme"), &customer("bob")))
            .unwrap(),
        mfa_core::LoginStep::Enroll(_)
    ));

    let unknown = db.mfa(&[
        "customer", "reset", "acme", "nobody", "--by", "ops", "--yes",
    ]);
    assert_fails(&unknown, 1, "no MFA record");

    let export = db.mfa(&["audit", "acme", "--customer", "bob", "--format", "jsonl"]);
    assert_status(&export, 0);
    let last: serde_json::Value =
        serde_json::from_str(stdout(&export).lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "reset");
    assert_eq!(last["details"], serde_json::json!({ "by": "ops" }));
    assert_eq!(last["customer"], "bob");
    assert_eq!(last["org"], "acme");
}

/// Runs the command on a pseudo-terminal (through `script`) with `input` typed: its status and
/// what the terminal showed, or `None` when `script` is not installed.
fn on_a_terminal<S: Store + 'static>(
    db: &Db<S>,
    args: &[&str],
    input: &str,
) -> Option<(Option<i32>, String)> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!(
            "skipped: `script` (util-linux) is not installed, so the terminal prompt was not tested"
        );
        return None;
    }
    let quote = |arg: &str| format!("'{}'", arg.replace('\'', r"'\''"));
    let mut line = vec![quote(env!("CARGO_BIN_EXE_mfa")), "admin".to_owned()];
    line.extend(db.args.iter().map(|arg| quote(arg)));
    line.extend(args.iter().map(|arg| quote(arg)));
    let mut child = Command::new("script")
        .args(["-qec", &line.join(" "), "/dev/null"])
        .env_remove("MFA_SEALING_KEY")
        .env_remove("MFA_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Some((output.status.code(), stdout(&output)))
}

fn audit_exports_thousands_of_events<S: Store + 'static>(db: &Db<S>) {
    const EVENTS: u64 = 3000;
    let t0 = db.t0 - 10_000;
    let events: Vec<Event> = (0..EVENTS)
        .map(|i| {
            let kind = match i % 4 {
                0 => EventKind::AttemptRejected {
                    factor: Factor::Totp,
                    reason: Rejection::Malformed,
                    failures: 0,
                },
                1 => EventKind::Reset {
                    by: Actor::new(format!("ops{i}")).unwrap(),
                },
                2 => EventKind::LockedOut {
                    until: UnixTime::from_secs(t0 + i + 60),
                },
                _ => EventKind::TotpAccepted {
                    step: i,
                    offset: -1,
                },
            };
            Event {
                at: UnixTime::from_secs(t0 + i),
                // Every tenth event is another organisation's, which the export leaves out.
                org: org(if i % 10 == 9 { "other" } else { "acme" }),
                customer: (i % 50 != 0).then(|| customer(&format!("customer-{}", i % 7))),
                kind,
            }
        })
        .collect();
    for chunk in events.chunks(500) {
        db.block_on(db.store.append_events(chunk)).unwrap();
    }

    // What Store::audit holds, newest first, page by page; oldest first it is the export.
    let mut expected: Vec<StoredEvent> = Vec::new();
    let mut query = AuditQuery {
        limit: 700,
        ..AuditQuery::default()
    };
    loop {
        let page = db.block_on(db.store.audit(&org("acme"), &query)).unwrap();
        let Some(last) = page.last() else { break };
        query.before_seq = Some(last.seq);
        expected.extend(page);
    }
    expected.reverse();
    assert_eq!(expected.len(), 2700);

    let export = db.mfa(&["audit", "acme", "--format", "jsonl"]);
    assert_status(&export, 0);
    let text = stdout(&export);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len());
    for (line, stored) in lines.iter().zip(&expected) {
        let got: serde_json::Value = serde_json::from_str(line).unwrap();
        let event = &stored.event;
        assert_eq!(got["seq"], stored.seq);
        assert_eq!(got["at"], rfc3339(event.at.as_secs()));
        assert_eq!(got["org"], "acme");
        assert_eq!(
            got["customer"],
            event
                .customer
                .as_ref()
                .map_or(serde_json::Value::Null, |c| c.as_str().into())
        );
        assert_eq!(got["kind"], event.kind_name());
        let details = match &event.kind {
            EventKind::AttemptRejected { .. } => {
                serde_json::json!({ "factor": "totp", "reason": "malformed", "failures": 0 })
            }
            EventKind::Reset { by } => serde_json::json!({ "by": by }),
            EventKind::LockedOut { until } => serde_json::json!({ "until": until.as_secs() }),
            EventKind::TotpAccepted { step, offset } => {
                serde_json::json!({ "step": step, "offset": offset })
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(got["details"], details, "{line}");
    }

    // --since: only events at or after the time; --customer: only that customer's.
    let since = t0 + 2000;
    let recent = db.mfa(&[
        "audit",
        "acme",
        "--since",
        &rfc3339(since),
        "--format",
        "jsonl",
    ]);
    assert_status(&recent, 0);
    let want = expected
        .iter()
        .filter(|s| s.event.at.as_secs() >= since)
        .count();
    assert_eq!(stdout(&recent).lines().count(), want);
    assert!(want > 0 && want < expected.len());
    let first: serde_json::Value =
        serde_json::from_str(stdout(&recent).lines().next().unwrap()).unwrap();
    assert_eq!(first["at"], rfc3339(since));
    let offset = db.mfa(&[
        "audit",
        "acme",
        "--since",
        "2000-01-01T01:00:00+01:00",
        "--format",
        "jsonl",
    ]);
    assert_eq!(stdout(&offset).lines().count(), expected.len());
    let one = db.mfa(&[
        "audit",
        "acme",
        "--customer",
        "customer-3",
        "--format",
        "jsonl",
    ]);
    let want = expected
        .iter()
        .filter(|s| {
            s.event
                .customer
                .as_ref()
                .is_some_and(|c| c.as_str() == "customer-3")
        })
        .count();
    assert_eq!(stdout(&one).lines().count(), want);

    // The table: a header, then one aligned line per event, times as RFC 3339.
    let table = db.mfa(&["audit", "acme", "--customer", "customer-3"]);
    assert_status(&table, 0);
    let text = stdout(&table);
    let mut rows = text.lines();
    let header = rows.next().unwrap();
    assert!(
        header.trim_start().starts_with("SEQ") && header.ends_with("DETAILS"),
        "{header}"
    );
    let kind_at = header.find("KIND").unwrap();
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), want);
    for row in &rows {
        assert!(
            row[kind_at..].starts_with(|c: char| c.is_ascii_lowercase()),
            "{row}"
        );
    }
    assert!(
        rows.iter()
            .any(|row| row.contains("until=") && row.contains('T'))
    );
    assert!(db.mfa(&["audit", "nobody-here"]).stdout.starts_with(b"SEQ"));
}

fn keys_status_and_a_wrong_key<S: Store + 'static>(db: &Db<S>) {
    let key1 = rand_key();
    let service = db.service(ring(1, &key1));
    db.block_on(enroll(&service, "acme", (0..5).map(|i| format!("c{i}"))));
    let portal_key = db.path("portal.key");
    write_key_file(&portal_key, &format!("{}\n", hex(&key1)));
    let wrong = db.path("wrong.key");
    write_key_file(&wrong, &format!("1:{}\n", hex(&rand_key())));
    let new = db.path("new.key");
    assert_status(
        &db.mfa(&[
            "keys",
            "generate",
            "--id",
            "2",
            "--out",
            new.to_str().unwrap(),
        ]),
        0,
    );

    let status = db.mfa(&["keys", "status"]);
    assert_status(&status, 0);
    assert_eq!(
        stdout(&status)
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "5"]
    );
    let loaded = json(&db.mfa(&[
        "keys",
        "status",
        "--key-file",
        new.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert_eq!(
        loaded,
        serde_json::json!({ "keys": [
            { "id": 1, "secrets": 5, "loaded": false },
            { "id": 2, "secrets": 0, "loaded": true },
        ] })
    );

    // Old key not given: refused before anything is written, naming the key id.
    let missing = db.mfa(&["keys", "rotate", "--new-key-file", new.to_str().unwrap()]);
    assert_fails(&missing, 1, "key id 1, which is not loaded");
    // Other material under key id 1: the first secret refuses to open, naming key id 1.
    let forged = db.mfa(&[
        "keys",
        "rotate",
        "--new-key-file",
        new.to_str().unwrap(),
        "--key-file",
        wrong.to_str().unwrap(),
    ]);
    assert_status(&forged, 1);
    let last = stderr(&forged).lines().last().unwrap().to_owned();
    assert!(last.starts_with("mfa: the secret of customer c"), "{last}");
    assert!(
        last.contains("does not open under the loaded key id 1"),
        "{last}"
    );
    assert_eq!(
        db.block_on(db.store.count_sealed()).unwrap(),
        [(KeyId::new(1), 5)]
    );
    // A fresh key given an id that already seals secrets (the portal's 1) would count them as
    // done: refused, naming the id, before anything is written.
    let reused = db.mfa(&["keys", "rotate", "--new-key-file", wrong.to_str().unwrap()]);
    assert_fails(&reused, 1, "already sealed under its key id 1");
    assert_eq!(
        db.block_on(db.store.count_sealed()).unwrap(),
        [(KeyId::new(1), 5)]
    );
    // The same key twice under one id is fine; two keys under one id are refused.
    let twice = db
        .command(&["keys", "status", "--key-file", portal_key.to_str().unwrap()])
        .env("MFA_SEALING_KEY", hex(&key1))
        .output()
        .unwrap();
    assert_status(&twice, 0);
    let clash = db
        .command(&["keys", "status", "--key-file", portal_key.to_str().unwrap()])
        .env("MFA_SEALING_KEY", format!("1:{}", hex(&rand_key())))
        .output()
        .unwrap();
    assert_fails(&clash, 2, "different keys under the same key id 1");

    // One damaged record (c3 holds c0's sealed secret, which opens only for c0): once other
    // secrets under key id 1 opened, it fails alone and the rotation goes on with the rest.
    let (acme, c0, c3) = (org("acme"), customer("c0"), customer("c3"));
    let donor = db
        .block_on(db.store.load_customer(&acme, &c0))
        .unwrap()
        .unwrap();
    let victim = db
        .block_on(db.store.load_customer(&acme, &c3))
        .unwrap()
        .unwrap();
    let written = db
        .block_on(db.store.write_customer(
            &acme,
            &c3,
            Some(victim.version),
            &donor.value.decode().unwrap(),
            &[],
        ))
        .unwrap();
    assert!(matches!(written, Written::Stored(_)));
    let damaged = db.mfa(&[
        "keys",
        "rotate",
        "--new-key-file",
        new.to_str().unwrap(),
        "--key-file",
        portal_key.to_str().unwrap(),
        "--concurrency",
        "1",
    ]);
    assert_status(&damaged, 1);
    let text = stderr(&damaged);
    assert!(
        text.contains("customer c3 of organisation acme") && text.contains("damaged or altered"),
        "{text}"
    );
    assert_eq!(
        db.block_on(db.store.count_sealed()).unwrap(),
        [(KeyId::new(1), 1), (KeyId::new(2), 4)]
    );
}

fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    key
}

/// Reads a key file the way the command does, for the test's own keyring.
fn key_from_file(path: &Path) -> (u32, [u8; 32]) {
    let text = std::fs::read_to_string(path).unwrap();
    let (id, hex) = text.trim().split_once(':').unwrap();
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    (id.parse().unwrap(), key)
}

fn rotation_survives_sigkill<S: Store + 'static>(db: &Db<S>) {
    const CUSTOMERS: usize = 300;
    let key1 = rand_key();
    let service = db.service(ring(1, &key1));
    let apps = db.block_on(enroll(
        &service,
        "acme",
        (0..CUSTOMERS).map(|i| format!("customer-{i:03}")),
    ));
    // The portal's key file (bare hex: key id 1) and a new one from `keys generate`.
    let old = db.path("portal.key");
    write_key_file(&old, &format!("{}\n", hex(&key1)));
    let new = db.path("new.key");
    assert_status(
        &db.mfa(&[
            "keys",
            "generate",
            "--id",
            "2",
            "--out",
            new.to_str().unwrap(),
        ]),
        0,
    );
    let (new_id, key2) = key_from_file(&new);
    assert_eq!(new_id, 2);
    let rotate = [
        "keys",
        "rotate",
        "--new-key-file",
        new.to_str().unwrap(),
        "--key-file",
        old.to_str().unwrap(),
        // Small batches with a pause between them: the kill lands half way.
        "--batch-size",
        "10",
        "--pause-ms",
        "40",
    ];

    let mut child = db
        .command(&rotate)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no progress half way: {seen:?}"));
        let progress = line
            .strip_prefix("resealed ")
            .and_then(|rest| rest.split_once(" of "))
            .map(|(done, total)| {
                (
                    done.parse::<usize>().unwrap(),
                    total.parse::<usize>().unwrap(),
                )
            });
        seen.push(line);
        if let Some((done, total)) = progress {
            assert_eq!(total, CUSTOMERS);
            if done > 0 && done < total {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let counts = db.block_on(db.store.count_sealed()).unwrap();
    let under = |id: u32| {
        counts
            .iter()
            .find(|(key, _)| *key == KeyId::new(id))
            .map_or(0, |(_, n)| *n)
    };
    assert!(
        under(1) > 0 && under(2) > 0,
        "killed half way: {counts:?} after {seen:?}"
    );
    assert_eq!(under(1) + under(2), CUSTOMERS as u64);

    // The rerun finishes what is left, and only that, while the service (restarted with key 2
    // active and key 1 as previous) signs every customer in. (On PostgreSQL a reseal the server
    // was running when its client died may still commit after the count above: at most that many.)
    let rerun = db
        .command(&rotate)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut both = ring(2, &key2);
    both.add(SealingKey::new(KeyId::new(1), key1)).unwrap();
    let live = db.service(both);
    db.clock.advance(60);
    // From the other end, so they meet the walk in the middle.
    for (id, app) in apps.iter().rev() {
        let code = app_code(app, db.clock.now());
        let session = db
            .block_on(live.login_step(&org("acme"), &customer(id)))
            .unwrap()
            .session();
        let _passed = db
            .block_on(live.verify_totp(&org("acme"), &customer(id), &session, &code))
            .unwrap_or_else(|error| panic!("{id} during the rotation: {error}"));
    }
    let rerun = rerun.wait_with_output().unwrap();
    assert_status(&rerun, 0);
    let resealed: u64 = stdout(&rerun)
        .strip_prefix("resealed ")
        .and_then(|rest| rest.split_once(' '))
        .map(|(n, _)| n.parse().unwrap())
        .unwrap_or_else(|| panic!("{}", stdout(&rerun)));
    assert!(
        resealed > 0 && resealed <= under(1),
        "{resealed} of {}: {}",
        under(1),
        stdout(&rerun)
    );
    assert_eq!(
        db.block_on(db.store.count_sealed()).unwrap(),
        [(KeyId::new(2), CUSTOMERS as u64)]
    );
    let status = db.mfa(&["keys", "status", "--key-file", new.to_str().unwrap()]);
    assert_eq!(
        stdout(&status)
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["2", "300", "yes"]
    );
    let again = db.mfa(&rotate);
    assert_status(&again, 0);
    assert!(
        stdout(&again).starts_with("nothing to do"),
        "{}",
        stdout(&again)
    );

    // Every secret opens under key 2 alone: every customer signs in with the app's code.
    db.clock.advance(120);
    let only_new = db.service(ring(2, &key2));
    for (id, app) in &apps {
        let code = app_code(app, db.clock.now());
        let session = db
            .block_on(only_new.login_step(&org("acme"), &customer(id)))
            .unwrap()
            .session();
        let _passed = db
            .block_on(only_new.verify_totp(&org("acme"), &customer(id), &session, &code))
            .unwrap_or_else(|error| panic!("{id}: {error}"));
    }

    // One resealed event per customer, none twice for all the kill.
    let mut resealed: BTreeMap<String, usize> = BTreeMap::new();
    for stored in db.events("acme") {
        if let EventKind::SecretResealed { from, to } = stored.event.kind {
            assert_eq!((from, to), (KeyId::new(1), KeyId::new(2)));
            *resealed
                .entry(stored.event.customer.unwrap().as_str().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(resealed.len(), CUSTOMERS);
    assert!(resealed.values().all(|&n| n == 1), "{resealed:?}");
}

macro_rules! on_every_store {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $check() {
                    super::$check(&super::Db::sqlite());
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $check() {
                    if let Some(db) = super::Db::postgres() {
                        super::$check(&db);
                    }
                }
            )*
        }
    };
}

on_every_store!(
    org_switch_shows_in_org_show,
    customer_show_never_prints_a_secret,
    reset_asks_then_works_and_is_audited,
    audit_exports_thousands_of_events,
    keys_status_and_a_wrong_key,
    rotation_survives_sigkill,
);

/// A record whose bytes no version wrote (a damaged row) is named, not retried: `customer show`
/// and `customer reset` exit 1 with one line that says whose record it is and never its bytes, and
/// the row is left as it was.
#[test]
fn a_corrupt_record_exits_1_and_names_it() {
    let db = Db::sqlite();
    let service = db.service(ring(1, &[1; 32]));
    db.block_on(enroll(&service, "acme", ["alice".to_owned()]));
    let url = &db.args[1];
    let path = url.strip_prefix("sqlite://").unwrap();
    let damaged = [2u8, 0xFF, 0xFF, 0xFF, 0xFF];
    rusqlite::Connection::open(path)
        .unwrap()
        .execute(
            "UPDATE customers SET record = ?1 WHERE customer = 'alice'",
            [&damaged[..]],
        )
        .unwrap();
    for args in [
        &["customer", "show", "acme", "alice"][..],
        &["customer", "reset", "acme", "alice", "--by", "ops", "--yes"][..],
    ] {
        let output = db.mfa(args);
        assert_status(&output, 1);
        let text = stderr(&output);
        assert!(
            text.contains("customer alice in organisation acme cannot be read"),
            "{args:?}: {text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }
    let stored: Vec<u8> = rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT record FROM customers WHERE customer = 'alice'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, damaged, "nothing was written");
}

/// A record that cannot be read says nothing about a key: checking that a new key does not reuse
/// an id that seals other secrets passes it over and reads the next one.
#[test]
fn the_key_id_check_passes_over_an_unreadable_record() {
    let db = Db::sqlite();
    let service = db.service(ring(1, &[1; 32]));
    db.block_on(enroll(
        &service,
        "acme",
        ["a1", "a2", "aaron", "alice"].map(str::to_owned),
    ));
    let path = db.args[1].strip_prefix("sqlite://").unwrap().to_owned();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE customers SET record = x'02FFFFFF' WHERE customer <> 'alice'",
            [],
        )
        .unwrap();
    let wrong = db.path("wrong.key");
    write_key_file(&wrong, &format!("1:{}", hex(&[9; 32])));
    let reused = db.mfa(&["keys", "rotate", "--new-key-file", wrong.to_str().unwrap()]);
    assert_fails(&reused, 1, "already sealed under its key id 1");
}

// ---------------------------------------------------------------------------------------------
// Input checked before any database: the same on every store.

#[test]
fn bad_input_exits_2_with_one_line() {
    let db = Db::sqlite();
    let bad_key = db.path("bad.key");
    write_key_file(&bad_key, "not-a-key-but-secret-looking-0123456789\n");
    let open_key = db.path("open.key");
    write_key_file(&open_key, &hex(&[7; 32]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mfa = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mfa"))
            .arg("admin")
            .args(args)
            .env_remove("MFA_SEALING_KEY")
            .env_remove("MFA_DATABASE_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let url = db.args[1].clone();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["org", "show", "acme"], "--database-url"),
        (
            vec!["--database-url", "mysql://db/x", "org", "show", "acme"],
            "sqlite:// or postgres://",
        ),
        (
            vec!["--database-url", "sqlite://", "org", "show", "acme"],
            "needs a file path",
        ),
        (
            vec![
                "--database-url",
                "sqlite:///nonexistent/mfa.db",
                "org",
                "show",
                "acme",
            ],
            "no such database file",
        ),
        (
            vec![
                "--database-url",
                "postgres://me:hunter2@db:notaport/x",
                "org",
                "show",
                "acme",
            ],
            "PostgreSQL URL",
        ),
        (
            vec![
                "--database-url",
                &url,
                "--schema",
                "x",
                "org",
                "show",
                "acme",
            ],
            "a schema is for PostgreSQL",
        ),
        (
            vec!["--database-url", &url, "org", "show", " acme"],
            "organisation id",
        ),
        (
            vec!["--database-url", &url, "customer", "show", "acme", ""],
            "customer id",
        ),
        (
            vec![
                "--database-url",
                &url,
                "audit",
                "acme",
                "--since",
                "yesterday",
            ],
            "--since",
        ),
        (
            vec![
                "--database-url",
                &url,
                "audit",
                "acme",
                "--since",
                "2026-13-01T00:00:00Z",
            ],
            "RFC 3339",
        ),
        (
            vec![
                "--database-url",
                &url,
                "keys",
                "status",
                "--key-file",
                bad_key.to_str().unwrap(),
            ],
            "must hold one sealing key",
        ),
        (
            vec![
                "--database-url",
                &url,
                "keys",
                "status",
                "--key-file",
                open_key.to_str().unwrap(),
            ],
            "accessible to other users",
        ),
        (
            vec![
                "--database-url",
                &url,
                "keys",
                "rotate",
                "--new-key-file",
                "/nonexistent.key",
            ],
            "/nonexistent.key",
        ),
        (
            vec![
                "--database-url",
                &url,
                "customer",
                "reset",
                "acme",
                "alice",
                "--by",
                "ops",
            ],
            "--yes",
        ),
    ];
    for (args, expected) in cases {
        let output = mfa(&args);
        assert_fails(&output, 2, expected);
        let stderr = stderr(&output);
        assert!(
            !stderr.contains("hunter2") && !stderr.contains("secret-looking"),
            "{stderr}"
        );
    }
    let env = Command::new(env!("CARGO_BIN_EXE_mfa"))
        .args(["admin", "--database-url", &url, "keys", "status"])
        .env("MFA_SEALING_KEY", "not-a-key-but-secret-looking")
        .output()
        .unwrap();
    assert_fails(&env, 2, "MFA_SEALING_KEY must hold one sealing key");
    assert!(!stderr(&env).contains("secret-looking"));
    // clap's own usage errors are exit 2 too; a password in MFA_DATABASE_URL stays out of --help.
    assert_status(&mfa(&["org", "frobnicate", "acme"]), 2);
    let help = Command::new(env!("CARGO_BIN_EXE_mfa"))
        .args(["admin", "--help"])
        .env("MFA_DATABASE_URL", "postgres://me:hunter2@db/x")
        .output()
        .unwrap();
    assert_status(&help, 0);
    assert!(!stdout(&help).contains("hunter2"));
}

#[test]
fn keys_generate_writes_a_private_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.key");
    let generate = |path: &Path, id: &str| {
        Command::new(env!("CARGO_BIN_EXE_mfa"))
            .args([
                "admin",
                "keys",
                "generate",
                "--id",
                id,
                "--out",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let output = generate(&path, "20260401");
    assert_status(&output, 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let (id, key) = text.trim_end().split_once(':').unwrap();
    assert_eq!(id, "20260401");
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!stdout(&output).contains(key), "the key is never printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_fails(&generate(&path, "3"), 1, "refusing to overwrite");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "untouched");
    assert_status(&generate(&dir.path().join("zero.key"), "0"), 2);
    let other = dir.path().join("other.key");
    assert_status(&generate(&other, "20260401"), 0);
    assert_ne!(std::fs::read_to_string(&other).unwrap(), text, "fresh keys");
}

/// `keys generate` syncs the directory that holds the new file too: a bare file name (whose parent is
/// the empty path, meaning the current directory) and a path in a subdirectory both work.
#[test]
fn keys_generate_in_the_current_directory_and_in_a_subdirectory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for (out, id) in [("bare.key", "7"), ("keys/sub.key", "8")] {
        let output = Command::new(env!("CARGO_BIN_EXE_mfa"))
            .args(["admin", "keys", "generate", "--id", id, "--out", out])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_status(&output, 0);
        let text = std::fs::read_to_string(dir.path().join(out)).unwrap();
        assert!(text.starts_with(&format!("{id}:")), "{out}");
    }
}

#[test]
fn every_admin_subcommand_has_help() {
    for sub in [
        &["admin", "--help"][..],
        &["admin", "org", "show", "--help"],
        &["admin", "org", "enable", "--help"],
        &["admin", "customer", "show", "--help"],
        &["admin", "customer", "reset", "--help"],
        &["admin", "audit", "--help"],
        &["admin", "keys", "status", "--help"],
        &["admin", "keys", "rotate", "--help"],
        &["admin", "keys", "generate", "--help"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_mfa"))
            .args(sub)
            .output()
            .unwrap();
        assert_status(&output, 0);
        assert!(stdout(&output).contains("Usage: mfa admin"), "{sub:?}");
    }
    let rotate = Command::new(env!("CARGO_BIN_EXE_mfa"))
        .args(["admin", "keys", "rotate", "--help"])
        .output()
        .unwrap();
    assert!(
        stdout(&rotate).contains("must already hold"),
        "{}",
        stdout(&rotate)
    );
}
