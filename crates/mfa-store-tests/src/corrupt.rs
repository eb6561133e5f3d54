//! Stored bytes this version cannot read, handed back by a real store: the service must call them
//! corruption (naming whose record), change nothing and pass no one.

use std::sync::Mutex;

use mfa_core::{
    CustomerId, KeyId, OrgId, OrgPolicy, Store,
    audit::{AuditExport, AuditQuery, Event, StoredEvent},
    machine::CustomerRecord,
    store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
};

/// A store that hands back `garbage` in place of the bytes stored for one customer or one
/// organisation, with the real version: what a damaged row (or one a newer version wrote) looks
/// like to the service. Writes go to the store underneath unchanged.
pub struct Garbled<S> {
    inner: S,
    garbage: Mutex<Option<Garbage>>,
}

/// Whose bytes read as what: the organisation, the customer (`None` for the policy), the bytes.
type Garbage = (OrgId, Option<CustomerId>, Vec<u8>);

impl<S> Garbled<S> {
    /// `inner`, handing back what it stores until [`Garbled::garble`] says otherwise.
    pub const fn new(inner: S) -> Self {
        Self {
            inner,
            garbage: Mutex::new(None),
        }
    }

    /// From now on the record of `customer` (or, for `None`, the policy of `org`) reads as
    /// `bytes`; `None` for `org` puts everything right again.
    pub fn garble(&self, target: Option<(OrgId, Option<CustomerId>)>, bytes: &[u8]) {
        *self.garbage.lock().expect("not poisoned") =
            target.map(|(org, customer)| (org, customer, bytes.to_vec()));
    }

    fn swap<T>(
        &self,
        org: &OrgId,
        customer: Option<&CustomerId>,
        loaded: Option<Versioned<Encoded<T>>>,
    ) -> Option<Versioned<Encoded<T>>> {
        let garbage = self.garbage.lock().expect("not poisoned");
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

impl<S: Store> Store for Garbled<S> {
    type Error = S::Error;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, S::Error> {
        Ok(self.swap(org, None, self.inner.load_org(org).await?))
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, S::Error> {
        self.inner.write_org(org, expected, policy, events).await
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, S::Error> {
        let loaded = self.inner.load_customer(org, customer).await?;
        Ok(self.swap(org, Some(customer), loaded))
    }

    async fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<OrgAndCustomer, S::Error> {
        let (policy, record) = self.inner.load_org_and_customer(org, customer).await?;
        Ok((
            self.swap(org, None, policy),
            self.swap(org, Some(customer), record),
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
        self.inner
            .write_customer(org, customer, expected, record, events)
            .await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), S::Error> {
        self.inner.append_events(events).await
    }

    async fn audit(&self, org: &OrgId, query: &AuditQuery) -> Result<Vec<StoredEvent>, S::Error> {
        self.inner.audit(org, query).await
    }

    async fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> Result<Vec<StoredEvent>, S::Error> {
        self.inner.export_audit(org, query).await
    }

    async fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> Result<Vec<CustomerKey>, S::Error> {
        self.inner.sealed_under(key, after, limit).await
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, S::Error> {
        self.inner.count_sealed().await
    }
}
