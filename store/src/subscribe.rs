//! Catch-up-then-live subscriptions to the global log.
//!
//! A [`Subscription`] is pulled by its consumer, page by page, so a slow consumer
//! slows the reads (back-pressure) instead of filling memory. When it has caught up it
//! waits on the store's wake signal (in-process appends, Postgres LISTEN) with a slow
//! poll as the fallback.

use super::{Checkpoint, EventStore, LogFilter, RecordedEvent, StoreError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// How long a caught-up subscription waits before polling anyway.
const POLL: Duration = Duration::from_secs(1);

/// A position in the global log that yields every later event exactly once, in order.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    after: Checkpoint,
    filter: LogFilter,
    buffer: VecDeque<RecordedEvent>,
    page: i64,
}

/// Subscribes to the global log after `after` (use [`Checkpoint::START`] for all).
pub fn subscribe(store: Arc<dyn EventStore>, after: Checkpoint, filter: LogFilter) -> Subscription {
    Subscription { store, after, filter, buffer: VecDeque::new(), page: super::PAGE }
}

impl Subscription {
    /// The checkpoint of the last event handed out.
    pub fn checkpoint(&self) -> Checkpoint {
        self.after
    }

    /// Sets how many events one read fetches (default [`super::PAGE`]).
    pub fn with_page_size(mut self, page: i64) -> Self {
        self.page = page.max(1);
        self
    }

    /// Reads what is readable now, without waiting: up to `max` events (maybe none).
    pub async fn poll_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if self.buffer.is_empty() {
            let last = self.buffer.back().map(|e| e.checkpoint()).unwrap_or(self.after);
            let page = self.store.read_log_page(last, &self.filter, self.page).await?;
            self.buffer.extend(page);
        }
        let n = max.min(self.buffer.len());
        let batch: Vec<_> = self.buffer.drain(..n).collect();
        if let Some(e) = batch.last() {
            self.after = e.checkpoint();
        }
        Ok(batch)
    }

    /// Waits until at least one event is readable, then returns up to `max` of them.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut wake = self.store.wake();
        loop {
            wake.borrow_and_update();
            let batch = self.poll_batch(max).await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            if let Ok(Err(_)) = tokio::time::timeout(POLL, wake.changed()).await {
                tokio::time::sleep(POLL).await; // the store is gone; keep polling slowly
            }
        }
    }

    /// Waits for the next event.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        let mut batch = self.next_batch(1).await?;
        Ok(batch.remove(0))
    }
}
