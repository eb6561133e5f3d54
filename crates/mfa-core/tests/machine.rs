//! The policy machine, tested as a machine: synchronous, with no executor, no store and no clock.
//! Every transition from every state it may start from, and, as a property over random runs, that a
//! refusal changes no factor and that no code is accepted twice.

use mfa_core::audit::{Event, EventKind};
use mfa_core::machine::{Context, CustomerRecord, Decision};
use mfa_core::otp::Totp;
use mfa_core::uri::KeyUri;
use mfa_core::{
    Actor, CustomerId, KeyRing, LoginStep, MfaError, MfaSession, OrgId, OrgMfa, OrgPolicy,
    PassedBy, RECENT_FACTOR_SECS, Refusal, SessionCheck, StateName, UnixTime,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;

use mfa_store_tests::{T0, fixture};

struct World {
    org: OrgId,
    customer: CustomerId,
    keys: KeyRing,
    on: OrgPolicy,
    off: OrgPolicy,
    rng: std::cell::RefCell<ChaCha20Rng>,
}

impl World {
    fn new() -> Self {
        let settings = fixture::fast_settings();
        let off = OrgPolicy::default().with_settings(settings).unwrap();
        Self {
            org: OrgId::new("acme").unwrap(),
            customer: CustomerId::new("alice@acme.test").unwrap(),
            keys: fixture::keys(),
            on: off.clone().with_mfa(OrgMfa::On),
            off,
            rng: std::cell::RefCell::new(fixture::rng(3)),
        }
    }

    fn at(&self, secs: u64) -> Context<'_> {
        Context {
            org: &self.org,
            customer: &self.customer,
            now: UnixTime::from_secs(secs),
        }
    }

    /// The session a password sign-in at `secs` keeps (MFA on: enroll or challenge).
    fn sign_in(&self, record: &CustomerRecord, secs: u64) -> MfaSession {
        match record.login_step(&self.on, &self.at(secs)) {
            LoginStep::Enroll(session) | LoginStep::Challenge(session) => session,
            other => panic!("MFA is on: {other:?}"),
        }
    }

    /// A configured record, its key URI, and the session that enrolled (not passed: the pure
    /// path hands out no passed session).
    fn configured(&self) -> (CustomerRecord, KeyUri) {
        let record = CustomerRecord::default();
        let session = self.sign_in(&record, T0);
        let (pending, enrollment) = apply(
            &record,
            record.start_enrollment(
                &session,
                &self.on,
                &self.keys,
                &self.at(T0),
                &mut *self.rng.borrow_mut(),
            ),
        );
        let enrollment = enrollment.unwrap();
        let code = code_at(&enrollment.uri, T0);
        let (configured, pass) = apply(
            &pending,
            pending.confirm_enrollment(
                &session,
                &code,
                &self.on,
                &self.keys,
                &self.at(T0),
                &mut *self.rng.borrow_mut(),
            ),
        );
        assert_eq!(pass.unwrap().method(), PassedBy::Enrollment);
        (configured, enrollment.uri)
    }
}

fn code_at(uri: &KeyUri, secs: u64) -> String {
    let totp: Totp = uri.as_totp().unwrap();
    totp.generate(uri.secret(), UnixTime::from_secs(secs))
        .unwrap()
        .to_string()
}

/// A session of `generation` whose second factor passed at `at`, as a host keeps it (serde): the
/// pure machine never hands one out.
fn passed_session(generation: u64, at: u64) -> MfaSession {
    serde_json::from_value(serde_json::json!({
        "generation": generation,
        "signed_in_at": at,
        "passed": { "by": "totp", "at": at },
    }))
    .unwrap()
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind_name).collect()
}

/// What a store would hold after `decision`, and its outcome.
fn apply<T>(
    current: &CustomerRecord,
    decision: Decision<T>,
) -> (CustomerRecord, Result<T, MfaError>) {
    let (next, _, outcome) = decision.into_parts();
    (next.unwrap_or_else(|| current.clone()), outcome)
}

fn refusal<T: std::fmt::Debug>(decision: &Decision<T>) -> Refusal {
    match decision.outcome() {
        Err(MfaError::Refused(refusal)) => *refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_sign_in_needs_nothing_while_mfa_is_off_and_enrollment_once_it_is_on() {
    let w = World::new();
    let record = CustomerRecord::default();
    match record.login_step(&w.off, &w.at(T0)) {
        LoginStep::Done(pass) => assert_eq!(pass.method(), PassedBy::NotRequired),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        record.login_step(&w.on, &w.at(T0)),
        LoginStep::Enroll(_)
    ));
}

#[test]
fn enrolling_starts_restarts_and_confirms_with_a_new_generation() {
    let w = World::new();
    let record = CustomerRecord::default();
    let session = w.sign_in(&record, T0);
    // Off: nothing to enroll in, and nothing written or logged.
    let off = record.start_enrollment(
        &session,
        &w.off,
        &w.keys,
        &w.at(T0),
        &mut *w.rng.borrow_mut(),
    );
    assert_eq!(refusal(&off), Refusal::MfaDisabled);
    assert!(off.next().is_none() && off.events().is_empty());
    // Unconfigured to pending.
    let start = record.start_enrollment(
        &session,
        &w.on,
        &w.keys,
        &w.at(T0),
        &mut *w.rng.borrow_mut(),
    );
    assert_eq!(kinds(start.events()), ["enrollment_started"]);
    let (pending, first) = apply(&record, start);
    assert_eq!(pending.state(), StateName::Pending);
    assert_eq!(pending.generation(), record.generation());
    // Pending to pending: a fresh secret replaces the first.
    let (pending, second) = apply(
        &pending,
        pending.start_enrollment(
            &session,
            &w.on,
            &w.keys,
            &w.at(T0 + 5),
            &mut *w.rng.borrow_mut(),
        ),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_ne!(first.uri.secret(), second.uri.secret());
    let stale = pending.confirm_enrollment(
        &session,
        &code_at(&first.uri, T0 + 5),
        &w.on,
        &w.keys,
        &w.at(T0 + 5),
        &mut *w.rng.borrow_mut(),
    );
    assert_eq!(
        refusal(&stale),
        Refusal::WrongCode,
        "the replaced secret is gone"
    );
    // Pending to configured: a new factor, so a new generation.
    let confirm = pending.confirm_enrollment(
        &session,
        &code_at(&second.uri, T0 + 5),
        &w.on,
        &w.keys,
        &w.at(T0 + 5),
        &mut *w.rng.borrow_mut(),
    );
    assert_eq!(kinds(confirm.events()), ["enrollment_confirmed"]);
    let (configured, pass) = apply(&pending, confirm);
    assert_eq!(pass.unwrap().method(), PassedBy::Enrollment);
    assert_eq!(configured.state(), StateName::Configured);
    assert_new_generation(configured.generation(), pending.generation());
    assert_eq!(configured.failures().consecutive(), 0);
    // The enrolling session belonged to the old generation: every other flow now ends it.
    let again = configured.start_enrollment(
        &session,
        &w.on,
        &w.keys,
        &w.at(T0 + 6),
        &mut *w.rng.borrow_mut(),
    );
    assert_eq!(refusal(&again), Refusal::SessionEnded);
    let fresh = w.sign_in(&configured, T0 + 6);
    let again = configured.start_enrollment(
        &fresh,
        &w.on,
        &w.keys,
        &w.at(T0 + 6),
        &mut *w.rng.borrow_mut(),
    );
    assert_eq!(refusal(&again), Refusal::AlreadyConfigured);
    assert!(again.next().is_none() && again.events().is_empty());
}

#[test]
fn confirming_refuses_what_is_not_a_pending_enrollment_or_its_code() {
    let w = World::new();
    let record = CustomerRecord::default();
    let session = w.sign_in(&record, T0);
    let nothing = record.confirm_enrollment(
        &session,
        "123456",
        &w.on,
        &w.keys,
        &w.at(T0),
        &mut *w.rng.borrow_mut(),
    );
    assert_eq!(refusal(&nothing), Refusal::NotPending);
    assert!(nothing.next().is_none() && nothing.events().is_empty());
    let (pending, enrollment) = apply(
        &record,
        record.start_enrollment(
            &session,
            &w.on,
            &w.keys,
            &w.at(T0),
            &mut *w.rng.borrow_mut(),
        ),
    );
    let uri = enrollment.unwrap().uri;
    // Text that is not a code: logged, not counted.
    let malformed = pending.confirm_enrollment(
        &session,
        "x",
        &w.on,
        &w.keys,
        &w.at(T0),
        &mut *w.rng.borrow_mut(),
    );
    assert!(matches!(refusal(&malformed), Refusal::InvalidCode(_)));
    assert!(malformed.next().is_none());
    assert_eq!(kinds(malformed.events()), ["attempt_rejected"]);
    // A wrong code: counted, the state otherwise unchanged.
    let wrong = pending.confirm_enrollment(
        &session,
        "000000",
        &w.on,
        &w.keys,
        &w.at(T0),
        &mut *w.rng.borrow_mut(),
    );
    assert_eq!(refusal(&wrong), Refusal::WrongCode);
    let (counted, _) = apply(&pending, wrong);
    assert_eq!(counted.state(), StateName::Pending);
    assert_eq!(counted.failures().consecutive(), 1);
    assert_eq!(counted.sealed_secret(), pending.sealed_secret());
    // Past its lifetime the right code no longer confirms, and nothing is written.
    let late = T0 + w.on.settings().enrollment_lifetime_secs;
    let expired = pending.confirm_enrollment(
        &session,
        &code_at(&uri, late),
        &w.on,
        &w.keys,
        &w.at(late),
        &mut *w.rng.borrow_mut(),
    );
    assert_eq!(refusal(&expired), Refusal::EnrollmentExpired);
    assert!(expired.next().is_none());
    assert_eq!(kinds(expired.events()), ["attempt_rejected"]);
}

#[test]
fn a_totp_code_passes_once_and_replays_are_told_apart() {
    let w = World::new();
    let (record, uri) = w.configured();
    let now = T0 + 30;
    let session = w.sign_in(&record, now);
    let code = code_at(&uri, now);
    let verify = record.verify_totp(&session, &code, &w.on, &w.keys, &w.at(now));
    assert_eq!(kinds(verify.events()), ["totp_accepted"]);
    let (after, accepted) = apply(&record, verify);
    assert_eq!(accepted.unwrap().passed.method(), PassedBy::Totp);
    // The same code again (a double click): refused, logged, not counted, nothing written.
    let again = after.verify_totp(&session, &code, &w.on, &w.keys, &w.at(now));
    assert_eq!(refusal(&again), Refusal::ReplayedCode);
    assert!(again.next().is_none());
    // The enrollment's code, an older used step: a replay that counts.
    let older = after.verify_totp(&session, &code_at(&uri, T0), &w.on, &w.keys, &w.at(now));
    assert_eq!(refusal(&older), Refusal::ReplayedCode);
    let (counted, _) = apply(&after, older);
    assert_eq!(counted.failures().consecutive(), 1);
    // A TOTP code for a customer without a secret.
    let none = CustomerRecord::default();
    let s = w.sign_in(&none, now);
    let refused = none.verify_totp(&s, &code, &w.on, &w.keys, &w.at(now));
    assert_eq!(refusal(&refused), Refusal::NotConfigured);
    assert!(refused.next().is_none() && refused.events().is_empty());
}

#[test]
fn failures_lock_out_and_a_locked_out_record_is_not_rewritten() {
    let w = World::new();
    let (mut record, uri) = w.configured();
    let now = T0 + 30;
    let session = w.sign_in(&record, now);
    let free = w.on.settings().lockout.free_failures;
    for i in 1..=free {
        let wrong = record.verify_totp(&session, "000000", &w.on, &w.keys, &w.at(now));
        let locks = i == free;
        assert_eq!(
            kinds(wrong.events()),
            if locks {
                vec!["attempt_rejected", "locked_out"]
            } else {
                vec!["attempt_rejected"]
            }
        );
        record = apply(&record, wrong).0;
    }
    let right = record.verify_totp(&session, &code_at(&uri, now), &w.on, &w.keys, &w.at(now));
    assert!(matches!(refusal(&right), Refusal::Locked { .. }));
    assert!(
        right.next().is_none(),
        "a flood cannot starve the customer's own writes"
    );
    assert_eq!(kinds(right.events()), ["attempt_rejected"]);
}

#[test]
fn backup_codes_need_a_recent_second_factor_and_pass_once_each() {
    let w = World::new();
    let (record, _) = w.configured();
    let now = T0 + 30;
    let password_only = w.sign_in(&record, now);
    let refused =
        record.generate_backup_codes(&password_only, &w.on, &w.at(now), &mut *w.rng.borrow_mut());
    assert!(matches!(
        refusal(&refused),
        Refusal::SecondFactorRequired { .. }
    ));
    let old = passed_session(record.generation(), now);
    let later = now + RECENT_FACTOR_SECS + 1;
    let stale = record.generate_backup_codes(&old, &w.on, &w.at(later), &mut *w.rng.borrow_mut());
    assert!(matches!(refusal(&stale), Refusal::StepUpRequired { .. }));
    assert!(stale.next().is_none() && stale.events().is_empty());
    // A fresh factor: a new set, a new generation, and every other session ends.
    let issue = record.generate_backup_codes(&old, &w.on, &w.at(now), &mut *w.rng.borrow_mut());
    assert_eq!(kinds(issue.events()), ["backup_codes_generated"]);
    let (with_codes, issued) = apply(&record, issue);
    let issued = issued.unwrap();
    assert_new_generation(with_codes.generation(), record.generation());
    assert_eq!(
        with_codes
            .status(UnixTime::from_secs(now))
            .backup_codes_remaining,
        5
    );
    let check = with_codes.check_session(&w.on, &password_only);
    assert_eq!(check, SessionCheck::Ended);
    let session = w.sign_in(&with_codes, now);
    let code = issued.codes[0].as_str();
    let mut attempt = mfa_core::backup::BackupAttempt::new(code);
    let redeem = with_codes.verify_backup_code(&session, &mut attempt, &w.on, &w.at(now));
    assert_eq!(kinds(redeem.events()), ["backup_code_accepted"]);
    let (used, accepted) = apply(&with_codes, redeem);
    let accepted = accepted.unwrap();
    assert_eq!(
        (accepted.remaining, accepted.passed.method()),
        (4, PassedBy::BackupCode)
    );
    let mut again = mfa_core::backup::BackupAttempt::new(code);
    let twice = used.verify_backup_code(&session, &mut again, &w.on, &w.at(now));
    assert_eq!(refusal(&twice), Refusal::UsedBackupCode);
}

#[test]
fn a_reset_from_any_state_ends_every_session() {
    let w = World::new();
    let admin = Actor::new("ops").unwrap();
    let unconfigured = CustomerRecord::default();
    let (configured, _) = w.configured();
    let s = w.sign_in(&unconfigured, T0);
    let (pending, _) = apply(
        &unconfigured,
        unconfigured.start_enrollment(&s, &w.on, &w.keys, &w.at(T0), &mut *w.rng.borrow_mut()),
    );
    for record in [unconfigured, pending, configured] {
        let session = w.sign_in(&record, T0 + 60);
        let reset = record.reset(&admin, &w.at(T0 + 60), &mut *w.rng.borrow_mut());
        assert_eq!(kinds(reset.events()), ["reset"]);
        let (after, _) = apply(&record, reset);
        assert_eq!(after.state(), StateName::Unconfigured);
        assert!(after.sealed_secret().is_none());
        assert_new_generation(after.generation(), record.generation());
        assert_eq!(after.check_session(&w.on, &session), SessionCheck::Ended);
        let fresh = w.sign_in(&after, T0 + 61);
        assert_eq!(after.check_session(&w.on, &fresh), SessionCheck::Enroll);
        assert!(after.check_session(&w.off, &fresh).is_complete());
    }
}

#[test]
fn a_session_check_answers_for_every_state_and_policy() {
    let w = World::new();
    let (configured, _) = w.configured();
    let unconfigured = CustomerRecord::default();
    let signed_in = w.sign_in(&unconfigured, T0);
    assert_eq!(
        unconfigured.check_session(&w.on, &signed_in),
        SessionCheck::Enroll
    );
    assert!(unconfigured.check_session(&w.off, &signed_in).is_complete());
    let challenged = w.sign_in(&configured, T0);
    for policy in [&w.on, &w.off] {
        // MFA switched off does not switch it off for a configured customer.
        assert_eq!(
            configured.check_session(policy, &challenged),
            SessionCheck::Challenge
        );
        let passed = passed_session(configured.generation(), T0);
        assert!(configured.check_session(policy, &passed).is_complete());
    }
}

#[derive(Clone, Debug)]
enum Op {
    Start,
    Confirm(bool),
    Totp(Option<String>),
    Backup(usize),
    Backups,
    Reset,
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Start),
        any::<bool>().prop_map(Op::Confirm),
        proptest::option::of("[0-9 x]{0,8}").prop_map(Op::Totp),
        (0usize..6).prop_map(Op::Backup),
        Just(Op::Backups),
        Just(Op::Reset),
        (0u64..90).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Over any run: a refusal changes no factor (at most the failure count, with only refusal
    /// events), a success without a write is never a pass, and no TOTP step or backup code is
    /// accepted twice.
    #[test]
    fn refusals_change_no_factor_and_nothing_passes_twice(ops in prop::collection::vec(op(), 1..40)) {
        let w = World::new();
        let admin = Actor::new("ops").unwrap();
        let mut record = CustomerRecord::default();
        let mut now = T0;
        let mut uri: Option<KeyUri> = None;
        let mut codes: Vec<String> = Vec::new();
        let mut accepted_steps = std::collections::BTreeSet::new();
        let mut used_codes = std::collections::BTreeSet::new();
        for op in ops {
            let session = w.sign_in(&record, now);
            let passed = passed_session(record.generation(), now);
            let ctx = w.at(now);
            let before = record.clone();
            let (next, events, refused) = match &op {
                Op::Wait(secs) => { now += secs; continue; }
                Op::Start => {
                    let d = record.start_enrollment(&session, &w.on, &w.keys, &ctx, &mut *w.rng.borrow_mut());
                    let (next, events, outcome) = d.into_parts();
                    if let Ok(enrollment) = &outcome { uri = Some(enrollment.uri.clone()); }
                    (next, events, outcome.err())
                }
                Op::Confirm(right) => {
                    let code = match (&uri, right) { (Some(u), true) => code_at(u, now), _ => "000000".into() };
                    let (next, events, outcome) = record.confirm_enrollment(&session, &code, &w.on, &w.keys, &ctx, &mut *w.rng.borrow_mut()).into_parts();
                    (next, events, outcome.err())
                }
                Op::Totp(typed) => {
                    let code = match (typed, &uri) { (None, Some(u)) => code_at(u, now), (Some(t), _) => t.clone(), (None, None) => "1".into() };
                    let (next, events, outcome) = record.verify_totp(&session, &code, &w.on, &w.keys, &ctx).into_parts();
                    if outcome.is_ok() {
                        let step = now / 30;
                        prop_assert!(accepted_steps.insert(step), "step {} accepted twice", step);
                    }
                    (next, events, outcome.err())
                }
                Op::Backup(i) => {
                    let code = codes.get(*i).cloned().unwrap_or_else(|| "AAAA-BBBB-CCCC".into());
                    let mut attempt = mfa_core::backup::BackupAttempt::new(&code);
                    let (next, events, outcome) = record.verify_backup_code(&session, &mut attempt, &w.on, &ctx).into_parts();
                    if outcome.is_ok() {
                        prop_assert!(used_codes.insert(code.clone()), "backup code {} accepted twice", code);
                    }
                    (next, events, outcome.err())
                }
                Op::Backups => {
                    let (next, events, outcome) = record.generate_backup_codes(&passed, &w.on, &ctx, &mut *w.rng.borrow_mut()).into_parts();
                    if let Ok(issued) = &outcome {
                        codes = issued.codes.iter().map(|c| c.as_str().to_owned()).collect();
                        used_codes.clear();
                    }
                    (next, events, outcome.err())
                }
                Op::Reset => {
                    let (next, events, outcome) = record.reset(&admin, &ctx, &mut *w.rng.borrow_mut()).into_parts();
                    uri = None; codes.clear(); accepted_steps.clear();
                    (next, events, outcome.err())
                }
            };
            match refused {
                Some(_) => {
                    for event in &events {
                        prop_assert!(
                            matches!(event.kind, EventKind::AttemptRejected { .. } | EventKind::LockedOut { .. }),
                            "a refusal logged {:?}", event.kind
                        );
                    }
                    if let Some(next) = &next {
                        prop_assert_eq!(next.state(), before.state());
                        prop_assert_eq!(next.generation(), before.generation());
                        prop_assert_eq!(next.sealed_secret(), before.sealed_secret());
                        prop_assert_eq!(next.mfa(), before.mfa(), "only the failure count changes");
                    }
                }
                None => prop_assert!(next.is_some(), "a success without a write: {:?}", op),
            }
            if let Some(next) = next {
                let decoded = CustomerRecord::from_bytes(&next.to_bytes());
                prop_assert_eq!(decoded, Ok(next.clone()));
                record = next;
            }
        }
    }
}

/// A change of factor drew a new generation: never the old one, never 0 (no record).
#[track_caller]
fn assert_new_generation(new: u64, old: u64) {
    assert_ne!(new, old);
    assert_ne!(new, 0);
}
