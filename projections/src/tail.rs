//! One read of the log's tail for every projector of a process.
//!
//! Every projector follows the whole log, and when they are caught up they all wake on
//! the same append and ask for the same page. [`SharedTail`] wraps the event store
//! they read: it keeps the latest events read (a contiguous run of the log, at most
//! [`TAIL_EVENTS`]) and answers a page that starts inside that run from memory; a
//! page after its end is read once, by whichever projector asks first, and the
//! projectors that asked meanwhile take that read's answer. A projector further behind
//! (catching up, or after a rebuild) reads the store as before.
//!
//! The run stays exact because the global log is gap-free: once an event is readable,
//! nothing can appear before it (ADR 01), so a run read once never changes.
//!
//! Personal data: events come out of the store opened by the vault. When the run takes
//! in a `MemberForgotten`, every event before it is dropped, so no forgotten member's
//! opened fields stay in memory; a projector still behind them reads the store, which
//! opens them as forgotten.

use crate::events::decode_of;
use async_trait::async_trait;
use futures::stream::BoxStream;
use gather_domain::member::{Member, MemberEvent};
use gather_store::{
    AppendMeta, AppendResult, Capabilities, Checkpoint, EventStore, LogFilter, RecordedEvent, Snapshot, StoreError,
    StreamAppend, Vault,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The most events the shared tail keeps.
pub const TAIL_EVENTS: usize = 4_096;

/// An event store whose unfiltered log pages near the tail are read once for all readers.
pub struct SharedTail {
    inner: Arc<dyn EventStore>,
    run: Mutex<Run>,
    /// Held while the tail is read from the store (one read at a time).
    reading: tokio::sync::Mutex<()>,
}

/// A contiguous run of the log: every event in `(from, to]`, in order.
struct Run {
    events: VecDeque<RecordedEvent>,
    from: Checkpoint,
    to: Checkpoint,
    /// How many tail reads have begun.
    reads: u64,
    /// The number of the latest read that answered (a reader that finds one answered
    /// that began after it looked takes that answer instead of reading again).
    answered: u64,
    /// Whether `from` and `to` mean anything yet (set by the first tail read).
    started: bool,
}

impl Run {
    /// Up to `limit` events after `after`, if `after` lies inside the run (None otherwise).
    fn page(&self, after: Checkpoint, limit: usize) -> Option<Vec<RecordedEvent>> {
        if !self.started || after < self.from || after > self.to {
            return None;
        }
        let start = self.events.partition_point(|e| e.checkpoint() <= after);
        Some(self.events.iter().skip(start).take(limit).cloned().collect())
    }

    /// Adds events read after `to`, drops what came before a forget, keeps the newest.
    fn extend(&mut self, page: &[RecordedEvent]) {
        for e in page {
            if is_forget(e) {
                self.events.clear();
                self.from = self.to;
            }
            self.events.push_back(e.clone());
            self.to = e.checkpoint();
        }
        while self.events.len() > TAIL_EVENTS {
            if let Some(e) = self.events.pop_front() {
                self.from = e.checkpoint();
            }
        }
    }
}

fn is_forget(e: &RecordedEvent) -> bool {
    matches!(decode_of::<Member>(e), Ok(Some((_, MemberEvent::MemberForgotten { .. }))))
}

impl SharedTail {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn EventStore>) -> Self {
        let run = Run {
            events: VecDeque::new(),
            from: Checkpoint::START,
            to: Checkpoint::START,
            reads: 0,
            answered: 0,
            started: false,
        };
        SharedTail { inner, run: Mutex::new(run), reading: tokio::sync::Mutex::new(()) }
    }

    /// How many times the tail was read from the store (pages answered from memory, or
    /// read by a reader behind the run, are not counted).
    pub fn tail_reads(&self) -> u64 {
        self.run().reads
    }

    /// Whether a page after `after` would be answered from memory.
    pub fn holds(&self, after: Checkpoint) -> bool {
        self.run().page(after, 1).is_some_and(|p| !p.is_empty())
    }

    fn run(&self) -> std::sync::MutexGuard<'_, Run> {
        // The run is only ever left consistent (no await, no panic while held).
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A page of the unfiltered log after `after`.
    async fn tail_page(&self, after: Checkpoint, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let want = limit.clamp(1, gather_store::LOG_PAGE) as usize;
        let seen = {
            let run = self.run();
            match run.page(after, want) {
                // Inside the run, with something to hand out.
                Some(page) if !page.is_empty() => return Ok(page),
                // At the run's end (or before the first read): read the tail (below).
                Some(_) => Some(run.reads),
                None if !run.started => Some(run.reads),
                // Before the run (behind) or after it: read the store alone.
                None => None,
            }
        };
        let Some(seen) = seen else { return self.inner.read_log_page(after, &LogFilter::all(), limit).await };
        let _reading = self.reading.lock().await;
        {
            let run = self.run();
            // A read that began after this call looked has finished: take its answer.
            if run.answered > seen
                && let Some(page) = run.page(after, want)
            {
                return Ok(page);
            }
        }
        let (start, number) = {
            let mut run = self.run();
            run.reads += 1;
            if !run.started || run.to != after {
                // The first read, or the run moved on without this reader: begin a
                // new run where this reader stands.
                let (reads, answered) = (run.reads, run.answered);
                *run = Run { events: VecDeque::new(), from: after, to: after, reads, answered, started: true };
            }
            (run.to, run.reads)
        };
        let page =
            self.inner.read_log_page(start, &LogFilter::all(), want.max(gather_store::PAGE as usize) as i64).await?;
        let mut run = self.run();
        if run.to == start {
            run.extend(&page);
        }
        run.answered = number;
        Ok(page.into_iter().take(want).collect())
    }
}

#[async_trait]
impl EventStore for SharedTail {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn append(&self, meta: &AppendMeta, appends: Vec<StreamAppend>) -> Result<AppendResult, StoreError> {
        self.inner.append(meta, appends).await
    }

    async fn append_chain(&self, chain: Vec<(AppendMeta, Vec<StreamAppend>)>) -> Vec<Result<AppendResult, StoreError>> {
        self.inner.append_chain(chain).await
    }

    async fn read_stream_page(
        &self,
        stream: &str,
        from: i64,
        backward: bool,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream_page(stream, from, backward, limit).await
    }

    async fn read_log_page(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if filter.categories.is_empty() && filter.event_types.is_empty() {
            self.tail_page(after, limit).await
        } else {
            self.inner.read_log_page(after, filter, limit).await
        }
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.inner.head().await
    }

    async fn checkpoint_of(&self, position: i64) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.checkpoint_of(position).await
    }

    async fn is_committed(&self, position: i64) -> Result<bool, StoreError> {
        self.inner.is_committed(position).await
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<i64>, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(stream).await
    }

    async fn save_snapshot(&self, stream: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(stream, snapshot).await
    }

    fn wake(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.wake()
    }

    async fn recorded(&self, command_id: Uuid) -> Result<Option<AppendResult>, StoreError> {
        self.inner.recorded(command_id).await
    }

    fn vault(&self) -> Option<&Arc<Vault>> {
        self.inner.vault()
    }

    fn read_stream(&self, stream: &str, from: i64) -> BoxStream<'_, Result<RecordedEvent, StoreError>> {
        self.inner.read_stream(stream, from)
    }

    fn read_stream_backward(&self, stream: &str) -> BoxStream<'_, Result<RecordedEvent, StoreError>> {
        self.inner.read_stream_backward(stream)
    }

    fn read_log(&self, after: Checkpoint, filter: LogFilter) -> BoxStream<'_, Result<RecordedEvent, StoreError>> {
        self.inner.read_log(after, filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gather_store::ExpectedVersion;
    use gather_store::codec::encode;
    use gather_store::db::Db;
    use gather_store::sqlite::SqliteStore;

    async fn store() -> Arc<dyn EventStore> {
        let path = std::env::temp_dir().join(format!("gather-tail-{}.db", Uuid::now_v7().simple()));
        let db = Db::connect(&format!("sqlite://{}", path.display())).await.expect("scratch database");
        db.migrate().await.expect("migrations");
        let Db::Sqlite { writer, reader } = db else { unreachable!("a sqlite url") };
        Arc::new(SqliteStore::new(writer, reader))
    }

    async fn append(store: &dyn EventStore, member: Uuid, event: MemberEvent) -> Checkpoint {
        let append = StreamAppend {
            stream: format!("member-{member}"),
            expected: ExpectedVersion::Any,
            events: vec![encode(&event).expect("encodes")],
        };
        let r = store.append(&AppendMeta::new(Uuid::now_v7(), None), vec![append]).await.expect("appends");
        store.checkpoint_of(r.streams[0].last_position).await.expect("reads").expect("readable")
    }

    fn favourite() -> MemberEvent {
        MemberEvent::ActivityFavourited { activity_id: Uuid::now_v7() }
    }

    async fn direct(store: &dyn EventStore, after: Checkpoint) -> Vec<Uuid> {
        let page = store.read_log_page(after, &LogFilter::all(), 500).await.expect("reads");
        page.iter().map(|e| e.event_id).collect()
    }

    async fn shared(tail: &SharedTail, after: Checkpoint) -> Vec<Uuid> {
        let page = tail.read_log_page(after, &LogFilter::all(), 500).await.expect("reads");
        page.iter().map(|e| e.event_id).collect()
    }

    #[tokio::test]
    async fn readers_caught_up_read_a_new_page_once_and_see_what_the_store_holds() {
        let inner = store().await;
        let tail = SharedTail::new(inner.clone());
        let member = Uuid::now_v7();
        let mut marks = vec![Checkpoint::START];
        for _ in 0..3 {
            marks.push(append(inner.as_ref(), member, favourite()).await);
        }
        assert_eq!(shared(&tail, Checkpoint::START).await, direct(inner.as_ref(), Checkpoint::START).await);
        assert_eq!(tail.tail_reads(), 1);
        // Every later reader is answered from memory, from wherever it stands in the run.
        for at in &marks[..marks.len() - 1] {
            assert_eq!(shared(&tail, *at).await, direct(inner.as_ref(), *at).await, "after {at}");
        }
        assert_eq!(tail.tail_reads(), 1, "pages inside the run come from memory");
        // At the end: one read of the new event; the next reader there takes it from memory.
        let end = *marks.last().expect("marks");
        marks.push(append(inner.as_ref(), member, favourite()).await);
        let once = shared(&tail, end).await;
        assert_eq!(once.len(), 1);
        assert_eq!(shared(&tail, end).await, once);
        assert_eq!(tail.tail_reads(), 2);
        // Concurrent readers at the end: everyone gets the event, in at most two reads.
        let end = *marks.last().expect("marks");
        append(inner.as_ref(), member, favourite()).await;
        let tail = Arc::new(tail);
        let readers: Vec<_> = (0..11)
            .map(|_| {
                let tail = tail.clone();
                tokio::spawn(async move { shared(&tail, end).await })
            })
            .collect();
        let expected = direct(inner.as_ref(), end).await;
        for r in readers {
            assert_eq!(r.await.expect("reader"), expected);
        }
        assert!(tail.tail_reads() <= 4, "{} tail reads for 11 readers", tail.tail_reads());
    }

    #[tokio::test]
    async fn a_forget_drops_every_event_before_it_from_memory() {
        let inner = store().await;
        let tail = SharedTail::new(inner.clone());
        let member = Uuid::now_v7();
        let first = append(inner.as_ref(), member, favourite()).await;
        let before = append(inner.as_ref(), member, favourite()).await;
        append(inner.as_ref(), member, MemberEvent::MemberForgotten { member_id: member }).await;
        append(inner.as_ref(), member, favourite()).await;
        assert_eq!(shared(&tail, Checkpoint::START).await.len(), 4);
        assert!(!tail.holds(Checkpoint::START), "the events before the forget are not kept");
        assert!(!tail.holds(first));
        assert!(tail.holds(before), "the forget and what follows it are kept");
        // A reader behind the run still reads everything, from the store.
        assert_eq!(shared(&tail, Checkpoint::START).await, direct(inner.as_ref(), Checkpoint::START).await);
        assert_eq!(tail.tail_reads(), 1);
    }

    #[tokio::test]
    async fn filtered_reads_go_to_the_store() {
        let inner = store().await;
        let tail = SharedTail::new(inner.clone());
        append(inner.as_ref(), Uuid::now_v7(), favourite()).await;
        let filter = LogFilter::categories(&["activity"]);
        assert!(tail.read_log_page(Checkpoint::START, &filter, 10).await.expect("reads").is_empty());
        assert_eq!(tail.tail_reads(), 0);
        assert!(!tail.holds(Checkpoint::START));
    }
}
