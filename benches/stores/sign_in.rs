//! One enrolled customer signing in through the [`Service`], with a fresh, valid code every time.

use std::sync::Arc;

use mfa_core::{
    Actor, Clock, CustomerId, KeyId, KeyRing, ManualClock, MfaPassed, MfaSession, OrgId, OrgMfa,
    Refusal, SealingKey, Service, ServiceError, Store, UnixTime,
    otp::{Secret, Totp},
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Where every clock starts: 2026-01-01T00:00:00Z.
pub(crate) const T0: u64 = 1_767_225_600;

/// The organisation of every benchmarked customer.
pub(crate) const ORG: &str = "acme";

/// One step of the code (RFC 6238's X, 30 s by default).
const STEP: u64 = 30;

/// A sealing key ring, the same for every customer of a run.
pub(crate) fn keys() -> KeyRing {
    KeyRing::new(SealingKey::generate(
        KeyId::new(1),
        &mut ChaCha20Rng::seed_from_u64(1),
    ))
}

/// A service over `store` with a clock of its own, and one customer it enrolled, whose app is this
/// struct: [`sign_in`](Self::sign_in) moves the clock one step on and types the new step's code.
///
/// Each customer has its own service (over a shared store) so that concurrent customers each move
/// their own clock: a code is only accepted for a step after the customer's last one.
pub(crate) struct SignIn<S> {
    service: Service<Arc<S>, ManualClock, ChaCha20Rng>,
    clock: ManualClock,
    org: OrgId,
    customer: CustomerId,
    /// The session that enrolled: every sign-in gives its code in it.
    session: MfaSession,
    totp: Totp,
    secret: Secret,
}

impl<S: Store> SignIn<S> {
    /// Switches MFA on for [`ORG`] in `store`.
    pub(crate) async fn switch_on(store: &Arc<S>) {
        let service = Service::new(
            Arc::clone(store),
            ManualClock::new(UnixTime::from_secs(T0)),
            keys(),
            ChaCha20Rng::seed_from_u64(0),
        );
        let org = OrgId::new(ORG).expect("a valid id");
        service
            .set_org_mfa(&org, OrgMfa::On, &Actor::new("admin@acme.test").unwrap())
            .await
            .expect("the store takes the policy");
    }

    /// Enrolls `customer` of [`ORG`] (MFA must be on: [`switch_on`](Self::switch_on)) the way a
    /// customer does: sign in with the password, start, scan, confirm with the app's code.
    pub(crate) async fn enroll(store: &Arc<S>, customer: &str) -> Self {
        let clock = ManualClock::new(UnixTime::from_secs(T0));
        let service = Service::new(
            Arc::clone(store),
            clock.clone(),
            keys(),
            // A seed per customer, so no two customers share a secret.
            ChaCha20Rng::seed_from_u64(customer.bytes().fold(0, |hash, byte| {
                hash.wrapping_mul(31).wrapping_add(u64::from(byte))
            })),
        );
        let org = OrgId::new(ORG).expect("a valid id");
        let customer = CustomerId::new(customer).expect("a valid id");
        let session = service
            .login_step(&org, &customer)
            .await
            .expect("the store answers")
            .session();
        let enrollment = service
            .start_enrollment(&org, &customer, &session)
            .await
            .expect("enrollment starts");
        let totp = enrollment.uri.as_totp().expect("a TOTP enrollment");
        let secret = enrollment.uri.secret().clone();
        let code = totp
            .generate(&secret, clock.now())
            .expect("a time in range")
            .to_string();
        let passed = service
            .confirm_enrollment(&org, &customer, &session, &code)
            .await
            .expect("the app's code confirms the enrollment");
        assert_eq!(passed.customer(), &customer);
        Self {
            service,
            clock,
            org,
            customer,
            session: passed.session(),
            totp,
            secret,
        }
    }

    /// The customer's id.
    pub(crate) fn customer(&self) -> &str {
        self.customer.as_str()
    }

    /// The next step's code, as the app shows it: the clock moves on by one step first. Under a
    /// microsecond (four HMAC-SHA-1 evaluations and two short strings).
    ///
    /// Once in a million steps a code equals the previous step's, the one just accepted. The
    /// service accepts it for its own step, but a caller that sent it again could not tell the two
    /// apart; this skips such a step, so every timed sign-in has a code of its own.
    pub(crate) fn next_code(&self) -> String {
        loop {
            self.clock.advance(STEP);
            let now = self.clock.now();
            let code = self.code_at(now);
            let previous = self.code_at(UnixTime::from_secs(now.as_secs() - STEP));
            if code != previous {
                return code;
            }
        }
    }

    fn code_at(&self, time: UnixTime) -> String {
        self.totp
            .generate(&self.secret, time)
            .expect("a time in range")
            .to_string()
    }

    /// Checks `code` through the service: load the policy and the record, verify, write the record
    /// back if unchanged with its `totp_accepted` event.
    pub(crate) async fn verify(&self, code: &str) -> Result<MfaPassed, ServiceError<S::Error>> {
        self.service
            .verify_totp(&self.org, &self.customer, &self.session, code)
            .await
            .map(|accepted| accepted.passed)
    }

    /// The store's own read of the customer's record, alone: what one call to the store costs.
    pub(crate) async fn load_record(&self) {
        let loaded = self
            .service
            .store()
            .load_customer(&self.org, &self.customer)
            .await
            .expect("the store answers");
        assert!(loaded.is_some(), "the customer is stored");
    }

    /// One sign-in end to end with a fresh code. Panics if it is refused: the timing would be of a
    /// different job.
    pub(crate) async fn sign_in(&self) -> MfaPassed {
        let code = self.next_code();
        self.verify(&code).await.expect("a fresh code is accepted")
    }

    /// Panics unless a sign-in passes for this customer and the same code is then refused as a
    /// replay: the service really checks the code and really remembers the step.
    pub(crate) async fn assert_signs_in_once(&self) {
        let code = self.next_code();
        let passed = self.verify(&code).await.expect("a fresh code is accepted");
        assert_eq!(
            passed.customer(),
            &self.customer,
            "the proof names the customer"
        );
        let replayed = self.verify(&code).await;
        assert!(
            matches!(
                replayed.as_ref().map_err(ServiceError::refusal),
                Err(Some(Refusal::ReplayedCode))
            ),
            "a replayed code must be refused, got {replayed:?}"
        );
    }
}
