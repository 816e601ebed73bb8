//! Gather's write side.
//!
//! Reading order:
//! - [`db`]: the database handle for both profiles (Postgres, SQLite) and migrations;
//! - [`store`]: the event store port ([`store::EventStore`]) and its backends;
//! - [`codec`]: domain events to stored events and back, with upcasting;
//! - [`handler`]: load → decide → append, with retries on conflicts;
//! - [`scheduler`]: durable timers fired once as system commands.

pub mod codec;
pub mod db;
pub mod handler;
pub mod ids;
pub mod scheduler;
pub mod store;
pub mod uniqueness;

pub use codec::Upcasters;
pub use db::Db;
pub use handler::{CommandError, CommandHandler, CommandMeta, CommandOutcome};
pub use store::{
    AppendResult, Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, RecordedEvent, StoreError, StreamAppend,
};
