//! A store in memory: for tests, examples and small single-process embeddings.

use alloc::vec::Vec;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::encoding::DecodeError;
use crate::{
    AuditExport, AuditQuery, CustomerId, CustomerKey, CustomerRecord, Encoded, Event, KeyId, OrgId,
    OrgPolicy, SealedSecret, Store, StoredEvent, Version, Versioned, Written,
};

/// A [`Store`] in memory, behind one mutex. It keeps records and events in their byte form, as a
/// database would, so it exercises the same encoding. Everything is lost when it is dropped.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    orgs: HashMap<OrgId, (Version, Vec<u8>)>,
    customers: HashMap<(OrgId, CustomerId), (Version, Vec<u8>)>,
    /// Each event's organisation and customer (the index a database would keep) and its bytes.
    events: Vec<(OrgId, Option<CustomerId>, Vec<u8>)>,
    next_version: u64,
}

impl core::fmt::Debug for MemoryStore {
    // Counts only: the records hold sealed secrets and backup-code hashes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryStore")
            .field("orgs", &inner.orgs.len())
            .field("customers", &inner.customers.len())
            .field("events", &inner.events.len())
            .finish()
    }
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
            self.events
                .push((event.org.clone(), event.customer.clone(), event.to_bytes()));
        }
    }
}

impl Store for MemoryStore {
    type Error = DecodeError;

    async fn load_org(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, DecodeError> {
        let inner = self.lock();
        let Some((version, bytes)) = inner.orgs.get(org) else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: Encoded::new(bytes.clone()),
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
    ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, DecodeError> {
        let inner = self.lock();
        let Some((version, bytes)) = inner.customers.get(&(org.clone(), customer.clone())) else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: Encoded::new(bytes.clone()),
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

    async fn append_events(&self, events: &[Event]) -> Result<(), DecodeError> {
        self.lock().append(events);
        Ok(())
    }

    async fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<StoredEvent>, DecodeError> {
        let inner = self.lock();
        // An event's sequence number is its position in the log, counting from 1.
        let end = query.before_seq.map_or(inner.events.len(), |before| {
            usize::try_from(before.saturating_sub(1))
                .unwrap_or(usize::MAX)
                .min(inner.events.len())
        });
        let mut found = Vec::new();
        for (index, (event_org, event_customer, bytes)) in
            inner.events.iter().enumerate().take(end).rev()
        {
            if found.len() >= query.limit {
                break;
            }
            if event_org != org || (query.customer.is_some() && *event_customer != query.customer) {
                continue;
            }
            let seq = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
            found.push(StoredEvent {
                seq,
                event: Event::from_bytes(bytes)?,
            });
        }
        Ok(found)
    }

    async fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> Result<Vec<StoredEvent>, DecodeError> {
        let inner = self.lock();
        // Sequence numbers count from 1: those after `after_seq` start at index `after_seq`.
        let start = query
            .after_seq
            .map_or(0, |after| usize::try_from(after).unwrap_or(usize::MAX));
        let mut found = Vec::new();
        for (index, (event_org, event_customer, bytes)) in
            inner.events.iter().enumerate().skip(start)
        {
            if found.len() >= query.limit {
                break;
            }
            if event_org != org || (query.customer.is_some() && *event_customer != query.customer) {
                continue;
            }
            let event = Event::from_bytes(bytes)?;
            if query.since.is_some_and(|since| event.at < since) {
                continue;
            }
            let seq = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
            found.push(StoredEvent { seq, event });
        }
        Ok(found)
    }

    async fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> Result<Vec<CustomerKey>, DecodeError> {
        let inner = self.lock();
        let mut found = Vec::new();
        for (id, (_, bytes)) in &inner.customers {
            if after.is_some_and(|after| id <= after) {
                continue;
            }
            if sealing_key(bytes)? == Some(key) {
                found.push(id.clone());
            }
        }
        found.sort_unstable();
        found.truncate(limit);
        Ok(found)
    }

    async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, DecodeError> {
        let inner = self.lock();
        let mut counts = BTreeMap::<KeyId, u64>::new();
        for (_, bytes) in inner.customers.values() {
            if let Some(key) = sealing_key(bytes)? {
                let count = counts.entry(key).or_default();
                *count = count.saturating_add(1);
            }
        }
        Ok(counts.into_iter().collect())
    }
}

/// The key that seals a stored record's secret, if it has one.
fn sealing_key(record: &[u8]) -> Result<Option<KeyId>, DecodeError> {
    Ok(CustomerRecord::from_bytes(record)?
        .sealed_secret()
        .map(SealedSecret::key_id))
}
