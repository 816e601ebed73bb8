//! `gather-store`: Gather's event store — the port ([`EventStore`]), its backends, the
//! codec with its upcasters, catch-up subscriptions, and the database handle with the
//! migrations. The command handler (`gather-commands`) and the projectors
//! (`gather-projections`) build on it.
//!
//! The event store port: one object-safe async trait that every backend implements.
//!
//! - [`postgres`]: production; the global order is `(commit_id, position)` where
//!   `commit_id` is the writing transaction's id, read only below the oldest running
//!   transaction, so a late commit is never skipped (docs/adr/01-gap-free-global-log.md);
//! - [`sqlite`]: embedded default; one writer, so commit order is position order.
//!
//! Reads are paged streams with bounded memory; [`subscribe`] turns the global log into
//! a catch-up-then-live stream that waits on the backend's wake signal.

pub mod codec;
pub mod db;
#[cfg(feature = "kurrentdb")]
pub mod kurrentdb;
pub mod postgres;
pub mod sqlite;
mod subscribe;
pub mod vault;

pub use codec::Upcasters;
pub use db::Db;
pub use subscribe::{Subscription, subscribe};
pub use vault::{Kek, Sealed, Vault};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use uuid::Uuid;

/// SQL both backends run as is (`$n` placeholders work on both).
pub(crate) mod sql {
    /// Every column of an `events` row, in [`crate::RecordedEvent`]'s order.
    pub const COLUMNS: &str = "position, commit_id, stream, version, event_id, event_type, schema_version, data, \
                               command_id, correlation_id, causation_id, actor, recorded_at";

    /// One page of a stream: `$1` stream, `$2` from version, `$3` limit.
    pub fn stream_page(backward: bool) -> String {
        if backward {
            format!("SELECT {COLUMNS} FROM events WHERE stream = $1 AND version <= $2 ORDER BY version DESC LIMIT $3")
        } else {
            format!("SELECT {COLUMNS} FROM events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3")
        }
    }

    /// A stream's snapshot: `$1` stream.
    pub const LOAD_SNAPSHOT: &str = "SELECT version, state_version, state FROM snapshots WHERE stream = $1";

    /// Saves a snapshot unless a newer one of the same state version is stored:
    /// `$1` stream, `$2` version, `$3` state version, `$4` state, `$5` taken at.
    pub const SAVE_SNAPSHOT: &str = "INSERT INTO snapshots (stream, version, state_version, state, taken_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (stream) DO UPDATE SET version = excluded.version, \
         state_version = excluded.state_version, state = excluded.state, taken_at = excluded.taken_at \
         WHERE snapshots.version < excluded.version OR snapshots.state_version <> excluded.state_version";
}

/// How many rows one page of a stream read holds.
pub const PAGE: i64 = 500;
/// How many rows one page of a global log read holds.
pub const LOG_PAGE: i64 = 2_000;

/// What the caller believes about a stream's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist, at any version.
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(i64),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` (None = no stream) satisfies this expectation.
    pub fn accepts(self, actual: Option<i64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique across the store; the same id twice is refused.
    pub event_id: Uuid,
    /// The stable type name.
    pub event_type: String,
    /// The schema version of `data`.
    pub schema_version: i32,
    /// The payload.
    pub data: Value,
}

/// Events for one stream within an append.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    /// `{category}-{uuid}`.
    pub stream: String,
    /// The optimistic-concurrency expectation.
    pub expected: ExpectedVersion,
    /// At least one event, in order.
    pub events: Vec<NewEvent>,
}

/// Metadata shared by every event of one append (one command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMeta {
    /// The command's id: a repeat returns the first result and writes nothing.
    pub command_id: Uuid,
    /// Ties together everything one request caused.
    pub correlation_id: Uuid,
    /// The event that caused this command (process managers), if any.
    pub causation_id: Option<Uuid>,
    /// The member (or system) that issued the command.
    pub actor: Option<Uuid>,
}

impl AppendMeta {
    /// Metadata for a command with no correlation or causation of its own.
    pub fn new(command_id: Uuid, actor: Option<Uuid>) -> Self {
        AppendMeta { command_id, correlation_id: command_id, causation_id: None, actor }
    }
}

/// Where one stream's events landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamResult {
    /// The stream.
    pub stream: String,
    /// Global position of the first event written.
    pub first_position: i64,
    /// Global position of the last event written.
    pub last_position: i64,
    /// The stream's version after the append.
    pub version: i64,
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// True when the command id had been appended before: nothing was written and
    /// `streams` is the first result.
    pub duplicate: bool,
    /// One entry per stream, in the order of the call.
    pub streams: Vec<StreamResult>,
}

impl AppendResult {
    /// The highest global position written.
    pub fn last_position(&self) -> i64 {
        self.streams.iter().map(|s| s.last_position).max().unwrap_or(0)
    }
}

/// An event as stored, with its metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    /// Global position (unique, increasing in insert order).
    pub position: i64,
    /// The order key before `position` (Postgres: the writing transaction; SQLite: 0).
    pub commit_id: i64,
    /// The stream.
    pub stream: String,
    /// The version within the stream (from 0, no gaps).
    pub version: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// The stable type name.
    pub event_type: String,
    /// The schema version the payload was written with.
    pub schema_version: i32,
    /// The payload as written.
    pub data: Value,
    /// The command that appended it.
    pub command_id: Uuid,
    /// The request or flow it belongs to.
    pub correlation_id: Uuid,
    /// The event that caused it, if any.
    pub causation_id: Option<Uuid>,
    /// Who issued the command.
    pub actor: Option<Uuid>,
    /// When it was appended.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// This event's place in the global order.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { commit_id: self.commit_id, position: self.position }
    }

    /// The stream's category (the part before the first dash).
    pub fn category(&self) -> &str {
        category_of(&self.stream)
    }
}

/// A place in the global order: everything up to and including it has been seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The order key before `position`.
    pub commit_id: i64,
    /// The global position.
    pub position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint { commit_id: -1, position: 0 };
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.commit_id, self.position)
    }
}

/// Which events of the global log to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only these categories (empty = all).
    pub categories: Vec<String>,
    /// Only these event types (empty = all).
    pub event_types: Vec<String>,
}

impl LogFilter {
    /// Every event.
    pub fn all() -> Self {
        LogFilter::default()
    }

    /// Only the given categories.
    pub fn categories(cats: &[&str]) -> Self {
        LogFilter { categories: cats.iter().map(|c| c.to_string()).collect(), event_types: vec![] }
    }
}

/// A saved state of a stream at a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stream's version the state includes.
    pub version: i64,
    /// The shape version of the state; a different one means "ignore me".
    pub state_version: i32,
    /// The serialized state.
    pub state: Value,
}

/// What a backend can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Appends to several streams in one atomic call. Without it callers reserve
    /// first and compensate (ARCHITECTURE.md decision 5).
    pub multi_stream_append: bool,
}

/// Event store errors; each says how to handle it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the expected version: reload, decide again, retry.
    #[error("wrong expected version on {stream}: expected {expected:?}, actual {actual:?}")]
    Conflict {
        /// The stream that moved on.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's actual version (None = no stream).
        actual: Option<i64>,
    },
    /// A concurrent append of the same command id won (internal: the store answers
    /// with the first result instead).
    #[error("the command was appended concurrently")]
    DuplicateCommand,
    /// An event id was appended before: a caller bug, do not retry.
    #[error("an event with this id was already appended")]
    DuplicateEvent,
    /// The request itself is malformed (empty append, bad stream name): fix the caller.
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The store is shutting down and takes no more appends: retry on another process.
    #[error("the event store is shut down")]
    Shutdown,
    /// The append was handed over but its answer was lost (the committer stopped): its
    /// outcome is unknown; retry with the same command id, which is answered once.
    #[error("the append's answer was lost; retry with the same command id")]
    LostReply,
    /// The backend answered something the store cannot read (a bug or a schema
    /// mismatch): report it.
    #[error("the event store's answer is unreadable: {0}")]
    Unreadable(String),
    /// A stored event cannot be read into the current shape: stop and report; never skip it.
    #[error("cannot decode event {stream}@{version} ({event_type})")]
    Decode {
        /// The stream.
        stream: String,
        /// The version within it.
        version: i64,
        /// The stored type name.
        event_type: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A personal field is sealed with a key the key store never had (a key table lost
    /// or restored from another store): report it; never read it as forgotten.
    #[error("a personal field is sealed with key {0}, which the key store does not know")]
    UnknownKey(Uuid),
    /// The backend cannot do this (e.g. multi-stream append on KurrentDB): use the fallback.
    #[error("not supported by this backend: {0}")]
    Unsupported(&'static str),
    /// The database failed: retry later, or report.
    #[error("event store database error")]
    Database(#[source] sqlx::Error),
    /// A non-SQL backend's client or server failed (KurrentDB): retry later, or report.
    #[error("event store backend error: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

/// The category of a stream name (`activity-…` → `activity`).
pub fn category_of(stream: &str) -> &str {
    stream.split_once('-').map(|(c, _)| c).unwrap_or(stream)
}

/// Builds `{category}-{uuid}`.
pub fn stream_name(category: &str, id: Uuid) -> String {
    format!("{category}-{id}")
}

/// The refusal of a chain member whose predecessor was not appended.
pub(crate) fn chain_broken(appends: &[StreamAppend]) -> StoreError {
    match appends.first() {
        Some(a) => StoreError::Conflict { stream: a.stream.clone(), expected: a.expected, actual: None },
        None => StoreError::Invalid("nothing to append".into()),
    }
}

/// Checks an append before it reaches a backend.
pub(crate) fn validate(appends: &[StreamAppend]) -> Result<(), StoreError> {
    if appends.is_empty() {
        return Err(StoreError::Invalid("nothing to append".into()));
    }
    for a in appends {
        let cat = category_of(&a.stream);
        if cat.is_empty() || cat == a.stream || a.stream.len() > 200 {
            return Err(StoreError::Invalid(format!("stream name {:?} is not {{category}}-{{id}}", a.stream)));
        }
        if a.events.is_empty() {
            return Err(StoreError::Invalid(format!("no events for {}", a.stream)));
        }
    }
    Ok(())
}

/// The event store port.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Appends to one or more streams atomically, once per command id.
    async fn append(&self, meta: &AppendMeta, appends: Vec<StreamAppend>) -> Result<AppendResult, StoreError>;

    /// Appends several commands in order, each decided on the state the ones before it
    /// leave: each gets its own result, and once one is not appended (refused, a
    /// repeat, a failure) every later one is refused with a conflict on its first
    /// stream, never tried (it was decided on a state that did not come to be). The
    /// default appends one after the other; Postgres sends the chain in one group commit.
    async fn append_chain(&self, chain: Vec<(AppendMeta, Vec<StreamAppend>)>) -> Vec<Result<AppendResult, StoreError>> {
        let mut out = Vec::with_capacity(chain.len());
        let mut broken = false;
        for (meta, appends) in chain {
            if broken {
                out.push(Err(chain_broken(&appends)));
                continue;
            }
            let r = self.append(&meta, appends).await;
            broken = !matches!(&r, Ok(a) if !a.duplicate);
            out.push(r);
        }
        out
    }

    /// One page of a stream: versions `>= from` ascending, or `<= from` descending.
    async fn read_stream_page(
        &self,
        stream: &str,
        from: i64,
        backward: bool,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// One page of the global log strictly after `after`, in global order.
    async fn read_log_page(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The checkpoint of the latest event readers may see (START when empty).
    async fn head(&self) -> Result<Checkpoint, StoreError>;

    /// The checkpoint of the event at a global position, once readers may see it.
    async fn checkpoint_of(&self, position: i64) -> Result<Option<Checkpoint>, StoreError>;

    /// Whether an event at this global position has been committed, readable yet or
    /// not. A client only learns a position from an answer sent after its commit, so
    /// `false` means the position was never handed out (`Gather-Min-Position` refuses it
    /// at once instead of waiting). The default answers `true`: wait and see.
    async fn is_committed(&self, position: i64) -> Result<bool, StoreError> {
        let _ = position;
        Ok(true)
    }

    /// The stream's current version (None = no stream).
    async fn stream_version(&self, stream: &str) -> Result<Option<i64>, StoreError>;

    /// The latest snapshot of a stream.
    async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError>;

    /// Saves a snapshot, unless a newer one is stored.
    async fn save_snapshot(&self, stream: &str, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// A signal that changes when new events may be readable.
    fn wake(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The first result of a command id, if it was appended (the handler asks when a
    /// decision fails, in case a racing repeat of the same command got there first).
    /// Backends that cannot tell answer `None`.
    async fn recorded(&self, _command_id: Uuid) -> Result<Option<AppendResult>, StoreError> {
        Ok(None)
    }

    /// The vault that seals personal fields, when this store is [`Sealed`] (the command
    /// handler seals what it appends through it).
    fn vault(&self) -> Option<&std::sync::Arc<Vault>> {
        None
    }

    /// A whole stream forward from a version, paged (bounded memory).
    fn read_stream(&self, stream: &str, from: i64) -> BoxStream<'_, Result<RecordedEvent, StoreError>> {
        let stream = stream.to_string();
        paged(from, move |from| {
            let stream = stream.clone();
            async move {
                let page = self.read_stream_page(&stream, from, false, PAGE).await?;
                let next = page.last().filter(|_| page.len() as i64 == PAGE).map(|e| e.version + 1);
                Ok((page, next))
            }
        })
    }

    /// A whole stream backward from its end, paged.
    fn read_stream_backward(&self, stream: &str) -> BoxStream<'_, Result<RecordedEvent, StoreError>> {
        let stream = stream.to_string();
        paged(i64::MAX, move |from| {
            let stream = stream.clone();
            async move {
                let page = self.read_stream_page(&stream, from, true, PAGE).await?;
                let next = page.last().filter(|_| page.len() as i64 == PAGE).map(|e| e.version - 1).filter(|v| *v >= 0);
                Ok((page, next))
            }
        })
    }

    /// The global log after a checkpoint, paged, up to what is readable now.
    fn read_log(&self, after: Checkpoint, filter: LogFilter) -> BoxStream<'_, Result<RecordedEvent, StoreError>> {
        paged(after, move |after| {
            let filter = filter.clone();
            async move {
                let page = self.read_log_page(after, &filter, LOG_PAGE).await?;
                let next = page.last().filter(|_| page.len() as i64 == LOG_PAGE).map(|e| e.checkpoint());
                Ok((page, next))
            }
        })
    }
}

/// Turns a page function into a flat stream; stops after an empty page or an error.
fn paged<'a, C, F, Fut>(start: C, page: F) -> BoxStream<'a, Result<RecordedEvent, StoreError>>
where
    C: Send + 'a,
    F: Fn(C) -> Fut + Send + 'a,
    Fut: std::future::Future<Output = Result<(Vec<RecordedEvent>, Option<C>), StoreError>> + Send + 'a,
{
    stream::unfold((Some(start), page), |(cursor, page)| async move {
        let cursor = cursor?;
        match page(cursor).await {
            Ok((events, next)) if !events.is_empty() => {
                let items: Vec<_> = events.into_iter().map(Ok).collect();
                Some((stream::iter(items), (next, page)))
            }
            Ok(_) => None,
            Err(e) => Some((stream::iter(vec![Err(e)]), (None, page))),
        }
    })
    .flatten()
    .boxed()
}
