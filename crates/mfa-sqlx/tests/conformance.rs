//! Both sqlx stores pass the store conformance suite: SQLite on a file, PostgreSQL in a schema of
//! the test database.

mod common;

mod sqlite {
    mfa_store_tests::conformance_suite!(crate::common::sqlite_store("sqlx-conformance"));
}

mod postgres {
    mfa_store_tests::conformance_suite!(optional crate::common::pg_store("sqlx_conformance"));
}
