//! The crate as an embedder meets it: the proof comes only after the write, a sign-in reads once,
//! and errors say what they are (a refusal or a fault) and each cause once.

use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mfa_core::{
    Actor, Clock, CustomerId, Fault, IdError, KeyId, KeyRing, ManualClock, MemoryStore, MfaError,
    OrgId, OrgMfa, OrgPolicy, Refusal, SealingKey, Service, ServiceError, Settings, SettingsError,
    Store, UnixTime,
    audit::{AuditExport, AuditQuery, Event, StoredEvent},
    backup::BackupHashParams,
    machine::CustomerRecord,
    seal::SealError,
    store::{CustomerKey, DecodeError, Encoded, OrgAndCustomer, Version, Versioned, Written},
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const T0: u64 = 1_767_225_600;

/// A memory store that counts its loads and, when told, loses every write race.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    separate_loads: AtomicUsize,
    joint_loads: AtomicUsize,
    losing: AtomicBool,
    /// Records read back as bytes of a format no version wrote.
    garbled: AtomicBool,
}

impl Store for Counting {
    type Error = DecodeError;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, DecodeError> {
        self.separate_loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_org(org).await
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, DecodeError> {
        self.inner.write_org(org, expected, policy, events).await
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, DecodeError> {
        self.separate_loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_customer(org, customer).await
    }

    async fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<OrgAndCustomer, DecodeError> {
        self.joint_loads.fetch_add(1, Ordering::SeqCst);
        let (policy, record) = self.inner.load_org_and_customer(org, customer).await?;
        let record = record.map(|stored| match self.garbled.load(Ordering::SeqCst) {
            true => Versioned {
                value: Encoded::new(vec![9, 0]),
                version: stored.version,
            },
            false => stored,
        });
        Ok((policy, record))
    }

    async fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> Result<Written, DecodeError> {
        if self.losing.load(Ordering::SeqCst) {
            return Ok(Written::Conflict);
        }
        self.inner
            .write_customer(org, customer, expected, record, events)
            .await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), DecodeError> {
        self.inner.append_events(events).await
    }

    async fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<StoredEvent>, DecodeError> {
        self.inner.audit(org, query).await
    }

    async fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> Result<Vec<StoredEvent>, DecodeError> {
        self.inner.export_audit(org, query).await
    }

    async fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> Result<Vec<CustomerKey>, DecodeError> {
        self.inner.sealed_under(key, after, limit).await
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, DecodeError> {
        self.inner.count_sealed().await
    }
}

type Mfa = Service<Counting, ManualClock, ChaCha20Rng>;

fn acme() -> OrgId {
    OrgId::new("acme").unwrap()
}

fn alice() -> CustomerId {
    CustomerId::new("alice@acme.test").unwrap()
}

async fn service() -> (Mfa, ManualClock) {
    let clock = ManualClock::new(UnixTime::from_secs(T0));
    let keys = KeyRing::new(SealingKey::new(KeyId::new(1), [3; 32]));
    let mfa = Service::new(
        Counting::default(),
        clock.clone(),
        keys,
        ChaCha20Rng::seed_from_u64(9),
    )
    .with_max_attempts(3);
    let mut settings = Settings::default();
    settings.backup_hash = BackupHashParams::danger_insecure_fast();
    let admin = Actor::new("admin").unwrap();
    mfa.update_settings(&acme(), settings, &admin)
        .await
        .unwrap();
    mfa.set_org_mfa(&acme(), OrgMfa::On, &admin).await.unwrap();
    (mfa, clock)
}

/// Alice enrolled, and a fresh code of the next step with the session to give it in.
async fn configured(mfa: &Mfa, clock: &ManualClock) -> (mfa_core::MfaSession, String) {
    let session = mfa.login_step(&acme(), &alice()).await.unwrap().session();
    let enrollment = mfa
        .start_enrollment(&acme(), &alice(), &session)
        .await
        .unwrap();
    let app = enrollment.uri.as_totp().unwrap();
    let code = app.generate(enrollment.uri.secret(), clock.now()).unwrap();
    let _passed = mfa
        .confirm_enrollment(&acme(), &alice(), &session, &code.to_string())
        .await
        .unwrap();
    clock.advance(30);
    let session = mfa.login_step(&acme(), &alice()).await.unwrap().session();
    let code = app.generate(enrollment.uri.secret(), clock.now()).unwrap();
    (session, code.to_string())
}

/// The proof comes after the write: while every write loses its compare-and-swap, a right code
/// gets no proof (the call ends contended), and so was never consumed: once writes go through,
/// the same code passes, once.
#[tokio::test]
async fn no_proof_without_the_write_that_consumes_the_code() {
    let (mfa, clock) = service().await;
    let (session, code) = configured(&mfa, &clock).await;
    mfa.store().losing.store(true, Ordering::SeqCst);
    let lost = mfa.verify_totp(&acme(), &alice(), &session, &code).await;
    assert!(matches!(lost, Err(ServiceError::Contended)), "{lost:?}");
    mfa.store().losing.store(false, Ordering::SeqCst);
    let accepted = mfa
        .verify_totp(&acme(), &alice(), &session, &code)
        .await
        .unwrap();
    assert_eq!(accepted.passed.customer(), &alice());
    assert!(matches!(
        mfa.verify_totp(&acme(), &alice(), &session, &code).await,
        Err(ServiceError::Refused(Refusal::ReplayedCode))
    ));
}

/// A password sign-in, a status and a session check each read the policy and the record in one
/// load (one round trip, one snapshot on a networked store), never one after the other.
#[tokio::test]
async fn a_sign_in_reads_policy_and_record_in_one_load() {
    let (mfa, clock) = service().await;
    let (session, _) = configured(&mfa, &clock).await;
    let store = mfa.store();
    let (separate, joint) = (
        store.separate_loads.load(Ordering::SeqCst),
        store.joint_loads.load(Ordering::SeqCst),
    );
    let _step = mfa.login_step(&acme(), &alice()).await.unwrap();
    let _status = mfa.status(&acme(), &alice()).await.unwrap();
    let _check = mfa
        .check_session(&acme(), &alice(), &session)
        .await
        .unwrap();
    assert_eq!(store.separate_loads.load(Ordering::SeqCst), separate);
    assert_eq!(store.joint_loads.load(Ordering::SeqCst), joint + 3);
}

/// A host tells a refusal (answer the customer) from a fault (page an operator) with one arm each.
#[tokio::test]
async fn refusals_and_faults_are_told_apart() {
    let (mfa, clock) = service().await;
    let (session, code) = configured(&mfa, &clock).await;
    let wrong = mfa.verify_totp(&acme(), &alice(), &session, "000000").await;
    assert!(matches!(
        wrong,
        Err(ServiceError::Refused(Refusal::WrongCode))
    ));
    assert!(!wrong.unwrap_err().is_transient());
    // The same record under a keyring that lacks its key: a fault, not the customer's doing.
    let other = Service::new(
        MemoryStore::new(),
        clock.clone(),
        KeyRing::new(SealingKey::new(KeyId::new(2), [4; 32])),
        ChaCha20Rng::seed_from_u64(1),
    );
    let loaded = mfa
        .store()
        .load_org_and_customer(&acme(), &alice())
        .await
        .unwrap();
    let (policy, record) = (
        loaded.0.unwrap().decode().unwrap().value,
        loaded.1.unwrap().decode().unwrap().value,
    );
    let _ = other
        .store()
        .write_org(&acme(), None, &policy, &[])
        .await
        .unwrap();
    let _ = other
        .store()
        .write_customer(&acme(), &alice(), None, &record, &[])
        .await
        .unwrap();
    let fault = other.verify_totp(&acme(), &alice(), &session, &code).await;
    assert!(
        matches!(
            fault,
            Err(ServiceError::Fault(Fault::Seal(SealError::UnknownKey(id)))) if id == KeyId::new(1)
        ),
        "{fault:?}"
    );
    let fault = fault.unwrap_err();
    assert!(fault.refusal().is_none() && !fault.is_transient());
    // The pure machine's error splits the same way.
    assert_eq!(
        MfaError::from(Refusal::NotConfigured).refusal(),
        Some(&Refusal::NotConfigured)
    );
    assert_eq!(
        MfaError::from(Fault::Seal(SealError::UnknownKey(KeyId::new(1)))).refusal(),
        None
    );
}

/// The messages of `error` and of each of its sources, outermost first.
fn chain(error: &(dyn Error + 'static)) -> Vec<String> {
    let mut messages = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(next) = cause {
        messages.push(next.to_string());
        cause = next.source();
    }
    messages
}

/// Each error names its own step and hands its cause out as its source, never both: printed as a
/// chain (`anyhow`'s `{:#}`, tracing's error fields) every cause shows once.
#[tokio::test]
async fn no_error_repeats_its_source() {
    let (mfa, clock) = service().await;
    let _ = configured(&mfa, &clock).await;
    mfa.store().garbled.store(true, Ordering::SeqCst);
    let corrupt = mfa.status(&acme(), &alice()).await.unwrap_err();
    assert!(matches!(corrupt, ServiceError::Corrupt(_)), "{corrupt:?}");
    let errors: Vec<Box<dyn Error + 'static>> = vec![
        Box::new(Refusal::InvalidCode(
            mfa_core::otp::Code::parse("12", mfa_core::otp::Digits::SIX).unwrap_err(),
        )),
        Box::new(Refusal::InvalidSettings(SettingsError::NonZeroT0)),
        Box::new(Fault::Seal(SealError::UnknownKey(KeyId::new(7)))),
        Box::new(MfaError::Fault(Fault::Backup(
            mfa_core::backup::BackupError::InvalidParams,
        ))),
        Box::new(ServiceError::<DecodeError>::Store(DecodeError::Corrupt)),
        Box::new(mfa.status(&acme(), &alice()).await.unwrap_err()),
        Box::new(mfa_core::uri::KeyUri::parse("otpauth://totp/a?secret=1").unwrap_err()),
        Box::new(IdError::Empty),
    ];
    for error in &errors {
        let messages = chain(error.as_ref());
        for (i, outer) in messages.iter().enumerate() {
            for inner in &messages[i + 1..] {
                assert!(
                    !outer.contains(inner.as_str()),
                    "{outer:?} repeats its cause {inner:?}"
                );
            }
        }
    }
    // And the chain still tells the whole story.
    assert_eq!(
        chain(&corrupt),
        [
            "the stored MFA record of customer alice@acme.test in organisation acme cannot be read",
            "stored data has format 9, which this version cannot read",
        ]
    );
}
