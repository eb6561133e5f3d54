//! Drives the whole service over the in-memory store with arbitrary operation sequences: organisation
//! toggles, enrollment, confirmations and sign-ins with right, replayed, wrong and arbitrary codes,
//! backup codes, resets and clock jumps both ways. Nothing may panic, and the safety rules hold after
//! every step: no TOTP step is accepted twice for one secret, no backup code twice, a configured
//! customer is always challenged and an unconfigured one never passes while MFA is on.

#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mfa_core::{
    BackupHashParams, CustomerId, KeyId, KeyRing, KeyUri, LoginStep, ManualClock, MemoryStore,
    OrgId, PassedBy, SealingKey, Service, Settings, UnixTime, Window,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[derive(Arbitrary, Debug)]
enum Op {
    SetOrg(bool),
    LoginStep(bool),
    Start(bool),
    Confirm(bool, Code),
    SignIn(bool, Code),
    GenerateBackup(bool),
    UseBackup(bool, u8, String),
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
    let people = [CustomerId::new("alice").unwrap(), CustomerId::new("bob").unwrap()];
    let clock = ManualClock::new(UnixTime::from_secs(t0));
    let keys = KeyRing::new(SealingKey::new(KeyId::new(1), [3; 32]));
    let mfa = Service::new(MemoryStore::new(), clock.clone(), keys, ChaCha20Rng::seed_from_u64(0));
    let mut settings = Settings::default();
    settings.backup_hash = BackupHashParams::danger_insecure_fast();
    ready(mfa.update_settings(&org, settings, "fuzz")).unwrap();

    let mut enabled = false;
    let mut now = t0;
    let mut secrets: HashMap<usize, KeyUri> = HashMap::new();
    let mut backup: HashMap<usize, Vec<String>> = HashMap::new();
    let mut accepted_steps: HashMap<usize, BTreeSet<u64>> = HashMap::new();
    let mut accepted_backup: BTreeSet<String> = BTreeSet::new();

    for op in ops.into_iter().take(64) {
        match op {
            Op::SetOrg(on) => {
                ready(mfa.set_org_enabled(&org, on, "fuzz")).unwrap();
                enabled = on;
            }
            Op::Jump(delta) => {
                now = now.saturating_add_signed(i64::from(delta)).max(t0);
                clock.set(UnixTime::from_secs(now));
            }
            Op::LoginStep(who) => {
                let c = usize::from(who);
                let step = ready(mfa.login_step(&org, &people[c])).unwrap();
                let (status, _) = ready(mfa.status(&org, &people[c])).unwrap();
                match step {
                    LoginStep::Challenge => assert_eq!(status.state.as_str(), "configured"),
                    LoginStep::Enroll => assert!(enabled && status.state.as_str() != "configured"),
                    LoginStep::Done(passed) => {
                        assert!(!enabled && status.state.as_str() != "configured");
                        assert_eq!(passed.method(), PassedBy::NotRequired);
                    }
                }
            }
            Op::Start(who) => {
                let c = usize::from(who);
                if let Ok(enrollment) = ready(mfa.start_enrollment(&org, &people[c])) {
                    assert!(enabled, "enrollment started while MFA was off");
                    secrets.insert(c, enrollment.uri);
                    accepted_steps.remove(&c);
                }
            }
            Op::Confirm(who, code) => {
                let c = usize::from(who);
                let typed = text(&secrets, c, &code, now);
                if ready(mfa.confirm_enrollment(&org, &people[c], &typed)).is_ok() {
                    let step = step_of(&secrets, c, &typed, now).expect("only the app's code can confirm");
                    accepted_steps.insert(c, BTreeSet::from([step]));
                }
            }
            Op::SignIn(who, code) => {
                let c = usize::from(who);
                let typed = text(&secrets, c, &code, now);
                if ready(mfa.verify_totp(&org, &people[c], &typed)).is_ok() {
                    let step = step_of(&secrets, c, &typed, now).expect("only the app's code can sign in");
                    let seen = accepted_steps.entry(c).or_default();
                    assert!(seen.iter().all(|earlier| *earlier < step), "step {step} after {seen:?}");
                    seen.insert(step);
                }
            }
            Op::GenerateBackup(who) => {
                let c = usize::from(who);
                if let Ok(codes) = ready(mfa.generate_backup_codes(&org, &people[c])) {
                    backup.insert(c, codes.iter().map(|code| code.as_str().to_string()).collect());
                }
            }
            Op::UseBackup(who, n, other) => {
                let c = usize::from(who);
                let typed = backup.get(&c).and_then(|codes| codes.get(usize::from(n) % 6)).cloned().unwrap_or(other);
                if ready(mfa.verify_backup_code(&org, &people[c], &typed)).is_ok() {
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
                    assert!(accepted_backup.insert(key), "backup code {typed} accepted twice");
                }
            }
            Op::Reset(who) => {
                let c = usize::from(who);
                ready(mfa.reset(&org, &people[c], "fuzz")).unwrap();
                let (status, _) = ready(mfa.status(&org, &people[c])).unwrap();
                assert_eq!((status.state.as_str(), status.failures), ("unconfigured", 0));
            }
        }
    }
});

/// The text to type: the app's code for a step near now, or anything at all.
fn text(secrets: &HashMap<usize, KeyUri>, c: usize, code: &Code, now: u64) -> String {
    match (code, secrets.get(&c)) {
        (Code::App(offset), Some(uri)) => {
            let step = (now / 30).saturating_add_signed(i64::from(*offset % 3));
            uri.as_totp().unwrap().generate_at_step(uri.secret(), step).to_string()
        }
        (Code::App(_), None) => "000000".into(),
        (Code::Text(text), _) => text.clone(),
    }
}

/// The step an accepted code belongs to: the earliest step of the ±1 window with that code.
fn step_of(secrets: &HashMap<usize, KeyUri>, c: usize, typed: &str, now: u64) -> Option<u64> {
    let uri = secrets.get(&c)?;
    let totp = uri.as_totp()?;
    totp.verify(uri.secret(), typed, UnixTime::from_secs(now), Window::default()).ok().map(|m| m.step)
}
