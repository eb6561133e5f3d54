//! Drives the whole service over the in-memory store with arbitrary operation sequences: organisation
//! toggles, enrollment, confirmations and sign-ins with right, replayed, wrong and arbitrary codes,
//! backup codes, resets and clock jumps both ways, each customer in two sessions. Nothing may panic,
//! and the safety rules hold after every step: no TOTP step is accepted twice for one secret, no
//! backup code twice, a configured customer is always challenged and an unconfigured one never
//! passes while MFA is on; no session is let in without a second factor unless none is required;
//! a session from before a reset or an enrollment is over.

#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mfa_core::{
    Actor, CustomerId, KeyId, KeyRing, LoginStep, ManualClock, MemoryStore, MfaSession, OrgId,
    OrgMfa, PassedBy, Refusal, SealingKey, Service, ServiceError, SessionCheck, Settings, Store,
    UnixTime, backup::BackupHashParams, otp::Window, uri::KeyUri,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// A customer (alice or bob) and one of their two sessions.
#[derive(Arbitrary, Clone, Copy, Debug)]
struct Who(bool, bool);

impl Who {
    fn customer(self) -> usize {
        usize::from(self.0)
    }

    fn session(self) -> usize {
        usize::from(self.1)
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    SetOrg(bool),
    LoginStep(Who),
    Start(Who),
    Confirm(Who, Code),
    SignIn(Who, Code),
    GenerateBackup(Who),
    UseBackup(Who, u8, String),
    Reset(bool),
    Jump(i16),
}

#[derive(Arbitrary, Debug)]
enum Code {
    App(i8),
    Text(String),
}

/// Polls a future that never waits (the memory store answers at once) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the memory store never waits"),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let t0 = 1_767_225_600u64;
    let org = OrgId::new("acme").unwrap();
    let people = [
        CustomerId::new("alice").unwrap(),
        CustomerId::new("bob").unwrap(),
    ];
    let clock = ManualClock::new(UnixTime::from_secs(t0));
    let keys = KeyRing::new(SealingKey::new(KeyId::new(1), [3; 32]));
    let mfa = Service::new(
        MemoryStore::new(),
        clock.clone(),
        keys,
        ChaCha20Rng::seed_from_u64(0),
    );
    let mut settings = Settings::default();
    settings.backup_hash = BackupHashParams::danger_insecure_fast();
    ready(mfa.update_settings(&org, settings, &Actor::new("fuzz").unwrap())).unwrap();

    let mut enabled = false;
    let mut now = t0;
    let mut secrets: HashMap<usize, KeyUri> = HashMap::new();
    let mut backup: HashMap<usize, Vec<String>> = HashMap::new();
    let mut accepted_steps: HashMap<usize, BTreeSet<u64>> = HashMap::new();
    let mut accepted_backup: BTreeSet<String> = BTreeSet::new();
    // Each customer's two sessions, from a password sign-in while MFA is off.
    let mut sessions: Vec<[MfaSession; 2]> = people
        .iter()
        .map(|id| {
            let session = ready(mfa.login_step(&org, id)).unwrap().session();
            [session, session]
        })
        .collect();

    for op in ops.into_iter().take(64) {
        match op {
            Op::SetOrg(on) => {
                let switch = if on { OrgMfa::On } else { OrgMfa::Off };
                ready(mfa.set_org_mfa(&org, switch, &Actor::new("fuzz").unwrap())).unwrap();
                enabled = on;
            }
            Op::Jump(delta) => {
                now = now.saturating_add_signed(i64::from(delta)).max(t0);
                clock.set(UnixTime::from_secs(now));
            }
            Op::LoginStep(who) => {
                let c = who.customer();
                let step = ready(mfa.login_step(&org, &people[c])).unwrap();
                let status = ready(mfa.status(&org, &people[c])).unwrap().customer;
                match &step {
                    LoginStep::Challenge(_) => assert_eq!(status.state.as_str(), "configured"),
                    LoginStep::Enroll(_) => {
                        assert!(enabled && status.state.as_str() != "configured")
                    }
                    LoginStep::Done(passed) => {
                        assert!(!enabled && status.state.as_str() != "configured");
                        assert_eq!(passed.method(), PassedBy::NotRequired);
                    }
                    other => panic!("a login step the target does not know: {other:?}"),
                }
                sessions[c][who.session()] = step.session();
            }
            Op::Start(who) => {
                let c = who.customer();
                let session = &sessions[c][who.session()];
                if let Ok(enrollment) = ready(mfa.start_enrollment(&org, &people[c], session)) {
                    assert!(enabled, "enrollment started while MFA was off");
                    secrets.insert(c, enrollment.uri);
                    accepted_steps.remove(&c);
                }
            }
            Op::Confirm(who, code) => {
                let (c, s) = (who.customer(), who.session());
                let typed = text(&secrets, c, &code, now);
                if let Ok(passed) =
                    ready(mfa.confirm_enrollment(&org, &people[c], &sessions[c][s], &typed))
                {
                    let step =
                        step_of(&secrets, c, &typed, now).expect("only the app's code can confirm");
                    accepted_steps.insert(c, BTreeSet::from([step]));
                    // A new factor: the other session is over, this one goes on.
                    let other = sessions[c][1 - s];
                    sessions[c][s] = passed.session();
                    let check = ready(mfa.check_session(&org, &people[c], &other)).unwrap();
                    assert_eq!(
                        check,
                        SessionCheck::Ended,
                        "a session from before the enrollment"
                    );
                }
            }
            Op::SignIn(who, code) => {
                let (c, s) = (who.customer(), who.session());
                let typed = text(&secrets, c, &code, now);
                if let Ok(accepted) =
                    ready(mfa.verify_totp(&org, &people[c], &sessions[c][s], &typed))
                {
                    let step =
                        step_of(&secrets, c, &typed, now).expect("only the app's code can sign in");
                    let seen = accepted_steps.entry(c).or_default();
                    assert!(
                        seen.iter().all(|earlier| *earlier < step),
                        "step {step} after {seen:?}"
                    );
                    seen.insert(step);
                    sessions[c][s] = accepted.passed.session();
                }
            }
            Op::GenerateBackup(who) => {
                let (c, s) = (who.customer(), who.session());
                if let Ok(issued) =
                    ready(mfa.generate_backup_codes(&org, &people[c], &sessions[c][s]))
                {
                    assert!(
                        sessions[c][s].second_factor_within(
                            mfa_core::RECENT_FACTOR_SECS,
                            UnixTime::from_secs(now)
                        ),
                        "backup codes without a recent second factor"
                    );
                    backup.insert(
                        c,
                        issued
                            .codes
                            .iter()
                            .map(|code| code.as_str().to_string())
                            .collect(),
                    );
                    sessions[c][s] = issued.passed.session();
                }
            }
            Op::UseBackup(who, n, other) => {
                let (c, s) = (who.customer(), who.session());
                let typed = backup
                    .get(&c)
                    .and_then(|codes| codes.get(usize::from(n) % 6))
                    .cloned()
                    .unwrap_or(other);
                if let Ok(accepted) =
                    ready(mfa.verify_backup_code(&org, &people[c], &sessions[c][s], &typed))
                {
                    sessions[c][s] = accepted.passed.session();
                    // Normalised as the service reads codes (Crockford: O is 0, I and L are 1), so a
                    // look-alike of a used code counts as the same code.
                    let normal: String = typed
                        .to_uppercase()
                        .chars()
                        .filter(|c| !matches!(c, '-' | ' '))
                        .map(|c| match c {
                            'O' => '0',
                            'I' | 'L' => '1',
                            other => other,
                        })
                        .collect();
                    let key = format!("{c}:{normal}");
                    assert!(
                        accepted_backup.insert(key),
                        "backup code {typed} accepted twice"
                    );
                }
            }
            Op::Reset(who) => {
                let c = usize::from(who);
                match ready(mfa.reset(&org, &people[c], &Actor::new("fuzz").unwrap())) {
                    Ok(()) => {
                        let status = ready(mfa.status(&org, &people[c])).unwrap().customer;
                        assert_eq!(
                            (status.state.as_str(), status.failures),
                            ("unconfigured", 0)
                        );
                        // Every session of the customer is over.
                        for session in &sessions[c] {
                            let check =
                                ready(mfa.check_session(&org, &people[c], session)).unwrap();
                            assert_eq!(check, SessionCheck::Ended);
                        }
                    }
                    // Nothing was ever stored for the customer (they never started enrolling).
                    Err(ServiceError::Refused(Refusal::NotFound)) => {
                        let stored = ready(mfa.store().load_customer(&org, &people[c])).unwrap();
                        assert!(stored.is_none(), "NotFound for a stored customer");
                    }
                    Err(other) => panic!("a reset failed: {other}"),
                }
            }
        }
        // No session is let in without a second factor while one is required.
        for (c, mine) in sessions.iter().enumerate() {
            let report = ready(mfa.status(&org, &people[c])).unwrap();
            let (status, on) = (report.customer, report.org_mfa == OrgMfa::On);
            for session in mine {
                if let SessionCheck::Complete(passed) =
                    ready(mfa.check_session(&org, &people[c], session)).unwrap()
                    && !passed.is_second_factor()
                {
                    assert!(
                        !on && status.state.as_str() != "configured",
                        "let in without MFA"
                    );
                }
            }
        }
    }
});

/// The text to type: the app's code for a step near now, or anything at all.
fn text(secrets: &HashMap<usize, KeyUri>, c: usize, code: &Code, now: u64) -> String {
    match (code, secrets.get(&c)) {
        (Code::App(offset), Some(uri)) => {
            let step = (now / 30).saturating_add_signed(i64::from(*offset % 3));
            uri.as_totp()
                .unwrap()
                .generate_at_step(uri.secret(), step)
                .to_string()
        }
        (Code::App(_), None) => "000000".into(),
        (Code::Text(text), _) => text.clone(),
    }
}

/// The step an accepted code belongs to: the earliest step of the ±1 window with that code.
fn step_of(secrets: &HashMap<usize, KeyUri>, c: usize, typed: &str, now: u64) -> Option<u64> {
    let uri = secrets.get(&c)?;
    let totp = uri.as_totp()?;
    totp.verify(
        uri.secret(),
        typed,
        UnixTime::from_secs(now),
        Window::default(),
    )
    .ok()
    .map(|m| m.step)
}
