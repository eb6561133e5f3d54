//! Model-based property test: random sequences of every operation (organisation toggles, password
//! sign-ins, enrollment, confirmation, sign-ins with right, wrong, old, replayed and malformed codes,
//! backup codes, step-ups for three purposes with either factor, replacing the authenticator (start
//! and confirm, with the new app's, the old app's and wrong codes), resets and clock jumps backwards
//! and forwards) run through the service on the
//! in-memory store, each customer with two sessions of their own, and each outcome is checked
//! against a small reference model of the rules in DESIGN.md and REQUIREMENTS.md.
//!
//! Besides outcome-for-outcome agreement, these invariants are checked on their own: no TOTP step or
//! backup code is ever accepted twice; while the organisation has MFA on, an unconfigured customer
//! never gets past `login_step`; a configured customer is always challenged, whatever the policy;
//! after every operation, `check_session` of every session agrees with the model (a session from
//! before a reset or a change of factor is over, and only a session with a second factor, or one
//! that needs none, is let in), and `check_step_up` of every session, for every purpose, agrees
//! with the model (fresh only within the age of the sign-in code or of a step-up for that purpose).

use std::collections::BTreeSet;

use mfa_core::{
    Actor, CustomerId, FactorPassed, LoginStep, MemoryStore, MfaSession, OrgId, OrgMfa, PassedBy,
    Purpose, RECENT_FACTOR_SECS, Refusal, ServiceError, SessionCheck, StepUpCheck, Store, UnixTime,
    machine::LockoutRule,
    otp::{Digits, Period, Totp, Window},
    uri::KeyUri,
};
use proptest::prelude::*;

use mfa_store_tests::{T0, fixture};
const CUSTOMERS: [&str; 2] = ["alice@acme.test", "bob@acme.test"];
/// Sessions per customer (say, a laptop and a phone).
const SESSIONS: usize = 2;
const LIFETIME: u64 = 600;

/// The purposes step-ups are asked for: a host's own, and making backup codes.
fn purposes() -> [Purpose; 3] {
    [
        Purpose::new("payment_method").unwrap(),
        Purpose::BACKUP_CODES,
        Purpose::REPLACE_AUTHENTICATOR,
    ]
}

#[derive(Clone, Copy, Debug)]
enum Typed {
    /// The app's code `offset` steps from now, for the customer's current secret.
    App(i64),
    /// The last code this customer had accepted.
    Replay,
    /// A code of the customer's previous secret.
    OldSecret,
    /// The code `offset` steps from now of the replacement secret being set up, if any.
    NewApp(i64),
    /// A well-formed code of nobody's.
    Wrong,
    /// Not a code.
    Malformed,
}

/// A customer and one of their sessions.
type Who = (usize, usize);

#[derive(Clone, Copy, Debug)]
enum Op {
    SetOrg(OrgMfa),
    /// A password sign-in in this session: it starts afresh with the step's session.
    LoginStep(Who),
    Start(Who),
    Confirm(Who, Typed),
    SignIn(Who, Typed),
    /// A step-up for purpose `n` (of [`purposes`]) with a TOTP code.
    StepUp(Who, usize, Typed),
    /// A step-up for purpose `n` with backup code `m` of the current set, or of the previous one.
    StepUpBackup(Who, usize, usize, bool),
    GenerateBackup(Who),
    /// Start replacing the authenticator in this session.
    StartReplacement(Who),
    /// Confirm the replacement with this code.
    ConfirmReplacement(Who, Typed),
    /// Use backup code `n` of the current set, or of the previous set.
    UseBackup(Who, usize, bool),
    Reset(usize),
    Jump(i64),
}

fn typed() -> impl Strategy<Value = Typed> {
    prop_oneof![
        4 => (-2i64..=2).prop_map(Typed::App),
        1 => Just(Typed::Replay),
        1 => Just(Typed::OldSecret),
        2 => (-1i64..=1).prop_map(Typed::NewApp),
        1 => Just(Typed::Wrong),
        1 => Just(Typed::Malformed),
    ]
}

/// The organisation's switch, either way.
fn switch() -> impl Strategy<Value = OrgMfa> {
    prop_oneof![Just(OrgMfa::On), Just(OrgMfa::Off)]
}

fn op() -> impl Strategy<Value = Op> {
    let who = (0..CUSTOMERS.len(), 0..SESSIONS);
    prop_oneof![
        1 => switch().prop_map(Op::SetOrg),
        3 => who.clone().prop_map(Op::LoginStep),
        3 => who.clone().prop_map(Op::Start),
        3 => (who.clone(), typed()).prop_map(|(w, t)| Op::Confirm(w, t)),
        5 => (who.clone(), typed()).prop_map(|(w, t)| Op::SignIn(w, t)),
        3 => (who.clone(), 0usize..3, typed()).prop_map(|(w, p, t)| Op::StepUp(w, p, t)),
        3 => who.clone().prop_map(Op::StartReplacement),
        5 => (who.clone(), typed()).prop_map(|(w, t)| Op::ConfirmReplacement(w, t)),
        1 => (who.clone(), 0usize..3, 0usize..5, any::<bool>())
            .prop_map(|(w, p, n, old)| Op::StepUpBackup(w, p, n, old)),
        1 => who.clone().prop_map(Op::GenerateBackup),
        2 => (who, 0usize..5, any::<bool>()).prop_map(|(w, n, old)| Op::UseBackup(w, n, old)),
        1 => (0..CUSTOMERS.len()).prop_map(Op::Reset),
        3 => prop_oneof![Just(-90i64), Just(-30), Just(0), Just(1), Just(29), Just(30), Just(31), Just(60), Just(700), Just(3600)]
            .prop_map(Op::Jump),
    ]
}

/// The reference model of one customer.
#[derive(Clone, Debug, Default)]
struct Model {
    state: State,
    last_accepted_code: Option<String>,
    previous_secret: Option<KeyUri>,
    backup: Vec<(String, bool)>,
    old_backup: Vec<String>,
    failures: u32,
    locked_until: Option<u64>,
    /// Every TOTP step accepted since the last reset, and every backup code ever accepted.
    accepted_steps: BTreeSet<u64>,
    accepted_backup: BTreeSet<String>,
    /// The factor generation: it moves on at every reset, confirmation and new set of codes.
    generation: u64,
    /// Whether anything was ever written for the customer (a reset needs a record).
    stored: bool,
    /// A replacement authenticator being set up: its key URI and until when it can be confirmed.
    replacement: Option<(KeyUri, u64)>,
}

/// The reference model of one session, as the host keeps it.
#[derive(Clone, Copy, Debug)]
struct SessionModel {
    generation: u64,
    signed_in_at: u64,
    /// How and when a factor passed in it (`NotRequired` at sign-in when none was needed).
    passed: Option<(PassedBy, u64)>,
    /// The latest step-up: for which of [`purposes`], and when.
    step_up: Option<(usize, u64)>,
}

impl SessionModel {
    /// A second factor passed within [`RECENT_FACTOR_SECS`] of `now`.
    fn recent(&self, now: u64) -> bool {
        self.passed.is_some_and(|(by, at)| {
            by != PassedBy::NotRequired && at <= now && now - at <= RECENT_FACTOR_SECS
        })
    }

    /// A second factor fresh for purpose `p`: the sign-in's, or a step-up's for `p`.
    fn fresh(&self, p: usize, now: u64) -> bool {
        self.recent(now)
            || self.step_up.is_some_and(|(purpose, at)| {
                purpose == p && at <= now && now - at <= RECENT_FACTOR_SECS
            })
    }

    /// A code of `by` accepted now: at sign-in, or at a step-up for `purpose`, which keeps the
    /// sign-in's second factor if there was one.
    fn pass(&mut self, by: PassedBy, now: u64, purpose: Option<usize>) {
        match purpose {
            None => self.passed = Some((by, now)),
            Some(p) => {
                if !self
                    .passed
                    .is_some_and(|(by, _)| by != PassedBy::NotRequired)
                {
                    self.passed = Some((by, now));
                }
                self.step_up = Some((p, now));
            }
        }
    }

    /// What `check_step_up` must say of this session for purpose `p`.
    fn step_up_check(&self, model: &Model, org: OrgMfa, p: usize, now: u64) -> StepUpCheck {
        match self.check(model, org) {
            SessionCheck::Complete(passed) if !passed.is_second_factor() => StepUpCheck::NoFactor,
            SessionCheck::Complete(_) if self.fresh(p, now) => StepUpCheck::Fresh,
            SessionCheck::Complete(_) => StepUpCheck::Required {
                max_age_secs: RECENT_FACTOR_SECS,
            },
            other => StepUpCheck::Session(other),
        }
    }

    /// What `check_session` must say of this session.
    fn check(&self, model: &Model, org: OrgMfa) -> SessionCheck {
        let enabled = org == OrgMfa::On;
        if self.generation != model.generation {
            return SessionCheck::Ended;
        }
        let passed = |(by, at): (PassedBy, u64)| FactorPassed {
            by,
            at: UnixTime::from_secs(at),
        };
        match self.passed {
            Some((by, at)) if by != PassedBy::NotRequired => {
                SessionCheck::Complete(passed((by, at)))
            }
            other => match (&model.state, enabled) {
                (State::Configured { .. }, _) => SessionCheck::Challenge,
                (_, true) => SessionCheck::Enroll,
                (_, false) => SessionCheck::Complete(passed(
                    other.unwrap_or((PassedBy::NotRequired, self.signed_in_at)),
                )),
            },
        }
    }
}

#[derive(Clone, Debug, Default)]
enum State {
    #[default]
    Unconfigured,
    Pending {
        uri: KeyUri,
        expires_at: u64,
    },
    Configured {
        uri: KeyUri,
        last_step: u64,
    },
}

impl Model {
    fn secret(&self) -> Option<&KeyUri> {
        match &self.state {
            State::Unconfigured => None,
            State::Pending { uri, .. } | State::Configured { uri, .. } => Some(uri),
        }
    }

    fn locked(&self, now: u64) -> Option<u64> {
        self.locked_until.filter(|until| *until > now)
    }

    fn fail(&mut self, now: u64) {
        self.failures += 1;
        self.locked_until = LockoutRule::default()
            .delay_after(self.failures)
            .map(|delay| now + delay);
    }

    fn succeed(&mut self) {
        self.failures = 0;
        self.locked_until = None;
    }
}

fn totp() -> Totp {
    // Eight digits, so that two steps of one window sharing a code is too rare to matter; the model
    // still computes the earliest matching step exactly, as the verifier does.
    Totp::new(
        mfa_core::otp::Algorithm::Sha1,
        Digits::EIGHT,
        Period::DEFAULT,
    )
}

/// The earliest step of the ±1 window around `now` whose code is `typed`, as the verifier finds it.
fn matching_step(uri: &KeyUri, typed: &str, now: u64) -> Option<u64> {
    let current = now / 30;
    (current.saturating_sub(1)..=current + 1)
        .find(|step| totp().generate_at_step(uri.secret(), *step).to_string() == typed)
}

fn text(model: &Model, typed: Typed, now: u64) -> String {
    let code_of = |uri: &KeyUri, step: u64| totp().generate_at_step(uri.secret(), step).to_string();
    match typed {
        Typed::App(offset) => model.secret().map_or_else(
            || "12345678".into(),
            |uri| code_of(uri, (now / 30).saturating_add_signed(offset)),
        ),
        Typed::Replay => model
            .last_accepted_code
            .clone()
            .unwrap_or_else(|| "87654321".into()),
        Typed::OldSecret => model
            .previous_secret
            .as_ref()
            .map_or_else(|| "11111111".into(), |uri| code_of(uri, now / 30)),
        Typed::NewApp(offset) => model.replacement.as_ref().map_or_else(
            || "13572468".into(),
            |(uri, _)| code_of(uri, (now / 30).saturating_add_signed(offset)),
        ),
        Typed::Wrong => "00000000".into(),
        Typed::Malformed => "12ab5678".into(),
    }
}

fn refusal<T: std::fmt::Debug>(
    result: Result<T, ServiceError<mfa_core::store::DecodeError>>,
) -> Result<T, Refusal> {
    result.map_err(|error| match error {
        ServiceError::Refused(error) => error,
        other => panic!("the store or service failed: {other}"),
    })
}

/// Operations around replacing one configured customer's authenticator: sign-ins with the old
/// and new apps' codes, step-ups for every purpose, starts and confirmations, new sessions, backup
/// codes and small clock jumps, on customer 0 mostly.
fn replacement_op() -> impl Strategy<Value = Op> {
    let who = (
        prop_oneof![4 => Just(0usize), 1 => Just(1usize)],
        0..SESSIONS,
    );
    prop_oneof![
        2 => who.clone().prop_map(Op::LoginStep),
        3 => (who.clone(), typed()).prop_map(|(w, t)| Op::SignIn(w, t)),
        3 => (who.clone(), 0usize..3, typed()).prop_map(|(w, p, t)| Op::StepUp(w, p, t)),
        4 => who.clone().prop_map(Op::StartReplacement),
        5 => (who.clone(), typed()).prop_map(|(w, t)| Op::ConfirmReplacement(w, t)),
        1 => (who.clone(), 0usize..5, any::<bool>()).prop_map(|(w, n, old)| Op::UseBackup(w, n, old)),
        1 => who.prop_map(Op::GenerateBackup),
        1 => (0..CUSTOMERS.len()).prop_map(Op::Reset),
        3 => prop_oneof![Just(1i64), Just(30), Just(31), Just(90), Just(601)].prop_map(Op::Jump),
    ]
}

/// Alice configured in session (0, 0), with a set of backup codes, on an organisation with MFA on.
fn alice_configured() -> Vec<Op> {
    vec![
        Op::SetOrg(OrgMfa::On),
        Op::LoginStep((0, 0)),
        Op::Start((0, 0)),
        Op::Confirm((0, 0), Typed::App(0)),
        Op::GenerateBackup((0, 0)),
        Op::Jump(30),
    ]
}

/// Runs `ops` from an organisation with MFA switched on or off.
fn run(switch: OrgMfa, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let on = switch == OrgMfa::On;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let org = OrgId::new("acme").unwrap();
        let ids: Vec<CustomerId> = CUSTOMERS
            .iter()
            .map(|c| CustomerId::new(*c).unwrap())
            .collect();
        let (mfa, clock) = fixture::service(MemoryStore::new(), T0, 5);
        let mut settings = fixture::fast_settings();
        settings.totp = totp();
        settings.window = Window::default();
        settings.enrollment_lifetime_secs = LIFETIME;
        mfa.update_settings(&org, settings, &Actor::new("admin").unwrap())
            .await
            .unwrap();
        mfa.set_org_mfa(&org, switch, &Actor::new("admin").unwrap())
            .await
            .unwrap();

        let (mut enabled, mut org_mfa) = (on, switch);
        let mut now = T0;
        let mut models = vec![Model::default(); CUSTOMERS.len()];
        // Every session starts with a password sign-in.
        let mut sessions: Vec<Vec<MfaSession>> = Vec::new();
        for id in &ids {
            let mut mine = Vec::new();
            for _ in 0..SESSIONS {
                mine.push(mfa.login_step(&org, id).await.unwrap().session());
            }
            sessions.push(mine);
        }
        let mut session_models = vec![
            vec![
                SessionModel {
                    generation: 0,
                    signed_in_at: T0,
                    passed: (!on).then_some((PassedBy::NotRequired, T0)),
                    step_up: None,
                };
                SESSIONS
            ];
            CUSTOMERS.len()
        ];

        for op in ops {
            match op {
                Op::SetOrg(switch) => {
                    mfa.set_org_mfa(&org, switch, &Actor::new("admin").unwrap())
                        .await
                        .unwrap();
                    (enabled, org_mfa) = (switch == OrgMfa::On, switch);
                }
                Op::Jump(delta) => {
                    now = now.saturating_add_signed(delta).max(T0);
                    clock.set(UnixTime::from_secs(now));
                }
                Op::LoginStep((c, s)) => {
                    let step = mfa.login_step(&org, &ids[c]).await.unwrap();
                    let want = match (&models[c].state, enabled) {
                        (State::Configured { .. }, _) => "challenge",
                        (_, true) => "enroll",
                        (_, false) => "done",
                    };
                    let got = match step {
                        LoginStep::Challenge(_) => "challenge",
                        LoginStep::Enroll(_) => "enroll",
                        LoginStep::Done(_) => "done",
                        _ => "a step the model does not know",
                    };
                    prop_assert_eq!(got, want, "login step of {}", c);
                    sessions[c][s] = step.session();
                    session_models[c][s] = SessionModel {
                        generation: models[c].generation,
                        signed_in_at: now,
                        passed: (got == "done").then_some((PassedBy::NotRequired, now)),
                        step_up: None,
                    };
                }
                Op::Start((c, s)) => {
                    let got = refusal(mfa.start_enrollment(&org, &ids[c], &sessions[c][s]).await);
                    let model = &mut models[c];
                    let current = session_models[c][s].generation == model.generation;
                    match (&model.state, enabled) {
                        _ if !current => prop_assert_eq!(got.unwrap_err(), Refusal::SessionEnded),
                        (State::Configured { .. }, _) => {
                            prop_assert_eq!(got.unwrap_err(), Refusal::AlreadyConfigured)
                        }
                        (_, false) => prop_assert_eq!(got.unwrap_err(), Refusal::MfaDisabled),
                        (_, true) => {
                            let enrollment = got.unwrap();
                            prop_assert_eq!(enrollment.expires_at.as_secs(), now + LIFETIME);
                            model.previous_secret = model.secret().cloned();
                            model.stored = true;
                            model.state = State::Pending {
                                uri: enrollment.uri,
                                expires_at: now + LIFETIME,
                            };
                        }
                    }
                }
                Op::Confirm((c, s), typed) => {
                    let code = text(&models[c], typed, now);
                    let got = refusal(
                        mfa.confirm_enrollment(&org, &ids[c], &sessions[c][s], &code)
                            .await,
                    );
                    let model = &mut models[c];
                    let current = session_models[c][s].generation == model.generation;
                    // The order of the checks: the session (whatever the state), the state,
                    // lockout, expiry, then the code.
                    let want = match model.state.clone() {
                        _ if !current => Err(Refusal::SessionEnded),
                        State::Configured { .. } => Err(Refusal::AlreadyConfigured),
                        State::Unconfigured => Err(Refusal::NotPending),
                        State::Pending { .. } if model.locked(now).is_some() => {
                            Err(Refusal::Locked {
                                retry_at: UnixTime::from_secs(model.locked(now).unwrap()),
                            })
                        }
                        State::Pending { expires_at, .. } if now >= expires_at => {
                            Err(Refusal::EnrollmentExpired)
                        }
                        State::Pending { .. } if matches!(typed, Typed::Malformed) => {
                            Err(Refusal::InvalidCode(mfa_core::otp::CodeError::Malformed))
                        }
                        State::Pending { uri, .. } => match matching_step(&uri, &code, now) {
                            None => {
                                model.fail(now);
                                Err(Refusal::WrongCode)
                            }
                            Some(step) => {
                                model.succeed();
                                model.accepted_steps = BTreeSet::from([step]);
                                model.last_accepted_code = Some(code.clone());
                                model.backup.clear();
                                model.state = State::Configured {
                                    uri,
                                    last_step: step,
                                };
                                // A new factor: this session passed, every other one is over.
                                model.generation += 1;
                                session_models[c][s].generation = model.generation;
                                session_models[c][s].passed = Some((PassedBy::Enrollment, now));
                                Ok(())
                            }
                        },
                    };
                    if let Ok(passed) = &got {
                        prop_assert_eq!(passed.method(), PassedBy::Enrollment);
                        sessions[c][s] = passed.session();
                    }
                    prop_assert_eq!(
                        got.map(|_| ()),
                        want,
                        "confirm {:?} for {:?}",
                        typed,
                        (c, s)
                    );
                }
                Op::SignIn((c, s), typed) | Op::StepUp((c, s), _, typed) => {
                    let purpose = match op {
                        Op::StepUp(_, p, _) => Some(p),
                        _ => None,
                    };
                    let code = text(&models[c], typed, now);
                    let got = refusal(match purpose {
                        None => mfa.verify_totp(&org, &ids[c], &sessions[c][s], &code).await,
                        Some(p) => {
                            mfa.step_up_totp(&org, &ids[c], &sessions[c][s], purposes()[p], &code)
                                .await
                        }
                    });
                    let model = &mut models[c];
                    let current = session_models[c][s].generation == model.generation;
                    let want = match model.state.clone() {
                        _ if !current => Err(Refusal::SessionEnded),
                        State::Configured { .. } if model.locked(now).is_some() => {
                            Err(Refusal::Locked {
                                retry_at: UnixTime::from_secs(model.locked(now).unwrap()),
                            })
                        }
                        State::Configured { .. } if matches!(typed, Typed::Malformed) => {
                            Err(Refusal::InvalidCode(mfa_core::otp::CodeError::Malformed))
                        }
                        State::Configured { uri, last_step } => {
                            match matching_step(&uri, &code, now) {
                                None => {
                                    model.fail(now);
                                    Err(Refusal::WrongCode)
                                }
                                // The code of the step just accepted, again: refused, not
                                // counted (it proves the customer holds the authenticator).
                                Some(step) if step == last_step => Err(Refusal::ReplayedCode),
                                Some(step) if step < last_step => {
                                    model.fail(now);
                                    Err(Refusal::ReplayedCode)
                                }
                                Some(step) => {
                                    // The invariant on its own: a step is accepted at most once.
                                    prop_assert!(
                                        model.accepted_steps.insert(step),
                                        "step {} accepted twice",
                                        step
                                    );
                                    model.succeed();
                                    model.last_accepted_code = Some(code.clone());
                                    model.state = State::Configured {
                                        uri,
                                        last_step: step,
                                    };
                                    session_models[c][s].pass(PassedBy::Totp, now, purpose);
                                    Ok(())
                                }
                            }
                        }
                        _ => Err(Refusal::NotConfigured),
                    };
                    if let Ok(accepted) = &got {
                        sessions[c][s] = accepted.passed.session();
                    }
                    prop_assert_eq!(
                        got.map(|_| ()),
                        want,
                        "sign in {:?} for {:?}",
                        typed,
                        (c, s)
                    );
                }
                Op::GenerateBackup((c, s)) => {
                    let got = refusal(
                        mfa.generate_backup_codes(&org, &ids[c], &sessions[c][s])
                            .await,
                    );
                    let model = &mut models[c];
                    let session = &mut session_models[c][s];
                    // The service refuses a session before it looks at the customer's state.
                    if session.generation != model.generation {
                        prop_assert_eq!(got.unwrap_err(), Refusal::SessionEnded);
                    } else if !session
                        .passed
                        .is_some_and(|(by, _)| by != PassedBy::NotRequired)
                    {
                        prop_assert_eq!(
                            got.unwrap_err(),
                            Refusal::SecondFactorRequired {
                                max_age_secs: RECENT_FACTOR_SECS
                            }
                        );
                    } else if !session.fresh(1, now) {
                        prop_assert_eq!(
                            got.unwrap_err(),
                            Refusal::StepUpRequired {
                                purpose: Purpose::BACKUP_CODES,
                                max_age_secs: RECENT_FACTOR_SECS
                            }
                        );
                    } else if matches!(model.state, State::Configured { .. }) {
                        let issued = got.unwrap();
                        prop_assert_eq!(issued.codes.len(), 5);
                        model.old_backup =
                            model.backup.iter().map(|(code, _)| code.clone()).collect();
                        model.backup = issued
                            .codes
                            .iter()
                            .map(|code| (code.as_str().to_string(), false))
                            .collect();
                        // A change of factor: this session goes on, still passed as it was.
                        model.generation += 1;
                        session.generation = model.generation;
                        sessions[c][s] = issued.passed.session();
                    } else {
                        prop_assert_eq!(got.unwrap_err(), Refusal::NotConfigured);
                    }
                }
                Op::StartReplacement((c, s)) => {
                    let got = refusal(mfa.start_replacement(&org, &ids[c], &sessions[c][s]).await);
                    let model = &mut models[c];
                    let session = &session_models[c][s];
                    let second_factor = session
                        .passed
                        .is_some_and(|(by, _)| by != PassedBy::NotRequired);
                    let want = if session.generation != model.generation {
                        Err(Refusal::SessionEnded)
                    } else if !second_factor {
                        Err(Refusal::SecondFactorRequired {
                            max_age_secs: RECENT_FACTOR_SECS,
                        })
                    } else if !session.fresh(2, now) {
                        Err(Refusal::StepUpRequired {
                            purpose: Purpose::REPLACE_AUTHENTICATOR,
                            max_age_secs: RECENT_FACTOR_SECS,
                        })
                    } else if !matches!(model.state, State::Configured { .. }) {
                        Err(Refusal::NotConfigured)
                    } else {
                        Ok(())
                    };
                    match got {
                        Ok(enrollment) => {
                            prop_assert_eq!(Ok(()), want, "start replacement for {:?}", (c, s));
                            model.replacement = Some((enrollment.uri, now + LIFETIME));
                        }
                        Err(refused) => prop_assert_eq!(
                            Err(refused),
                            want,
                            "start replacement for {:?}",
                            (c, s)
                        ),
                    }
                }
                Op::ConfirmReplacement((c, s), typed) => {
                    let code = text(&models[c], typed, now);
                    let got = refusal(
                        mfa.confirm_replacement(&org, &ids[c], &sessions[c][s], &code)
                            .await,
                    );
                    let model = &mut models[c];
                    let current = session_models[c][s].generation == model.generation;
                    let second_factor = session_models[c][s]
                        .passed
                        .is_some_and(|(by, _)| by != PassedBy::NotRequired);
                    let want = match (model.state.clone(), model.replacement.clone()) {
                        _ if !current => Err(Refusal::SessionEnded),
                        _ if !second_factor => Err(Refusal::SecondFactorRequired {
                            max_age_secs: RECENT_FACTOR_SECS,
                        }),
                        (State::Configured { .. }, None) => Err(Refusal::NotPending),
                        (State::Configured { .. }, Some(_)) if model.locked(now).is_some() => {
                            Err(Refusal::Locked {
                                retry_at: UnixTime::from_secs(model.locked(now).unwrap()),
                            })
                        }
                        (State::Configured { .. }, Some((_, expires_at))) if now >= expires_at => {
                            Err(Refusal::EnrollmentExpired)
                        }
                        (State::Configured { .. }, Some(_))
                            if matches!(typed, Typed::Malformed) =>
                        {
                            Err(Refusal::InvalidCode(mfa_core::otp::CodeError::Malformed))
                        }
                        (State::Configured { uri: old, .. }, Some((uri, _))) => {
                            match matching_step(&uri, &code, now) {
                                None => {
                                    model.fail(now);
                                    Err(Refusal::WrongCode)
                                }
                                Some(step) => {
                                    // The new secret takes over: its own steps from now on, the
                                    // old one's codes are a previous secret's, the backup codes
                                    // stay, and every other session is over.
                                    model.succeed();
                                    model.previous_secret = Some(old);
                                    model.accepted_steps = BTreeSet::from([step]);
                                    model.last_accepted_code = Some(code.clone());
                                    model.state = State::Configured {
                                        uri,
                                        last_step: step,
                                    };
                                    model.replacement = None;
                                    model.generation += 1;
                                    session_models[c][s].generation = model.generation;
                                    session_models[c][s].passed = Some((PassedBy::Enrollment, now));
                                    Ok(())
                                }
                            }
                        }
                        _ => Err(Refusal::NotConfigured),
                    };
                    if let Ok(passed) = &got {
                        sessions[c][s] = passed.session();
                    }
                    prop_assert_eq!(
                        got.map(|_| ()),
                        want,
                        "confirm replacement {:?} for {:?}",
                        typed,
                        (c, s)
                    );
                }
                Op::UseBackup((c, s), n, old) | Op::StepUpBackup((c, s), _, n, old) => {
                    let purpose = match op {
                        Op::StepUpBackup(_, p, _, _) => Some(p),
                        _ => None,
                    };
                    let model = &mut models[c];
                    let list: Vec<String> = if old {
                        model.old_backup.clone()
                    } else {
                        model.backup.iter().map(|(c, _)| c.clone()).collect()
                    };
                    let code = list
                        .get(n)
                        .cloned()
                        .unwrap_or_else(|| "ZZZZ-ZZZZ-ZZZZ".into());
                    let session = &sessions[c][s];
                    let got = refusal(match purpose {
                        None => mfa.verify_backup_code(&org, &ids[c], session, &code).await,
                        Some(p) => {
                            mfa.step_up_backup_code(&org, &ids[c], session, purposes()[p], &code)
                                .await
                        }
                    });
                    let want = if session_models[c][s].generation != model.generation {
                        Err(Refusal::SessionEnded)
                    } else if !matches!(model.state, State::Configured { .. }) {
                        Err(Refusal::NotConfigured)
                    } else if let Some(until) = model.locked(now) {
                        Err(Refusal::Locked {
                            retry_at: UnixTime::from_secs(until),
                        })
                    } else {
                        match model.backup.iter_mut().find(|(c, _)| *c == code) {
                            Some((_, used @ false)) => {
                                *used = true;
                                prop_assert!(
                                    model.accepted_backup.insert(code.clone()),
                                    "backup code accepted twice"
                                );
                                model.succeed();
                                session_models[c][s].pass(PassedBy::BackupCode, now, purpose);
                                Ok(())
                            }
                            Some((_, true)) => {
                                model.fail(now);
                                Err(Refusal::UsedBackupCode)
                            }
                            None => {
                                model.fail(now);
                                Err(Refusal::WrongCode)
                            }
                        }
                    };
                    let remaining = model.backup.iter().filter(|(_, used)| !used).count() as u32;
                    if let Ok(accepted) = &got {
                        sessions[c][s] = accepted.passed.session();
                    }
                    prop_assert_eq!(
                        got.map(|done| done.remaining),
                        want.map(|()| remaining),
                        "backup {} (old: {}) for {:?}",
                        n,
                        old,
                        (c, s)
                    );
                }
                Op::Reset(c) => {
                    let got = refusal(
                        mfa.reset(&org, &ids[c], &Actor::new("admin").unwrap())
                            .await,
                    );
                    let model = &mut models[c];
                    if !model.stored {
                        // Nothing stored: nothing to reset, and nothing changes.
                        prop_assert_eq!(got, Err(Refusal::NotFound));
                        let stored = mfa.store().load_customer(&org, &ids[c]).await.unwrap();
                        prop_assert!(stored.is_none());
                        continue;
                    }
                    got.unwrap();
                    // Codes from before the reset must never work again.
                    let old_backup = model.backup.iter().map(|(code, _)| code.clone()).collect();
                    *model = Model {
                        old_backup,
                        previous_secret: model
                            .secret()
                            .cloned()
                            .or_else(|| model.previous_secret.clone()),
                        last_accepted_code: model.last_accepted_code.clone(),
                        accepted_backup: model.accepted_backup.clone(),
                        // Every session of the customer is over.
                        generation: model.generation + 1,
                        stored: true,
                        ..Model::default()
                    };
                }
            }
            // After every operation every session is where the model says: let in, sent to enroll
            // or for a code, or over.
            for (c, model) in models.iter().enumerate() {
                // Generations are drawn at random: the model counts them, and a session is
                // current in both or in neither.
                let real = mfa
                    .store()
                    .load_customer(&org, &ids[c])
                    .await
                    .unwrap()
                    .map_or(0, |stored| stored.decode().unwrap().value.generation());
                for (s, session) in session_models[c].iter().enumerate() {
                    prop_assert_eq!(
                        sessions[c][s].generation() == real,
                        session.generation == model.generation
                    );
                    let got = mfa
                        .check_session(&org, &ids[c], &sessions[c][s])
                        .await
                        .unwrap();
                    prop_assert_eq!(got, session.check(model, org_mfa), "session {:?}", (c, s));
                    for (p, purpose) in purposes().into_iter().enumerate() {
                        let got = mfa
                            .check_step_up(&org, &ids[c], &sessions[c][s], purpose)
                            .await
                            .unwrap();
                        prop_assert_eq!(
                            got,
                            session.step_up_check(model, org_mfa, p, now),
                            "step-up of session {:?} for {}",
                            (c, s),
                            purpose
                        );
                    }
                    // The invariant on its own: a session is let in without a second factor only
                    // while the customer has none and the organisation requires none.
                    if let SessionCheck::Complete(passed) = got
                        && !passed.is_second_factor()
                    {
                        let configured = matches!(model.state, State::Configured { .. });
                        prop_assert!(!enabled && !configured, "session {:?} let in", (c, s));
                    }
                }
            }
            // After every operation the stored state agrees with the model.
            for (c, model) in models.iter().enumerate() {
                let report = mfa.status(&org, &ids[c]).await.unwrap();
                let status = report.customer;
                let on = report.org_mfa == OrgMfa::On;
                prop_assert_eq!(on, enabled);
                let want = match model.state {
                    State::Unconfigured => "unconfigured",
                    State::Pending { .. } => "pending",
                    State::Configured { .. } => "configured",
                };
                prop_assert_eq!(status.state.as_str(), want);
                prop_assert_eq!(status.failures, model.failures);
                prop_assert_eq!(
                    status.locked_until.map(UnixTime::as_secs),
                    model.locked(now)
                );
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replacing_authenticators_follows_the_model(ops in prop::collection::vec(replacement_op(), 1..60)) {
        let mut all = alice_configured();
        all.extend(ops);
        run(OrgMfa::Off, all)?;
    }

    #[test]
    fn the_service_follows_the_model(switch in switch(), ops in prop::collection::vec(op(), 1..100)) {
        run(switch, ops)?;
    }
}
