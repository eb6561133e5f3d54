//! Drives the pure policy machine directly, with no executor, store or clock: arbitrary sequences
//! of enrollment, confirmation, TOTP and backup codes (right, replayed and arbitrary), new backup
//! codes, resets and time moving on, each decision's record applied as a store would. Nothing may
//! panic; a refusal changes no factor (at most the failure count, with refusal events only); no
//! TOTP step and no backup code is accepted twice; every record survives its byte form. The input's
//! tail is also read as a stored record and, if it decodes, given a code.

#![no_main]

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mfa_core::audit::EventKind;
use mfa_core::backup::{BackupAttempt, BackupHashParams};
use mfa_core::machine::{Context, CustomerRecord};
use mfa_core::uri::KeyUri;
use mfa_core::{
    Actor, CustomerId, KeyId, KeyRing, LoginStep, MfaSession, OrgId, OrgMfa, OrgPolicy, Purpose,
    Settings, UnixTime,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const T0: u64 = 1_767_225_600;

#[derive(Arbitrary, Debug)]
enum Op {
    Start,
    Confirm(Option<String>),
    Totp(Option<String>),
    Backup(u8, Option<String>),
    /// A step-up with a TOTP code, for one of two purposes.
    StepUp(bool, Option<String>),
    /// A step-up with backup code `n`, for one of two purposes.
    StepUpBackup(bool, u8, Option<String>),
    NewBackupCodes,
    /// Start replacing the authenticator from a session fresh for it.
    StartReplacement,
    /// Confirm the replacement with this text, or the new app's code.
    ConfirmReplacement(Option<String>),
    Reset,
    Wait(u16),
}

fn code_at(uri: &KeyUri, now: u64) -> String {
    let totp = uri.as_totp().expect("a TOTP URI");
    totp.generate(uri.secret(), UnixTime::from_secs(now))
        .expect("after T0")
        .to_string()
}

/// A session of `generation` whose second factor passed at `at`, as a host would keep it.
fn passed(generation: u64, at: u64) -> MfaSession {
    let json = format!(
        r#"{{"generation":{generation},"signed_in_at":{at},"passed":{{"by":"totp","at":{at}}}}}"#
    );
    serde_json::from_str(&json).expect("a session")
}

fn purpose(card: bool) -> Purpose {
    if card {
        Purpose::PAYMENT_METHOD
    } else {
        Purpose::BACKUP_CODES
    }
}

/// An accepted code's events: a step-up is logged as one, for the purpose asked for, after its
/// acceptance; a sign-in is no step-up. (The pass's session is out of reach until the service
/// mints it, on purpose: the service tests check its freshness.)
fn check_step_up(purpose: Option<Purpose>, events: &[mfa_core::audit::Event]) {
    let logged = events.iter().find_map(|event| match event.kind {
        EventKind::StepUpPassed { purpose, .. } => Some(purpose),
        _ => None,
    });
    assert_eq!(logged, purpose, "the step-up event names the purpose asked for");
    if purpose.is_some() {
        assert!(matches!(
            events.first().map(|event| &event.kind),
            Some(EventKind::TotpAccepted { .. } | EventKind::BackupCodeAccepted { .. })
        ));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Unstructured::new(data);
    let ops: Vec<Op> = input.arbitrary().unwrap_or_default();
    let (org, customer) = (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice").unwrap(),
    );
    let keys = KeyRing::new(mfa_core::SealingKey::new(KeyId::new(1), [1; 32]));
    let mut settings = Settings::default();
    settings.backup_hash = BackupHashParams::danger_insecure_fast();
    let policy = OrgPolicy::default()
        .with_settings(settings)
        .unwrap()
        .with_mfa(OrgMfa::On);
    let admin = Actor::new("fuzz").unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut record = CustomerRecord::default();
    let mut now = T0;
    let (mut uri, mut codes): (Option<KeyUri>, Vec<String>) = (None, Vec::new());
    let mut replacement: Option<KeyUri> = None;
    let (mut steps, mut used) = (BTreeSet::new(), BTreeSet::new());

    for op in ops.into_iter().take(48) {
        let ctx = Context {
            org: &org,
            customer: &customer,
            now: UnixTime::from_secs(now),
        };
        let session = match record.login_step(&policy, &ctx) {
            LoginStep::Enroll(session) | LoginStep::Challenge(session) => session,
            other => panic!("MFA is on: {other:?}"),
        };
        let before = record.clone();
        let (next, events, ok) = match op {
            Op::Wait(secs) => {
                now += u64::from(secs);
                continue;
            }
            Op::Start => {
                let (next, events, outcome) = record
                    .start_enrollment(&session, &policy, &keys, &ctx, &mut rng)
                    .into_parts();
                if let Ok(enrollment) = &outcome {
                    uri = Some(enrollment.uri.clone());
                }
                (next, events, outcome.is_ok())
            }
            Op::Confirm(text) => {
                let code = text
                    .or_else(|| uri.as_ref().map(|u| code_at(u, now)))
                    .unwrap_or_default();
                let (next, events, outcome) = record
                    .confirm_enrollment(&session, &code, &policy, &keys, &ctx, &mut rng)
                    .into_parts();
                (next, events, outcome.is_ok())
            }
            Op::Totp(_) | Op::StepUp(..) => {
                let (purpose, text) = match op {
                    Op::StepUp(card, text) => (Some(purpose(card)), text),
                    Op::Totp(text) => (None, text),
                    _ => unreachable!(),
                };
                let code = text
                    .or_else(|| uri.as_ref().map(|u| code_at(u, now)))
                    .unwrap_or_default();
                let (next, events, outcome) = match purpose {
                    None => record.verify_totp(&session, &code, &policy, &keys, &ctx),
                    Some(purpose) => {
                        record.step_up_totp(&session, purpose, &code, &policy, &keys, &ctx)
                    }
                }
                .into_parts();
                if outcome.is_ok() {
                    check_step_up(purpose, &events);
                }
                if outcome.is_ok() {
                    let step = events.iter().find_map(|e| match e.kind {
                        EventKind::TotpAccepted { step, .. } => Some(step),
                        _ => None,
                    });
                    assert!(
                        steps.insert(step.expect("an accepted code is logged")),
                        "a step passed twice"
                    );
                }
                (next, events, outcome.is_ok())
            }
            Op::Backup(..) | Op::StepUpBackup(..) => {
                let (purpose, i, text) = match op {
                    Op::StepUpBackup(card, i, text) => (Some(purpose(card)), i, text),
                    Op::Backup(i, text) => (None, i, text),
                    _ => unreachable!(),
                };
                let code = text
                    .or_else(|| codes.get(usize::from(i)).cloned())
                    .unwrap_or_default();
                let mut attempt = BackupAttempt::new(&code);
                let (next, events, outcome) = match purpose {
                    None => record.verify_backup_code(&session, &mut attempt, &policy, &ctx),
                    Some(purpose) => {
                        record.step_up_backup_code(&session, purpose, &mut attempt, &policy, &ctx)
                    }
                }
                .into_parts();
                if outcome.is_ok() {
                    check_step_up(purpose, &events);
                }
                if outcome.is_ok() {
                    assert!(
                        used.insert(code.to_ascii_uppercase()),
                        "a backup code passed twice"
                    );
                }
                (next, events, outcome.is_ok())
            }
            Op::NewBackupCodes => {
                let fresh = passed(record.generation(), now);
                let (next, events, outcome) = record
                    .generate_backup_codes(&fresh, &policy, &ctx, &mut rng)
                    .into_parts();
                if let Ok(issued) = &outcome {
                    codes = issued.codes.iter().map(|c| c.as_str().to_owned()).collect();
                    used.clear();
                }
                (next, events, outcome.is_ok())
            }
            Op::StartReplacement => {
                // A session that just passed a code, as a step-up for the purpose leaves it.
                let fresh = passed(record.generation(), now);
                let (next, events, outcome) = record
                    .start_replacement(&fresh, &policy, &keys, &ctx, &mut rng)
                    .into_parts();
                if let Ok(enrollment) = &outcome {
                    replacement = Some(enrollment.uri.clone());
                }
                (next, events, outcome.is_ok())
            }
            Op::ConfirmReplacement(text) => {
                let code = text
                    .or_else(|| replacement.as_ref().map(|u| code_at(u, now)))
                    .unwrap_or_default();
                let signed_in = passed(record.generation(), now);
                let (next, events, outcome) = record
                    .confirm_replacement(&signed_in, &code, &policy, &keys, &ctx, &mut rng)
                    .into_parts();
                if outcome.is_ok() {
                    // The new app is the one now: its steps start afresh.
                    let step = events.iter().find_map(|e| match e.kind {
                        EventKind::AuthenticatorReplaced { step } => Some(step),
                        _ => None,
                    });
                    assert!(step.is_some(), "a replacement is logged");
                    uri = replacement.take();
                    steps.clear();
                    steps.insert(step.unwrap_or_default());
                    assert!(next.as_ref().is_some_and(|n| n.generation() != before.generation()));
                }
                (next, events, outcome.is_ok())
            }
            Op::Reset => {
                replacement = None;
                let (next, events, outcome) = record.reset(&admin, &ctx, &mut rng).into_parts();
                uri = None;
                codes.clear();
                steps.clear();
                (next, events, outcome.is_ok())
            }
        };
        if ok {
            assert!(next.is_some(), "a success without a write");
        } else {
            for event in &events {
                assert!(
                    matches!(
                        event.kind,
                        EventKind::AttemptRejected { .. } | EventKind::LockedOut { .. }
                    ),
                    "a refusal logged {:?}",
                    event.kind
                );
            }
            if let Some(next) = &next {
                assert_eq!(next.mfa(), before.mfa(), "a refusal changed a factor");
                assert_eq!(next.generation(), before.generation());
            }
        }
        if let Some(next) = next {
            assert_eq!(
                CustomerRecord::from_bytes(&next.to_bytes()).as_ref(),
                Ok(&next)
            );
            record = next;
        }
    }

    // Whatever else the bytes are, a record read from them never panics the machine.
    if let Ok(stored) = CustomerRecord::from_bytes(input.take_rest()) {
        let ctx = Context {
            org: &org,
            customer: &customer,
            now: UnixTime::from_secs(now),
        };
        let session = stored.login_step(&policy, &ctx);
        if let LoginStep::Challenge(session) | LoginStep::Enroll(session) = session {
            let _ = stored.verify_totp(&session, "123456", &policy, &keys, &ctx);
            let _ = stored.confirm_enrollment(&session, "123456", &policy, &keys, &ctx, &mut rng);
        }
    }
});
