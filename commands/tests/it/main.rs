//! Command-side integration tests on real backends: the handler's fallback for stores
//! without multi-stream appends, and the durable scheduler.

mod fallback;
mod scheduler;
// The store's test support (fresh databases, every_backend), shared rather than copied.
#[allow(dead_code)]
#[path = "../../../store/tests/it/support.rs"]
mod support;
