//! The in-memory store passes the conformance suite.

mfa_store_tests::conformance_suite!(async { mfa_core::MemoryStore::new() });
