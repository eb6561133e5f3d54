//! The portal: its configuration, its parts, the first-start set-up, the password sign-in, and the
//! router that ties the pages, the portal's JSON routes and `mfa-http`'s routes together.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use mfa_core::{
    Actor, Clock, CustomerId, KeyRing, OrgId, Service, ServiceError, SessionCheck, Settings, Store,
    backup::BackupHashParams, machine::LockoutRule,
};
use mfa_http::MfaApi;
use mfa_http::model::Next;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::accounts::{Account, Accounts, AccountsError, PasswordError, Passwords, Role};
use crate::keys::{self, KeyError};
use crate::sessions::{PortalHost, SessionId, SessionLimits, Sessions, SignedIn};
use crate::signin_token::SignInTokens;
use crate::throttle::{self, Refused, Throttle};
use crate::{api, headers, pages};

/// The demo accounts created on first start: email, password, role.
pub const DEMO_ACCOUNTS: [(&str, &str, Role); 3] = [
    ("admin@acme.test", "admin-pass", Role::Admin),
    ("alice@acme.test", "alice-pass", Role::Customer),
    ("bob@acme.test", "bob-pass", Role::Customer),
];

/// The longest email or password the sign-in looks at; longer ones are wrong without a hash.
const MAX_EMAIL: usize = 254;
const MAX_PASSWORD: usize = 1024;

/// A clock the portal can share between the service, its sessions and its handlers.
pub trait PortalClock: Clock + Clone + 'static {}

impl<T: Clock + Clone + 'static> PortalClock for T {}

/// How the portal runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The organisation whose portal this is (`acme`): its name is its id in MFA.
    pub org: OrgId,
    /// The name authenticator apps show above the code (`Acme Billing`).
    pub issuer: String,
    /// The portal is served over TLS (directly or behind a proxy): cookies get `Secure` and the
    /// `__Host-` prefix, and answers carry `Strict-Transport-Security`.
    pub secure: bool,
    /// Cheap argon2 for passwords and backup codes: for tests only.
    pub danger_insecure_fast_hashes: bool,
    /// Session lifetimes and the most sessions kept.
    pub sessions: SessionLimits,
    /// Wrong passwords allowed per email before sign-ins for it must wait (mfa-core's rule: 5, then
    /// 30 s doubling to an hour).
    pub password_lockout: LockoutRule,
}

impl Config {
    /// The defaults for the portal of `org`.
    #[must_use]
    pub fn new(org: OrgId) -> Self {
        Self {
            org,
            issuer: "Acme Billing".to_owned(),
            secure: false,
            danger_insecure_fast_hashes: false,
            sessions: SessionLimits::default(),
            password_lockout: LockoutRule::default(),
        }
    }
}

/// The portal could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The accounts table failed.
    #[error("the accounts table failed")]
    Accounts(#[from] AccountsError),
    /// Passwords could not be hashed.
    #[error("passwords could not be hashed")]
    Password(#[from] PasswordError),
    /// The MFA service could not store the organisation.
    #[error("the MFA store failed")]
    Mfa(#[source] Box<dyn core::error::Error + Send + Sync>),
    /// The keys do not open what the database sealed (a wrong key, a key id not given).
    #[error("the sealing keys do not fit the database")]
    Keys(#[from] KeyError),
}

/// Why a password sign-in failed.
#[derive(Debug)]
pub(crate) enum SignInError {
    /// Wrong email or password (which one is not said).
    Wrong,
    /// Too many wrong passwords for this email: wait this many seconds.
    Throttled(u64),
    /// Too many emails with wrong passwords to keep count of one more: wait this many seconds.
    Busy(u64),
    /// A store failed, or the customer's record cannot be read; the error says how to answer (it
    /// was logged).
    Failed(mfa_http::Error),
}

/// The portal: MFA's service and API, the accounts, the sessions.
pub struct Portal<S, C> {
    pub(crate) mfa: MfaApi<S, C, StdRng, PortalHost<C>>,
    pub(crate) accounts: Accounts,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) signin_tokens: SignInTokens,
    pub(crate) passwords: Passwords,
    pub(crate) throttle: Throttle,
    pub(crate) config: Config,
    pub(crate) clock: C,
    /// The demo's card on file per customer: its last four digits, in memory (nothing is charged,
    /// and no card number is kept).
    pub(crate) cards: std::sync::Mutex<std::collections::HashMap<CustomerId, String>>,
}

impl<S, C> fmt::Debug for Portal<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portal")
            .field("config", &self.config)
            .field("accounts", &self.accounts)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl<S: Store + 'static, C: PortalClock> Portal<S, C> {
    /// The portal over an MFA `store` and the `accounts` table in the same database. It first checks
    /// that `keys` open what the store sealed ([`keys::check`]). On first start (no accounts yet) it
    /// creates the organisation with MFA off and the [`DEMO_ACCOUNTS`]; the second value says
    /// whether it did.
    ///
    /// # Errors
    /// [`StartError::Keys`] when a key id the store uses is missing from `keys` or its key does not
    /// open its secrets; [`StartError`]'s others when the accounts or the organisation cannot be
    /// read or written.
    pub async fn start(
        store: S,
        accounts: Accounts,
        clock: C,
        keys: KeyRing,
        config: Config,
    ) -> Result<(Arc<Self>, bool), StartError> {
        keys::check(&keys, &store).await?;
        let rng = StdRng::from_rng(&mut rand::rng());
        let service = Arc::new(Service::new(store, clock.clone(), keys, rng));
        let sessions = Arc::new(Sessions::new(config.sessions, config.secure));
        let host = PortalHost::new(Arc::clone(&sessions), clock.clone());
        let passwords = if config.danger_insecure_fast_hashes {
            Passwords::danger_insecure_fast()?
        } else {
            Passwords::new()?
        };
        let portal = Self {
            mfa: MfaApi::new(service, host),
            accounts,
            sessions,
            signin_tokens: SignInTokens::new(config.secure, config.sessions.max_age_secs),
            passwords,
            throttle: Throttle::new(config.password_lockout, throttle::MAX_TRACKED),
            config,
            clock,
            cards: std::sync::Mutex::default(),
        };
        let created = portal.seed().await?;
        Ok((Arc::new(portal), created))
    }

    async fn seed(&self) -> Result<bool, StartError> {
        if self.accounts.count().await? > 0 {
            return Ok(false);
        }
        let mut settings = Settings::default();
        settings.issuer.clone_from(&self.config.issuer);
        if self.config.danger_insecure_fast_hashes {
            settings.backup_hash = BackupHashParams::danger_insecure_fast();
        }
        // Writing the settings creates the organisation, with MFA off.
        let setup = Actor::new("portal setup").map_err(|error| StartError::Mfa(Box::new(error)))?;
        self.service()
            .update_settings(&self.config.org, settings, &setup)
            .await
            .map_err(|error| StartError::Mfa(Box::new(error)))?;
        for (email, password, role) in DEMO_ACCOUNTS {
            let account = Account {
                email: CustomerId::new(email).map_err(|error| StartError::Mfa(Box::new(error)))?,
                org: self.config.org.clone(),
                role,
                password_hash: self.passwords.hash(password).await?,
            };
            self.accounts.insert_if_missing(&account).await?;
        }
        Ok(true)
    }

    /// The routes: the pages, `/static/...`, and the JSON API under `/api` (the portal's
    /// `/api/session` and `/api/me`, and `mfa-http`'s `/api/mfa...`, `/api/admin...` and
    /// `/api/openapi.json`), with the security headers on every answer.
    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route(
                "/session",
                post(api::create_session::<S, C>).delete(api::delete_session::<S, C>),
            )
            .route("/me", get(api::me::<S, C>))
            .route(
                "/billing/payment-method",
                post(api::save_payment_method::<S, C>),
            )
            .method_not_allowed_fallback(api::method_not_allowed)
            .with_state(Arc::clone(self))
            .merge(self.mfa.router());
        Router::new()
            .route("/", get(pages::root::<S, C>))
            .route(
                "/signin",
                get(pages::signin_page::<S, C>).post(pages::signin_submit::<S, C>),
            )
            .route("/signout", post(pages::signout::<S, C>))
            .route("/mfa/setup", get(pages::setup::<S, C>))
            .route("/mfa/verify", get(pages::verify::<S, C>))
            .route("/account", get(pages::account::<S, C>))
            .route(
                "/billing/payment-method",
                get(pages::payment_method::<S, C>),
            )
            .route("/admin", get(pages::admin::<S, C>))
            .route("/admin/settings", post(pages::admin_settings::<S, C>))
            .route("/admin/customers/reset", post(pages::admin_reset::<S, C>))
            .route("/static/app.js", get(pages::script))
            .route("/static/style.css", get(pages::stylesheet))
            .fallback(pages::not_found)
            .with_state(Arc::clone(self))
            .nest("/api", api)
            .layer(DefaultBodyLimit::max(pages::MAX_FORM_BYTES))
            .layer(middleware::from_fn_with_state(
                self.config.secure,
                headers::security,
            ))
    }

    /// The MFA service (shared with the API).
    #[must_use]
    pub fn service(&self) -> &Arc<Service<S, C, StdRng>> {
        self.mfa.service()
    }

    /// The sessions.
    #[must_use]
    pub const fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The accounts table.
    #[must_use]
    pub const fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Now, in seconds since the epoch, on the portal's clock.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now().as_secs()
    }

    /// Checks a password and asks MFA what the new session must do next.
    pub(crate) async fn sign_in(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(SignedIn, Next), SignInError> {
        let email = email.trim().to_lowercase();
        if email.is_empty() || email.len() > MAX_EMAIL || password.len() > MAX_PASSWORD {
            return Err(SignInError::Wrong);
        }
        // Counted before the slow part, so that a burst cannot get more checks than the lockout
        // allows; an early return below (a store failed) drops the attempt, which gives it back.
        let attempt = self
            .throttle
            .begin(&email, self.now())
            .map_err(|refused| match refused {
                Refused::Locked(wait) => SignInError::Throttled(wait),
                Refused::Full(wait) => SignInError::Busy(wait),
            })?;
        let account = self
            .accounts
            .find(&email)
            .await
            .map_err(|error| SignInError::Failed(accounts_failed(&error)))?;
        let hash = account
            .as_ref()
            .map(|account| account.password_hash.as_str());
        let matches = self
            .passwords
            .verify(password, hash)
            .await
            .map_err(|error| {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "portal: a password could not be checked"
                );
                SignInError::Failed(unavailable())
            })?;
        let account = match account {
            Some(account) if matches && account.org == self.config.org => account,
            _ => {
                attempt.failed();
                return Err(SignInError::Wrong);
            }
        };
        attempt.succeeded();
        let (mfa, next) = match account.role {
            // This example's administrators have no second factor of their own: see the README.
            Role::Admin => (None, Next::Done),
            Role::Customer => {
                let step = self
                    .mfa
                    .login_step(&account.org, &account.email)
                    .await
                    .map_err(SignInError::Failed)?;
                (Some(step.session()), Next::from(&step))
            }
        };
        let user = SignedIn {
            org: account.org,
            email: account.email,
            role: account.role,
            mfa,
        };
        Ok((user, next))
    }

    /// What a customer's session may do now: checked against the customer's record on every
    /// protected request, so a reset or a change of factor (from any node, the JSON API or `mfa
    /// admin`) ends it, and a session that needed no MFA is sent to set it up once the
    /// organisation switches it on. A customer session without an MFA stamp is over.
    ///
    /// # Errors
    /// The service's, when the store fails.
    pub async fn check(
        &self,
        user: &SignedIn,
    ) -> Result<SessionCheck, ServiceError<<S as Store>::Error>> {
        match &user.mfa {
            Some(session) => {
                self.service()
                    .check_session(&user.org, &user.email, session)
                    .await
            }
            None => Ok(SessionCheck::Ended),
        }
    }

    /// A new session for `user`, replacing the request's session (if any): the id changes at
    /// sign-in, so an id planted in the browser before is worth nothing.
    pub(crate) fn open_session(&self, old: Option<&SessionId>, user: SignedIn) -> SessionId {
        if let Some(old) = old {
            self.sessions.remove(old);
        }
        self.sessions.create(Some(user), self.now()).0
    }
}

/// The answer to a failure of the accounts table, logged once.
pub(crate) fn accounts_failed(error: &AccountsError) -> mfa_http::Error {
    tracing::error!(
        error = error as &dyn std::error::Error,
        "portal: the accounts table failed"
    );
    unavailable()
}

pub(crate) fn unavailable() -> mfa_http::Error {
    mfa_http::Error::new(
        mfa_http::ErrorKind::Unavailable,
        "the service is unavailable; try again shortly",
    )
}
