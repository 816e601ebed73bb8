//! Event store integration tests: one contract suite run against every backend
//! (SQLite in a temp file, Postgres in a fresh database), plus Postgres-only
//! interleaving and stress tests for the gap-free global log; with the `kurrentdb` feature,
//! the KurrentDB backend's tests (against `GATHER_KURRENTDB_URL` only when it is set).

mod contract;
mod fallback;
mod holes;
mod interleaving;
#[cfg(feature = "kurrentdb")]
mod kurrentdb;
mod privileges;
mod scheduler;
mod support;
