//! The narrow storage interface every adapter (memory, SQLite, PostgreSQL) implements: for store
//! authors, and for hosts that name a store in a bound (`S: Store`).

use alloc::vec::Vec;
use core::future::Future;
use core::marker::PhantomData;

pub use crate::encoding::DecodeError;
#[cfg(feature = "std")]
pub use crate::memory::MemoryStore;
use crate::{
    CorruptRecord, CustomerId, CustomerRecord, Event, KeyId, OrgId, OrgPolicy, SealedSecret,
    StoredEvent, UnixTime,
};

/// The stored bytes of a `T` (a [`CustomerRecord`] or an [`OrgPolicy`]), as a store reads them
/// back: the store hands them over without reading them, and only this crate decodes them. So
/// whatever the store, bytes this version cannot read reach the [`Service`](crate::Service) as what
/// they are, corruption ([`ServiceError::Corrupt`](crate::ServiceError::Corrupt), naming whose
/// record it is), never as a store outage.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded<T> {
    bytes: Vec<u8>,
    of: PhantomData<fn() -> T>,
}

impl<T> Encoded<T> {
    /// The bytes a store read, as they were written ([`CustomerRecord::to_bytes`],
    /// [`OrgPolicy::to_bytes`]).
    #[must_use]
    pub const fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            of: PhantomData,
        }
    }

    /// The bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What a store hands back for a row it cannot read as it writes them: a value of another
    /// type where the bytes belong, or a version it never stores. It decodes as
    /// [`DecodeError::Corrupt`], so the [`Service`](crate::Service) answers it as corruption naming
    /// whose record it is, changes nothing and passes no one, as for bytes it cannot decode; the
    /// version handed back with it (whatever the row holds, or [`Version`]`(0)`) is never written
    /// over.
    #[must_use]
    pub const fn unreadable() -> Self {
        Self::new(Vec::new())
    }
}

/// The length only: the bytes hold sealed secrets and backup-code hashes.
impl<T> core::fmt::Debug for Encoded<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Encoded")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl Encoded<CustomerRecord> {
    /// The record these bytes hold.
    ///
    /// # Errors
    /// [`DecodeError`] for bytes this version did not write.
    pub fn decode(&self) -> Result<CustomerRecord, DecodeError> {
        CustomerRecord::from_bytes(&self.bytes)
    }
}

impl Encoded<OrgPolicy> {
    /// The policy these bytes hold.
    ///
    /// # Errors
    /// [`DecodeError`] for bytes this version did not write.
    pub fn decode(&self) -> Result<OrgPolicy, DecodeError> {
        OrgPolicy::from_bytes(&self.bytes)
    }
}

impl<T> Versioned<Encoded<T>> {
    /// The decoded value with its version.
    fn decoded(
        self,
        decode: impl FnOnce(&Encoded<T>) -> Result<T, DecodeError>,
    ) -> Result<Versioned<T>, DecodeError> {
        Ok(Versioned {
            value: decode(&self.value)?,
            version: self.version,
        })
    }
}

impl Versioned<Encoded<CustomerRecord>> {
    /// The record with its version.
    ///
    /// # Errors
    /// [`DecodeError`] for bytes this version did not write.
    pub fn decode(self) -> Result<Versioned<CustomerRecord>, DecodeError> {
        self.decoded(Encoded::<CustomerRecord>::decode)
    }
}

impl Versioned<Encoded<OrgPolicy>> {
    /// The policy with its version.
    ///
    /// # Errors
    /// [`DecodeError`] for bytes this version did not write.
    pub fn decode(self) -> Result<Versioned<OrgPolicy>, DecodeError> {
        self.decoded(Encoded::<OrgPolicy>::decode)
    }
}

/// A record's version: it changes with every successful write, and a write names the version it
/// expects to replace. That compare-and-swap is what lets many service nodes share one store without
/// a code ever being accepted twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

/// A record with the version it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The record.
    pub value: T,
    /// Its version.
    pub version: Version,
}

/// What [`Store::load_org_and_customer`] reads: the organisation's policy and the customer's record,
/// each `None` if it was never written.
pub type OrgAndCustomer = (
    Option<Versioned<Encoded<OrgPolicy>>>,
    Option<Versioned<Encoded<CustomerRecord>>>,
);

/// How a conditional write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
#[allow(
    clippy::exhaustive_enums,
    reason = "a compare-and-swap stores or conflicts; a store's failure is its error"
)]
pub enum Written {
    /// The record and its events were stored; this is the new version.
    Stored(Version),
    /// The record changed (or appeared, or vanished) since it was read: nothing was stored.
    Conflict,
}

/// Which audit events to read. The default reads the newest 100 of the whole organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this customer's events (all of the organisation's when `None`).
    pub customer: Option<CustomerId>,
    /// Only events with a sequence number below this (for paging backwards), if set.
    pub before_seq: Option<u64>,
    /// At most this many events.
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            customer: None,
            before_seq: None,
            limit: 100,
        }
    }
}

/// Which audit events to export, oldest first: the organisation's (or one customer's) from a time
/// on, a page at a time. The default reads the oldest 1,000 of the whole organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditExport {
    /// Only this customer's events (all of the organisation's when `None`).
    pub customer: Option<CustomerId>,
    /// Only events that happened at or after this time, if set.
    pub since: Option<UnixTime>,
    /// Only events with a sequence number above this (the last of the previous page), if set.
    pub after_seq: Option<u64>,
    /// At most this many events.
    pub limit: usize,
}

impl Default for AuditExport {
    fn default() -> Self {
        Self {
            customer: None,
            since: None,
            after_seq: None,
            limit: 1000,
        }
    }
}

/// A customer, named in full: its organisation and its id.
pub type CustomerKey = (OrgId, CustomerId);

/// Storage for organisation policies, customer records and the audit log.
///
/// What a store must do is checked, not only written here: the store kit
/// [`mfa-store-tests`](https://docs.rs/mfa-store-tests) runs the conformance suite, separate
/// processes racing and killed mid-stream, outages, the plaintext-at-rest search and rows edited
/// by hand against any implementation; every store of this workspace runs it from its own tests,
/// and a new one should too.
///
/// # Atomicity
///
/// The write methods are compare-and-swap: given the version a record was read at (or `None` for a
/// record that must not exist yet), a write stores the new record **and** its audit events together,
/// in one transaction, only if the stored version is still that version, and then gives the record a
/// new version. For a given expected version a write succeeds at most once, even when many writers on
/// many nodes race; the losers get [`Written::Conflict`] and nothing of theirs is stored. Events are
/// never stored without their record, nor a record without its events. A store that cannot promise
/// this must not implement the trait: it is what makes every code single-use.
///
/// The details an SQL adapter needs:
///
/// - A version is never reused for the same key, even after a row is deleted by hand. An expected
///   version the store cannot even represent (say `u64::MAX` in a signed column) is a
///   [`Written::Conflict`], as is an expected version for a record that does not exist.
/// - A write that loses to a concurrent transaction (SQLite `SQLITE_BUSY` after its timeout,
///   PostgreSQL serialization failures and deadlocks) has rolled back, so the adapter reports it as
///   [`Written::Conflict`] and the service retries; it must never report success for it.
/// - An `Err` from a write may hide a commit that happened (the connection dropped after `COMMIT`):
///   callers treat it as "unknown", never as "not written".
/// - Loads are linearizable: they see every write that completed before them (no replicas, no
///   caches), or a policy switched on could be missed.
/// - Sequence numbers increase with every event appended; [`AuditQuery::limit`] may be clamped to
///   what the store can represent.
/// - Sequence numbers may become visible out of order where they are assigned at insert and
///   concurrent transactions commit in another order (PostgreSQL): an event can appear after
///   events with higher numbers, for as long as its transaction runs (one statement in
///   `mfa-postgres`). Paging newest first with [`AuditQuery::before_seq`] is exact for events
///   committed before the first page was read; a reader tailing the log should re-read a short
///   recent window, not only ask for numbers above the highest it has seen.
///
/// Records and events are opaque to the store: it keeps [`CustomerRecord::to_bytes`],
/// [`OrgPolicy::to_bytes`] and [`Event::to_bytes`], and may index the ids, times and
/// [`Event::kind_name`] they come with. It hands records and policies back as [`Encoded`] bytes,
/// without decoding them: telling corruption from an outage is this crate's job, not the store's.
/// A row the store cannot read as it writes them (a damaged version or a value of another type)
/// is handed back as [`Encoded::unreadable`], never as a store error: it is corruption of that
/// record, not an outage.
pub trait Store: Send + Sync {
    /// The store's own failure (I/O, connection, corruption), with its source chain intact.
    type Error: core::error::Error + Send + Sync + 'static;

    /// The organisation's policy and its version, or `None` if it was never written.
    fn load_org(
        &self,
        org: &OrgId,
    ) -> impl Future<Output = Result<Option<Versioned<Encoded<OrgPolicy>>>, Self::Error>> + Send;

    /// Stores `policy` and `events` if the policy is still at `expected` (see the trait's atomicity
    /// contract).
    fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> impl Future<Output = Result<Written, Self::Error>> + Send;

    /// The customer's record and its version, or `None` if it was never written.
    fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> impl Future<Output = Result<Option<Versioned<Encoded<CustomerRecord>>>, Self::Error>> + Send;

    /// The organisation's policy and the customer's record, each with its version: what every
    /// step of a customer's begins with.
    ///
    /// The default reads them with [`Store::load_org`] and [`Store::load_customer`] at once. A
    /// networked store should answer both with one query on one connection: a sign-in then costs
    /// one round trip to read and one to write.
    fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> impl Future<Output = Result<OrgAndCustomer, Self::Error>> + Send {
        async move {
            let (policy, record) =
                futures_util::future::join(self.load_org(org), self.load_customer(org, customer))
                    .await;
            Ok((policy?, record?))
        }
    }

    /// Stores `record` and `events` if the record is still at `expected` (see the trait's atomicity
    /// contract).
    fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> impl Future<Output = Result<Written, Self::Error>> + Send;

    /// Appends audit events that come with no change of record (an attempt refused while locked out,
    /// or text that was not a code). Atomic: all of them or none.
    fn append_events(
        &self,
        events: &[Event],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The organisation's audit events matching `query`, newest first.
    fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Self::Error>> + Send;

    /// The organisation's audit events matching `query`, oldest first: for exports, which read a
    /// page at a time, each after the last sequence number of the one before.
    fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Self::Error>> + Send;

    /// For key rotation: up to `limit` customers, of every organisation, whose secret (configured
    /// or pending) is sealed under `key`, after `after`, in the store's order of (organisation,
    /// customer) pairs: the same order on every call (byte order for the memory and SQLite stores,
    /// the primary key's collation on PostgreSQL), so that passing the last pair of one page as
    /// `after` of the next neither skips nor repeats a customer.
    fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<CustomerKey>, Self::Error>> + Send;

    /// For key rotation: how many stored secrets each key seals, by key id, smallest first (keys
    /// that seal none are left out).
    fn count_sealed(&self) -> impl Future<Output = Result<Vec<(KeyId, u64)>, Self::Error>> + Send;
}

/// A shared store is a store: several services (or a service and an admin tool) can use one.
impl<S: Store + ?Sized> Store for alloc::sync::Arc<S> {
    type Error = S::Error;

    fn load_org(
        &self,
        org: &OrgId,
    ) -> impl Future<Output = Result<Option<Versioned<Encoded<OrgPolicy>>>, Self::Error>> + Send
    {
        (**self).load_org(org)
    }

    fn write_org(
        &self,
        org: &OrgId,
        expected: Option<Version>,
        policy: &OrgPolicy,
        events: &[Event],
    ) -> impl Future<Output = Result<Written, Self::Error>> + Send {
        (**self).write_org(org, expected, policy, events)
    }

    fn load_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> impl Future<Output = Result<Option<Versioned<Encoded<CustomerRecord>>>, Self::Error>> + Send
    {
        (**self).load_customer(org, customer)
    }

    fn load_org_and_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
    ) -> impl Future<Output = Result<OrgAndCustomer, Self::Error>> + Send {
        (**self).load_org_and_customer(org, customer)
    }

    fn write_customer(
        &self,
        org: &OrgId,
        customer: &CustomerId,
        expected: Option<Version>,
        record: &CustomerRecord,
        events: &[Event],
    ) -> impl Future<Output = Result<Written, Self::Error>> + Send {
        (**self).write_customer(org, customer, expected, record, events)
    }

    fn audit(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Self::Error>> + Send {
        (**self).audit(org, query)
    }

    fn append_events(
        &self,
        events: &[Event],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).append_events(events)
    }

    fn export_audit(
        &self,
        org: &OrgId,
        query: &AuditExport,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Self::Error>> + Send {
        (**self).export_audit(org, query)
    }

    fn sealed_under(
        &self,
        key: KeyId,
        after: Option<&CustomerKey>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<CustomerKey>, Self::Error>> + Send {
        (**self).sealed_under(key, after, limit)
    }

    fn count_sealed(&self) -> impl Future<Output = Result<Vec<(KeyId, u64)>, Self::Error>> + Send {
        (**self).count_sealed()
    }
}

/// The most customers [`sealed_sample`] looks at, readable or not.
pub const MAX_SAMPLED: usize = 100;

/// Secrets sealed under one key ([`sealed_sample`]).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SealedSample {
    /// Secrets that can be read, with whose they are, in the store's order.
    pub readable: Vec<(CustomerKey, SealedSecret)>,
    /// Records passed over because they cannot be read.
    pub unreadable: Vec<CorruptRecord>,
}

/// Up to `wanted` secrets sealed under `key` in `store` that can be read, with whose they are, in
/// the store's order of customers: what a start-up check tries to open with a keyring before
/// serving (a wrong key opens none of them), and what a rotation checks a new key against.
/// Records that cannot be read say nothing about the key: they are passed over and named in
/// [`SealedSample::unreadable`], and the walk goes on to the next, looking at no more than
/// [`MAX_SAMPLED`] customers in all.
///
/// # Errors
/// The store's.
pub async fn sealed_sample<S: Store + ?Sized>(
    store: &S,
    key: KeyId,
    wanted: usize,
) -> Result<SealedSample, S::Error> {
    let mut sample = SealedSample::default();
    let mut after = None;
    let mut looked = 0;
    while sample.readable.len() < wanted && looked < MAX_SAMPLED {
        let page = store
            .sealed_under(
                key,
                after.as_ref(),
                wanted.min(MAX_SAMPLED.saturating_sub(looked)),
            )
            .await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        looked = looked.saturating_add(page.len());
        for (org, customer) in page {
            match store
                .load_customer(&org, &customer)
                .await?
                .map(|stored| stored.value.decode())
            {
                // Gone since it was listed (another node at work).
                None => {}
                // Resealed under another key since it was listed: not this key's.
                Some(Ok(record)) => {
                    if let Some(sealed) = record.sealed_secret().filter(|s| s.key_id() == key) {
                        sample.readable.push(((org, customer), sealed.clone()));
                    }
                }
                Some(Err(error)) => sample.unreadable.push(CorruptRecord {
                    org,
                    customer: Some(customer),
                    error,
                }),
            }
            if sample.readable.len() == wanted {
                break;
            }
        }
        after = Some(last);
    }
    Ok(sample)
}
