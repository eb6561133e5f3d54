//! The SQLite store passes the store conformance suite, in memory and on files.

mod common;

mod in_memory {
    mfa_store_tests::conformance_suite!(async {
        mfa_sqlite::SqliteStore::open_in_memory().await.unwrap()
    });
}

/// On a fresh file per test, where WAL, file locks and the busy timeout are real.
mod on_file {
    use mfa_core::{
        CustomerId, KeyId, OrgId, OrgPolicy, Store,
        audit::{AuditExport, AuditQuery, Event, StoredEvent},
        machine::CustomerRecord,
        store::{CustomerKey, Encoded, OrgAndCustomer, Version, Versioned, Written},
    };
    use mfa_sqlite::{SqliteError, SqliteStore};

    use crate::common::TempDb;

    /// A store on a temporary file, removed when the test drops the store.
    struct FileStore {
        // Declared first, so the connection's thread is told to close before the files go.
        store: SqliteStore,
        _db: TempDb,
    }

    impl FileStore {
        async fn new() -> Self {
            let db = TempDb::new("conformance");
            let store = SqliteStore::open(db.path()).await.unwrap();
            Self { store, _db: db }
        }
    }

    impl Store for FileStore {
        type Error = SqliteError;

        async fn load_org(
            &self,
            org: &OrgId,
        ) -> Result<Option<Versioned<Encoded<OrgPolicy>>>, SqliteError> {
            self.store.load_org(org).await
        }

        async fn write_org(
            &self,
            org: &OrgId,
            expected: Option<Version>,
            policy: &OrgPolicy,
            events: &[Event],
        ) -> Result<Written, SqliteError> {
            self.store.write_org(org, expected, policy, events).await
        }

        async fn load_customer(
            &self,
            org: &OrgId,
            customer: &CustomerId,
        ) -> Result<Option<Versioned<Encoded<CustomerRecord>>>, SqliteError> {
            self.store.load_customer(org, customer).await
        }

        async fn load_org_and_customer(
            &self,
            org: &OrgId,
            customer: &CustomerId,
        ) -> Result<OrgAndCustomer, SqliteError> {
            self.store.load_org_and_customer(org, customer).await
        }

        async fn write_customer(
            &self,
            org: &OrgId,
            customer: &CustomerId,
            expected: Option<Version>,
            record: &CustomerRecord,
            events: &[Event],
        ) -> Result<Written, SqliteError> {
            self.store
                .write_customer(org, customer, expected, record, events)
                .await
        }

        async fn append_events(&self, events: &[Event]) -> Result<(), SqliteError> {
            self.store.append_events(events).await
        }

        async fn audit(
            &self,
            org: &OrgId,
            query: &AuditQuery,
        ) -> Result<Vec<StoredEvent>, SqliteError> {
            self.store.audit(org, query).await
        }

        async fn export_audit(
            &self,
            org: &OrgId,
            query: &AuditExport,
        ) -> Result<Vec<StoredEvent>, SqliteError> {
            self.store.export_audit(org, query).await
        }

        async fn sealed_under(
            &self,
            key: KeyId,
            after: Option<&CustomerKey>,
            limit: usize,
        ) -> Result<Vec<CustomerKey>, SqliteError> {
            self.store.sealed_under(key, after, limit).await
        }

        async fn count_sealed(&self) -> Result<Vec<(KeyId, u64)>, SqliteError> {
            self.store.count_sealed().await
        }
    }

    mfa_store_tests::conformance_suite!(FileStore::new());
}

/// On a current-thread runtime every call goes through the connection's own thread (elsewhere most
/// run inline, on the caller's): the same checks hold on that path.
mod queued {
    use mfa_sqlite::SqliteStore;

    macro_rules! on_current_thread {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "current_thread")]
            async fn $name() {
                mfa_store_tests::$name(SqliteStore::open_in_memory().await.unwrap()).await;
            }
        )*};
    }

    on_current_thread!(
        customer_writes_are_compare_and_swap,
        events_are_written_with_their_record_and_never_without,
        the_whole_story_through_the_service,
        racing_sign_ins_with_one_code_exactly_one_wins,
        racing_writers_on_one_version_exactly_one_wins,
        loading_both_agrees_with_loading_each,
    );
}
