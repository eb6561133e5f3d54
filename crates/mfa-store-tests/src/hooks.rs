//! A store with test hooks around it ([`Hooked`]): the one wrapper behind every test that needs a
//! store to misbehave (fail, lose a race, read back other bytes, wait at a barrier) or to be
//! watched (count its calls), in place of a hand-written delegating store per test file.

use std::error::Error;
use std::fmt;
use std::future::Future;

use mfa_core::{
    CustomerId, KeyId, OrgId, OrgPolicy, Store,
    audit::{AuditExport, AuditQuery, Event, StoredEvent},
    machine::CustomerRecord,
    store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
};

/// Which call of the [`Store`] trait a hook is running for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Call {
    /// [`Store::load_org`].
    LoadOrg,
    /// [`Store::load_customer`].
    LoadCustomer,
    /// [`Store::load_org_and_customer`].
    LoadOrgAndCustomer,
    /// [`Store::write_org`].
    WriteOrg,
    /// [`Store::write_customer`].
    WriteCustomer,
    /// [`Store::append_events`].
    AppendEvents,
    /// [`Store::audit`].
    Audit,
    /// [`Store::export_audit`].
    ExportAudit,
    /// [`Store::sealed_under`].
    SealedUnder,
    /// [`Store::count_sealed`].
    CountSealed,
}

impl Call {
    /// Whether the call writes (a policy, a record, appended events).
    #[must_use]
    pub const fn writes(self) -> bool {
        matches!(
            self,
            Self::WriteOrg | Self::WriteCustomer | Self::AppendEvents
        )
    }
}

/// What happens to a call, as [`Hooks::before`] decides.
#[derive(Debug)]
#[non_exhaustive]
pub enum Before {
    /// It goes to the store underneath.
    Proceed,
    /// It fails with this error ([`HookedError::Injected`]) without reaching the store.
    Fail(Box<dyn Error + Send + Sync>),
    /// A write of a record or a policy loses its compare-and-swap: [`Written::Conflict`], and
    /// nothing is stored. (For any other call it is [`Before::Proceed`].)
    Lose,
}

/// What a test does around a store's calls. Every hook does nothing unless a test says otherwise.
pub trait Hooks: Send + Sync {
    /// Runs before each call reaches the store, and decides whether it does.
    fn before(&self, call: Call) -> impl Future<Output = Before> + Send {
        let _ = call;
        async { Before::Proceed }
    }

    /// What a load of the record of `customer` (or, for `None`, the policy of `org`) hands back.
    fn loaded<T>(
        &self,
        org: &OrgId,
        customer: Option<&CustomerId>,
        loaded: Option<Versioned<Encoded<T>>>,
    ) -> Option<Versioned<Encoded<T>>> {
        let _ = (org, customer);
        loaded
    }

    /// Runs after a call that reached the store succeeded (or lost its race to
    /// [`Before::Lose`]), before its caller hears the answer: `written` is how a write of a
    /// record or a policy ended, `None` for other calls.
    fn after(&self, call: Call, written: Option<Written>) -> impl Future<Output = ()> + Send {
        let _ = (call, written);
        async {}
    }
}

/// Nothing hooked: a [`Hooked`] store with `()` is the store underneath, plus whatever its
/// fields own (say a temporary directory that must outlive the store).
impl Hooks for () {}

/// A store with [`Hooks`] around it; everything else goes to the store underneath unchanged.
/// Fields drop in order: the store closes before the hooks go (a temporary file, say).
pub struct Hooked<S, H> {
    /// The store underneath.
    pub store: S,
    /// What the test does around it.
    pub hooks: H,
}

impl<S, H> Hooked<S, H> {
    /// `store` with `hooks` around it.
    pub const fn new(store: S, hooks: H) -> Self {
        Self { store, hooks }
    }
}

/// A [`Hooked`] store's error: the store's own, or one a hook made up.
#[derive(Debug)]
#[non_exhaustive]
pub enum HookedError<E> {
    /// The store underneath failed.
    Store(E),
    /// A hook failed the call ([`Before::Fail`]).
    Injected(Box<dyn Error + Send + Sync>),
}

/// Both show their error's message and its sources: neither adds words of its own.
impl<E: fmt::Display> fmt::Display for HookedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(error) => error.fmt(f),
            Self::Injected(error) => error.fmt(f),
        }
    }
}

impl<E: Error + 'static> Error for HookedError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Store(error) => error.source(),
            Self::Injected(error) => error.source(),
        }
    }
}

impl<S: Store, H: Hooks> Hooked<S, H> {
    /// Runs `call` on the store unless [`Hooks::before`] says otherwise; `lost` is what a lost
    /// write answers (`None` for a call that cannot lose).
    async fn through<T>(
        &self,
        call: Call,
        lost: Option<T>,
        run: impl Future<Output = Result<T, S::Error>>,
    ) -> Result<T, HookedError<S::Error>> {
        match self.hooks.before(call).await {
            Before::Fail(error) => Err(HookedError::Injected(error)),
            Before::Lose if lost.is_some() => Ok(lost.expect("checked just above")),
            Before::Proceed | Before::Lose => run.await.map_err(HookedError::Store),
        }
    }

    async fn write(
        &self,
        call: Call,
        run: impl Future<Output = Result<Written, S::Error>>,
    ) -> Result<Written, HookedError<S::Error>> {
        let written = self.through(call, Some(Written::Conflict), run).await?;
        self.hooks.after(call, Some(written)).await;
        Ok(written)
    }

    async fn other<T>(
        &self,
        call: Call,
        run: impl Future<Output = Result<T, S::Error>>,
    ) -> Result<T, HookedError<S::Error>> {
        let done = self.through(call, None, run).await?;
        self.hooks.after(call, None).await;
        Ok(done)
    }
}

impl<S: Store, H: Hooks> Store for Hooked<S, H> {
    type Error = HookedError<S::Error>;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, Self::Error> {
        let loaded = self.other(Call::LoadOrg, self.store.load_org(org)).await?;
        Ok(self.hooks.loaded(org, None, loaded))
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, Self::Error> {
        self.write(
            Call::WriteOrg,
            self.store.write_org(org, expected, policy, events),
        )
        .await
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, Self::Error> {
        let loaded = self
            .other(Call::LoadCustomer, self.store.load_customer(org, customer))
            .await?;
        Ok(self.hooks.loaded(org, Some(customer), loaded))
    }

    async fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<OrgAndCustomer, Self::Error> {
        let (policy, record) = self
            .other(
                Call::LoadOrgAndCustomer,
                self.store.load_org_and_customer(org, customer),
            )
            .await?;
        Ok((
            self.hooks.loaded(org, None, policy),
            self.hooks.loaded(org, Some(customer), record),
        ))
    }

    async fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> Result<Written, Self::Error> {
        self.write(
            Call::WriteCustomer,
            self.store
                .write_customer(org, customer, expected, record, events),
        )
        .await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), Self::Error> {
        self.other(Call::AppendEvents, self.store.append_events(events))
            .await
    }

    async fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<StoredEvent>, Self::Error> {
        self.other(Call::Audit, self.store.audit(org, query)).await
    }

    async fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> Result<Vec<StoredEvent>, Self::Error> {
        self.other(Call::ExportAudit, self.store.export_audit(org, query))
            .await
    }

    async fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> Result<Vec<CustomerKey>, Self::Error> {
        self.other(
            Call::SealedUnder,
            self.store.sealed_under(key, after, limit),
        )
        .await
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, Self::Error> {
        self.other(Call::CountSealed, self.store.count_sealed())
            .await
    }
}
