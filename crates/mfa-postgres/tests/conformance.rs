//! The PostgreSQL store passes the store conformance suite, each test in a schema of its own.

mod common;

mfa_store_tests::conformance_suite!(optional common::test_store("conformance"));
