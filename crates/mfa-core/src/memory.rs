//! A store in memory: for tests, examples and small single-process embeddings.

use alloc::vec::Vec;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::encoding::DecodeError;
use crate::{
    AuditQuery, CustomerId, CustomerRecord, Event, OrgId, OrgPolicy, Store, StoredEvent, Version,
    Versioned, Written,
};

/// A [`Store`] in memory, behind one mutex. It keeps records in their byte form, as a database
/// would, so it exercises the same encoding. Everything is lost when it is dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    orgs: HashMap<OrgId, (Version, Vec<u8>)>,
    customers: HashMap<(OrgId, CustomerId), (Version, Vec<u8>)>,
    events: Vec<StoredEvent>,
    next_version: u64,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every write below completes its changes before it can panic, so a poisoned lock still
        // guards consistent data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn bump(&mut self) -> Version {
        self.next_version = self.next_version.saturating_add(1);
        Version(self.next_version)
    }

    fn append(&mut self, events: &[Event]) {
        for event in events {
            let seq = u64::try_from(self.events.len())
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            self.events.push(StoredEvent {
                seq,
                event: event.clone(),
            });
        }
    }
}

impl Store for MemoryStore {
    type Error = DecodeError;

    async fn load_org(&self, org: &OrgId) -> Result<Option<Versioned<OrgPolicy>>, DecodeError> {
        let inner = self.lock();
        let Some((version, bytes)) = inner.orgs.get(org) else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: OrgPolicy::from_bytes(bytes)?,
            version: *version,
        }))
    }

    async fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> Result<Written, DecodeError> {
        let mut inner = self.lock();
        if inner.orgs.get(org).map(|(version, _)| *version) != expected {
            return Ok(Written::Conflict);
        }
        let version = inner.bump();
        inner.orgs.insert(org.clone(), (version, policy.to_bytes()));
        inner.append(events);
        Ok(Written::Stored(version))
    }

    async fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> Result<Option<Versioned<CustomerRecord>>, DecodeError> {
        let inner = self.lock();
        let Some((version, bytes)) = inner.customers.get(&(org.clone(), customer.clone())) else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: CustomerRecord::from_bytes(bytes)?,
            version: *version,
        }))
    }

    async fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> Result<Written, DecodeError> {
        let mut inner = self.lock();
        let key = (org.clone(), customer.clone());
        if inner.customers.get(&key).map(|(version, _)| *version) != expected {
            return Ok(Written::Conflict);
        }
        let version = inner.bump();
        inner.customers.insert(key, (version, record.to_bytes()));
        inner.append(events);
        Ok(Written::Stored(version))
    }

    async fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<StoredEvent>, DecodeError> {
        let inner = self.lock();
        Ok(inner
            .events
            .iter()
            .rev()
            .filter(|stored| query.before_seq.is_none_or(|before| stored.seq < before))
            .filter(|stored| &stored.event.org == org)
            .filter(|stored| query.customer.is_none() || stored.event.customer == query.customer)
            .take(query.limit)
            .cloned()
            .collect())
    }
}
