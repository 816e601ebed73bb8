//! Event store integration tests: one contract suite run against every backend
//! (SQLite in a temp file, Postgres in a fresh database), Postgres-only interleaving and
//! stress tests for the gap-free global log, the holes a review found (lock order,
//! deadlocks, moving a store between clusters), privileges, and with the `kurrentdb`
//! feature the KurrentDB backend's tests (against `GATHER_KURRENTDB_URL` only when set).

mod contract;
mod holes;
mod interleaving;
#[cfg(feature = "kurrentdb")]
mod kurrentdb;
mod privileges;
mod support;
mod vault;
