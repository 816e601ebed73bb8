//! Event store integration tests: one contract suite run against every backend
//! (SQLite in a temp file, Postgres in a fresh database), plus Postgres-only
//! interleaving and stress tests for the gap-free global log.

mod contract;
mod interleaving;
mod support;
