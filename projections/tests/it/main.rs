//! Given-when-then specs for the projections: given these events in the log, when the
//! projections have applied them, then this row / this query answer. Each spec runs on
//! SQLite and on a fresh Postgres database (127.0.0.1:5432, or GATHER_TEST_PG).

mod specs;
