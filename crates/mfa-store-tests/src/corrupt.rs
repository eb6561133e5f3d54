//! A store wrapped with test hooks ([`Hooked`]), and the one that hands back bytes this version
//! cannot read ([`Garbled`]): the service must call them corruption (naming whose record), change
//! nothing and pass no one.

use std::future::Future;
use std::sync::Mutex;

use mfa_core::{
    CustomerId, KeyId, OrgId, OrgPolicy, Store,
    audit::{AuditExport, AuditQuery, Event, StoredEvent},
    machine::CustomerRecord,
    store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
};

/// What a test does around a store's calls: rewrite what loads read, act before a write. Both do
/// nothing unless a test says otherwise.
pub trait Hooks: Send + Sync {
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

    /// Runs before every write (a record, a policy, appended events).
    fn before_write(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A store with [`Hooks`] around it; everything else goes to the store underneath unchanged.
/// Fields drop in order: the store closes before the hooks go (a temporary file, say).
pub struct Hooked<S, H> {
    /// The store underneath.
    pub store: S,
    /// What the test does around it.
    pub hooks: H,
}

impl<S: Store, H: Hooks> Store for Hooked<S, H> {
    type Error = S::Error;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, S::Error> {
        Ok(self
            .hooks
            .loaded(org, None, self.store.load_org(org).await?))
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, S::Error> {
        self.hooks.before_write().await;
        self.store.write_org(org, expected, policy, events).await
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, S::Error> {
        let loaded = self.store.load_customer(org, customer).await?;
        Ok(self.hooks.loaded(org, Some(customer), loaded))
    }

    async fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<OrgAndCustomer, S::Error> {
        let (policy, record) = self.store.load_org_and_customer(org, customer).await?;
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
    ) -> Result<Written, S::Error> {
        self.hooks.before_write().await;
        self.store
            .write_customer(org, customer, expected, record, events)
            .await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), S::Error> {
        self.hooks.before_write().await;
        self.store.append_events(events).await
    }

    async fn audit(&self, org: &OrgId, query: &AuditQuery) -> Result<Vec<StoredEvent>, S::Error> {
        self.store.audit(org, query).await
    }

    async fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> Result<Vec<StoredEvent>, S::Error> {
        self.store.export_audit(org, query).await
    }

    async fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> Result<Vec<CustomerKey>, S::Error> {
        self.store.sealed_under(key, after, limit).await
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, S::Error> {
        self.store.count_sealed().await
    }
}

/// A store that hands back other bytes in place of those stored for one customer or one
/// organisation, with the real version: what a damaged row (or one a newer version wrote) looks
/// like to the service. Writes go to the store underneath unchanged.
pub type Garbled<S> = Hooked<S, Garbage>;

/// Whose bytes read as what ([`Garbled`]).
#[derive(Default)]
pub struct Garbage(Mutex<Option<Garbling>>);

/// The organisation, the customer (`None` for the policy), and the bytes they read as.
type Garbling = (OrgId, Option<CustomerId>, Vec<u8>);

impl<S> Hooked<S, Garbage> {
    /// `store`, handing back what it stores until [`Hooked::garble`] says otherwise.
    pub fn garbled(store: S) -> Self {
        Self {
            store,
            hooks: Garbage::default(),
        }
    }

    /// From now on the record of `customer` (or, for `None`, the policy of `org`) reads as
    /// `bytes`; `None` puts everything right again.
    pub fn garble(&self, target: Option<(OrgId, Option<CustomerId>)>, bytes: &[u8]) {
        *self.hooks.0.lock().expect("not poisoned") =
            target.map(|(org, customer)| (org, customer, bytes.to_vec()));
    }
}

impl Hooks for Garbage {
    fn loaded<T>(
        &self,
        org: &OrgId,
        customer: Option<&CustomerId>,
        loaded: Option<Versioned<Encoded<T>>>,
    ) -> Option<Versioned<Encoded<T>>> {
        let garbage = self.0.lock().expect("not poisoned");
        match (&*garbage, loaded) {
            (Some((o, c, bytes)), Some(loaded)) if o == org && c.as_ref() == customer => {
                Some(Versioned {
                    value: Encoded::new(bytes.clone()),
                    version: loaded.version,
                })
            }
            (_, loaded) => loaded,
        }
    }
}
