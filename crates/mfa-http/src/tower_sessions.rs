//! A ready [`MfaHost`] for hosts whose sessions are [`tower_sessions`]: [`SessionHost`].
//!
//! The host keeps its own password sign-in; once the password checked out it asks
//! [`MfaApi::login_step`](crate::MfaApi::login_step) what comes next and records the answer in
//! the customer's session with [`SessionHost::signed_in`]. From then on the routes of
//! [`MfaApi::router`](crate::MfaApi::router) read the session through this host, and a code that
//! passes is written back into it (with a fresh session id: the session gained a privilege). On its
//! own protected routes the host reads the session with [`SessionHost::customer`] and asks
//! [`Service::check_session`](mfa_core::Service::check_session) whether to let it in.
//!
//! What is kept in the session, under keys of this crate's own (`mfa.org`, `mfa.customer`,
//! `mfa.session`, `mfa.admin`), is ids and the [`MfaSession`] stamp: never a secret or a code. Keep
//! the session store server-side (any `tower_sessions` store is): whoever can write a session can
//! claim a factor passed.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use mfa_core::{Actor, CustomerId, MfaPassed, MfaSession, OrgId};
use tower_sessions::Session;

use crate::{Caller, HostError, MfaHost};

const ORG: &str = "mfa.org";
const CUSTOMER: &str = "mfa.customer";
const STAMP: &str = "mfa.session";
const ADMIN: &str = "mfa.admin";

/// An [`MfaHost`] over the request's [`tower_sessions::Session`] (the host mounts
/// `tower_sessions::SessionManagerLayer` around the router).
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionHost;

/// A customer's session as [`SessionHost`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedIn {
    /// The organisation.
    pub org: OrgId,
    /// The customer.
    pub customer: CustomerId,
    /// How far the sign-in got, for which of the customer's factors.
    pub mfa: MfaSession,
}

fn unavailable(error: tower_sessions::session::Error) -> HostError {
    HostError::Unavailable(Box::new(error))
}

impl SessionHost {
    /// Records in `session` that `customer` of `org` checked their password, with the
    /// [`MfaSession`] [`LoginStep::session`](mfa_core::LoginStep::session) gave, under a fresh
    /// session id (the id a visitor had before signing in is worth nothing after).
    ///
    /// # Errors
    /// The session store's.
    pub async fn signed_in(
        session: &Session,
        org: &OrgId,
        customer: &CustomerId,
        mfa: MfaSession,
    ) -> Result<(), tower_sessions::session::Error> {
        session.cycle_id().await?;
        session.insert(ORG, org.as_str()).await?;
        session.insert(CUSTOMER, customer.as_str()).await?;
        session.insert(STAMP, mfa).await?;
        Ok(())
    }

    /// Records in `session` that an administrator `name` of `org` signed in (fully: with the
    /// host's own second factor, if it has one): the admin routes switch MFA off for everyone and
    /// reset customers.
    ///
    /// # Errors
    /// The session store's.
    pub async fn admin_signed_in(
        session: &Session,
        org: &OrgId,
        name: &Actor,
    ) -> Result<(), tower_sessions::session::Error> {
        session.cycle_id().await?;
        session.insert(ORG, org.as_str()).await?;
        session.insert(ADMIN, name.as_str()).await?;
        Ok(())
    }

    /// The customer `session` is signed in as, if any. Ids that no longer read as ids (a session
    /// written by something else) count as no customer.
    ///
    /// # Errors
    /// The session store's.
    pub async fn customer(
        session: &Session,
    ) -> Result<Option<SignedIn>, tower_sessions::session::Error> {
        let (Some(org), Some(customer), Some(mfa)) = (
            session.get::<String>(ORG).await?,
            session.get::<String>(CUSTOMER).await?,
            session.get::<MfaSession>(STAMP).await?,
        ) else {
            return Ok(None);
        };
        let (Ok(org), Ok(customer)) = (OrgId::new(org), CustomerId::new(customer)) else {
            return Ok(None);
        };
        Ok(Some(SignedIn { org, customer, mfa }))
    }
}

impl MfaHost for SessionHost {
    async fn caller(&self, parts: &mut Parts) -> Result<Caller, HostError> {
        let session = Session::from_request_parts(parts, &())
            .await
            .map_err(|(_, why)| HostError::Unavailable(why.into()))?;
        let admin = match session.get::<String>(ADMIN).await.map_err(unavailable)? {
            Some(name) => Actor::new(name).ok(),
            None => None,
        };
        let customer = Self::customer(&session).await.map_err(unavailable)?;
        match (customer, admin) {
            (Some(signed_in), admin) => {
                let caller = Caller::customer(signed_in.org, signed_in.customer, signed_in.mfa);
                Ok(match admin {
                    Some(name) => caller.with_admin(name),
                    None => caller,
                })
            }
            (None, Some(name)) => {
                let org = session
                    .get::<String>(ORG)
                    .await
                    .map_err(unavailable)?
                    .and_then(|org| OrgId::new(org).ok())
                    .ok_or(HostError::Unauthenticated)?;
                Ok(Caller::admin(org, name))
            }
            (None, None) => Err(HostError::Unauthenticated),
        }
    }

    async fn mfa_passed(
        &self,
        parts: &mut Parts,
        proof: MfaPassed,
    ) -> Result<HeaderMap, HostError> {
        let session = Session::from_request_parts(parts, &())
            .await
            .map_err(|(_, why)| HostError::Unavailable(why.into()))?;
        let signed_in = Self::customer(&session)
            .await
            .map_err(unavailable)?
            .ok_or(HostError::Unauthenticated)?;
        // The proof is about the customer this session reported; anything else is refused.
        if proof.org() != &signed_in.org || proof.customer() != &signed_in.customer {
            return Err(HostError::Forbidden);
        }
        session
            .insert(STAMP, proof.session())
            .await
            .map_err(unavailable)?;
        // A session that gained a privilege gets a fresh id (the middleware sets the cookie).
        session.cycle_id().await.map_err(unavailable)?;
        Ok(HeaderMap::new())
    }

    /// Forgets the session's MFA stamp, so [`SessionHost::customer`] reports no one and the
    /// customer signs in again. The session is not flushed: when the change that ended it was this
    /// session's own (a confirmation sent twice, one copy refused because the other won), the
    /// winning request stamps the session anew, and a flushed session (and its cleared cookie)
    /// would sign the customer out of a change that succeeded.
    async fn session_ended(&self, parts: &mut Parts) -> Result<HeaderMap, HostError> {
        let session = Session::from_request_parts(parts, &())
            .await
            .map_err(|(_, why)| HostError::Unavailable(why.into()))?;
        session
            .remove::<MfaSession>(STAMP)
            .await
            .map_err(unavailable)?;
        Ok(HeaderMap::new())
    }
}
