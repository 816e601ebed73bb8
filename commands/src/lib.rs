//! Gather's write side.
//!
//! The event store, its codec and the database handle live in `gather-store`, re-exported
//! here as [`store`], [`codec`] and [`db`].
//!
//! Reading order:
//! - [`handler`]: load → decide → append, with retries on conflicts;
//! - [`scheduler`]: durable timers fired once as system commands.

pub mod handler;
pub mod ids;
pub mod scheduler;
pub mod uniqueness;

pub use gather_store as store;
pub use gather_store::{Db, Upcasters, codec, db, on_db, on_db_read, on_tx};
pub use handler::{CommandError, CommandHandler, CommandMeta, CommandOutcome};
pub use store::{
    AppendResult, Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, RecordedEvent, StoreError, StreamAppend,
};
