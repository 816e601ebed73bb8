//! Command-side integration tests on real backends: the handler's fallback for stores
//! without multi-stream appends, and the durable scheduler.

mod fallback;
mod scheduler;
mod support;
