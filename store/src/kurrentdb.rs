//! The KurrentDB / EventStoreDB backend (cargo feature `kurrentdb`), over the official
//! `kurrentdb` gRPC client. Connection strings are `esdb://…` or `kurrentdb://…`
//! (e.g. `esdb://127.0.0.1:2113?tls=false`); [`Client::new`] is lazy, so nothing connects
//! before the first call.
//!
//! How the port maps onto KurrentDB, and where it cannot:
//!
//! - **One stream per append.** KurrentDB has no atomic multi-stream write, so
//!   [`Capabilities::multi_stream_append`] is false and an append with more than one
//!   [`StreamAppend`] is refused with [`StoreError::Unsupported`] before any network call;
//!   the caller falls back (reserve first, compensate).
//! - **Expected versions** map to the client's [`StreamState`] (`Exact(n)` → revision `n`).
//!   `Exact(n)` with `n < 0` has no KurrentDB equivalent and can never hold, so it is a
//!   [`StoreError::Conflict`] without a write. A wrong-expected-version answer becomes a
//!   `Conflict` carrying the server's current revision.
//! - **Once per command id.** Each event's KurrentDB id is derived from
//!   `(command id, stream, index)` ([`event_id`]), so the server's idempotent-write check
//!   answers a repeat with success and writes nothing. [`NewEvent::event_id`] is therefore
//!   not used: the recorded `event_id` is the derived one (unique by construction, but a
//!   caller-chosen id given twice is not refused — KurrentDB has no store-wide id index).
//!   To report `duplicate` and the *first* result, an append (1) looks for the command in
//!   the last [`TAIL_SCAN`] events of the stream, (2) appends, (3) reads back its first
//!   event: every attempt carries a random `attempt` id in the metadata, and a foreign one
//!   means the server answered a repeat. Limits: the server's idempotency only holds when
//!   the repeat's expectation points where the first write went (or, for `Any`, while the
//!   server's id cache remembers it — best effort); a repeat with a fresher expectation is
//!   caught by step (1) only while the first write is among the stream's last
//!   [`TAIL_SCAN`] events. An append costs three round trips: the tail read, the write,
//!   and the read-back of its first and last events (two reads in parallel).
//! - **Metadata** (command, correlation and causation ids, actor, schema version, event
//!   type, and `$correlationId` / `$causationId` for KurrentDB's own projections) is the
//!   event's custom metadata JSON.
//! - **Global order** is `$all`: a [`Checkpoint`] is `{ commit_id: commit position,
//!   position: prepare position }`, ordered like KurrentDB orders `$all`. The API shows
//!   `position` as one integer: for every event written by a gRPC append (all events this
//!   backend writes) the prepare position equals the commit position, so it is also the
//!   commit position; only events of legacy explicit (TCP) transactions differ, and
//!   [`EventStore::checkpoint_of`] does not find those. Positions are byte offsets in the
//!   transaction log: increasing, not dense. `$all` is written by one writer and read only
//!   up to what is committed and indexed, so a reader never skips a late commit (ADR 01).
//!   Streams and event types starting with `$` (system) are skipped; the category and
//!   namespace filters run on the server (stream-name prefixes), the event-type filter in
//!   the client.
//! - **Snapshots** live in a stream `snapshot:{stream}` (max-count 1), never shown in the log.
//! - **Namespace** ([`KurrentStore::with_namespace`]): an optional prefix on every stream
//!   name, so several stores (or test runs) can share one server; the log shows only the
//!   store's own streams. Without one, every non-system stream of the server is read as
//!   Gather's, and a foreign event stops readers with a decode error.
//! - **Wake**: bumped after this process's own appends; other processes' appends are
//!   seen by the subscriptions' one-second poll.
//! - **Server requirements**: reading `$all` needs a user allowed to (in secure mode,
//!   an admin by default). Append results take their positions from reading the events
//!   back from their stream, which reports positions only on servers that know where a
//!   self-committed event lies (recent EventStoreDB and KurrentDB); an older server
//!   answers no position there, shown as -1. None of this was run against a server here.

use super::*;
use ::kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, Position, ReadAllOptions,
    ReadStreamOptions, StreamMetadata, StreamPosition, StreamState, SubscriptionFilter,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How many of a stream's last events an append searches for an earlier run of its command.
pub const TAIL_SCAN: usize = 32;

/// The prefix of snapshot streams (after the namespace); such streams are refused for events.
pub const SNAPSHOT_PREFIX: &str = "snapshot:";

const SNAPSHOT_TYPE: &str = "GatherSnapshot";

/// A deadline for each read (reads are streaming calls and have none by default).
const READ_DEADLINE: Duration = Duration::from_secs(60);

/// gRPC status codes (the client reports unmapped ones as `Error::Grpc`).
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_OUT_OF_RANGE: i32 = 11;

/// The KurrentDB event store.
#[derive(Clone)]
pub struct KurrentStore {
    client: Client,
    namespace: String,
    wake_tx: Arc<watch::Sender<u64>>,
}

/// The KurrentDB event id of event `index` of the append of command `command_id` to
/// `stream` (the stream name without namespace): a UUID (version 8) made of the first 16
/// bytes of a SHA-256 over the three. The same inputs always give the same id, so a
/// repeated command proposes the same ids and the server's idempotency check applies.
pub fn event_id(command_id: Uuid, stream: &str, index: usize) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(b"gather/kurrentdb/event-id/v1\0");
    hash.update(command_id.as_bytes());
    hash.update((stream.len() as u64).to_be_bytes());
    hash.update(stream.as_bytes());
    hash.update((index as u64).to_be_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The client's stream state for an expectation; `None` for `Exact(n)` with `n < 0`,
/// which no stream can satisfy.
pub fn stream_state(expected: ExpectedVersion) -> Option<StreamState> {
    match expected {
        ExpectedVersion::Any => Some(StreamState::Any),
        ExpectedVersion::NoStream => Some(StreamState::NoStream),
        ExpectedVersion::StreamExists => Some(StreamState::StreamExists),
        ExpectedVersion::Exact(v) => u64::try_from(v).ok().map(StreamState::StreamRevision),
    }
}

/// A KurrentDB position as a checkpoint (`u64` values past `i64::MAX`, i.e. "unknown", become -1).
fn checkpoint_at(p: Position) -> Checkpoint {
    Checkpoint { commit_id: to_i64(p.commit), position: to_i64(p.prepare) }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(-1)
}

/// Where to read `$all` after a checkpoint (`None` = from the start).
fn position_after(cp: Checkpoint) -> Option<Position> {
    if cp.commit_id < 0 && cp.position <= 0 {
        return None;
    }
    Some(Position { commit: cp.commit_id.max(0) as u64, prepare: cp.position.max(0) as u64 })
}

/// Our metadata on every event (the event's custom metadata JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredMeta {
    command_id: Uuid,
    correlation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<Uuid>,
    schema_version: i32,
    event_type: String,
    /// This event's place in its append, and the append's size.
    index: u64,
    count: u64,
    /// A random id per append attempt: tells our own write from a repeat answered by the server.
    attempt: Uuid,
    /// KurrentDB's conventional keys (its `$by_correlation_id` projection reads them).
    #[serde(rename = "$correlationId", default, skip_serializing_if = "Option::is_none")]
    kurrent_correlation_id: Option<String>,
    #[serde(rename = "$causationId", default, skip_serializing_if = "Option::is_none")]
    kurrent_causation_id: Option<String>,
}

/// The parts of a KurrentDB event that [`decode`] reads.
struct Raw<'a> {
    /// The stream name without namespace.
    stream: &'a str,
    revision: u64,
    id: Uuid,
    event_type: &'a str,
    data: &'a [u8],
    custom_metadata: &'a [u8],
    /// The server's `created` metadata: 100 ns ticks since the Unix epoch.
    created_ticks: Option<&'a str>,
    created: DateTime<Utc>,
    position: Position,
}

fn decode_error(raw: &Raw<'_>, version: i64, source: serde_json::Error) -> StoreError {
    StoreError::Decode { stream: raw.stream.to_string(), version, event_type: raw.event_type.to_string(), source }
}

fn custom_error(msg: impl fmt::Display) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(msg)
}

/// A stored event in the port's shape, with our metadata; bad data is a `Decode` error.
fn decode(raw: &Raw<'_>) -> Result<(RecordedEvent, StoredMeta), StoreError> {
    let version = i64::try_from(raw.revision).unwrap_or(-1);
    if version < 0 {
        return Err(decode_error(raw, version, custom_error(format!("revision {} out of range", raw.revision))));
    }
    let data: Value = serde_json::from_slice(raw.data).map_err(|e| decode_error(raw, version, e))?;
    let meta: StoredMeta = serde_json::from_slice(raw.custom_metadata).map_err(|e| decode_error(raw, version, e))?;
    let recorded_at = raw
        .created_ticks
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|ticks| {
            DateTime::from_timestamp(ticks.div_euclid(10_000_000), (ticks.rem_euclid(10_000_000) * 100) as u32)
        })
        .unwrap_or(raw.created);
    let event = RecordedEvent {
        position: to_i64(raw.position.prepare),
        commit_id: to_i64(raw.position.commit),
        stream: raw.stream.to_string(),
        version,
        event_id: raw.id,
        event_type: raw.event_type.to_string(),
        schema_version: meta.schema_version,
        data,
        command_id: meta.command_id,
        correlation_id: meta.correlation_id,
        causation_id: meta.causation_id,
        actor: meta.actor,
        recorded_at,
    };
    Ok((event, meta))
}

/// The snapshot event's payload.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    version: i64,
    state_version: i32,
    state: Value,
}

fn backend(e: ::kurrentdb::Error) -> StoreError {
    StoreError::Backend(format!("KurrentDB: {e}"))
}

/// Whether a read failed because the stream does not exist.
fn is_not_found(e: &::kurrentdb::Error) -> bool {
    matches!(e, ::kurrentdb::Error::ResourceNotFound)
}

impl KurrentStore {
    /// A store over a client, without namespace.
    pub fn new(client: Client) -> Self {
        let (wake_tx, _) = watch::channel(0u64);
        KurrentStore { client, namespace: String::new(), wake_tx: Arc::new(wake_tx) }
    }

    /// A store for a connection string (`esdb://…` or `kurrentdb://…`). Lazy: it does not
    /// connect; must be called inside a Tokio runtime.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let settings: ClientSettings =
            url.parse().map_err(|e| StoreError::Backend(format!("bad KurrentDB connection string: {e}")))?;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Backend("KurrentStore::connect needs a Tokio runtime".into()))?;
        let client = Client::with_runtime_handle(handle, settings)
            .map_err(|e| StoreError::Backend(format!("KurrentDB client: {e}")))?;
        Ok(Self::new(client))
    }

    /// Prefixes every stream name with `namespace` (e.g. `"gather."`); the log then shows
    /// only this namespace's streams. It must not start with `$` (system streams).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Result<Self, StoreError> {
        let namespace = namespace.into();
        if namespace.starts_with('$') || namespace.chars().any(char::is_whitespace) {
            return Err(StoreError::Invalid(format!("namespace {namespace:?} starts with $ or has whitespace")));
        }
        self.namespace = namespace;
        Ok(self)
    }

    /// The namespace ("" when none).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn physical(&self, stream: &str) -> String {
        format!("{}{stream}", self.namespace)
    }

    fn snapshot_stream(&self, stream: &str) -> String {
        format!("{}{SNAPSHOT_PREFIX}{stream}", self.namespace)
    }

    /// The stream name without namespace, when the event belongs to this store's log
    /// (not a system stream or type, not a snapshot).
    fn log_stream<'a>(&self, e: &'a ::kurrentdb::RecordedEvent) -> Option<&'a str> {
        let stream = e.stream_id().strip_prefix(self.namespace.as_str())?;
        let system = e.stream_id().starts_with('$') || e.event_type.starts_with('$');
        (!system && !stream.starts_with(SNAPSHOT_PREFIX)).then_some(stream)
    }

    fn decode_in(
        &self,
        stream: &str,
        e: &::kurrentdb::RecordedEvent,
    ) -> Result<(RecordedEvent, StoredMeta), StoreError> {
        decode(&Raw {
            stream,
            revision: e.revision,
            id: e.id,
            event_type: &e.event_type,
            data: &e.data,
            custom_metadata: &e.custom_metadata,
            created_ticks: e.metadata.get("created").map(String::as_str),
            created: e.created,
            position: e.position,
        })
    }

    /// Reads up to `limit` events of one stream; a missing stream reads as empty.
    async fn read_raw(
        &self,
        physical: &str,
        position: StreamPosition<u64>,
        backward: bool,
        limit: usize,
        leader: bool,
    ) -> Result<Vec<::kurrentdb::RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let options = ReadStreamOptions::default()
            .position(position)
            .max_count(limit)
            .requires_leader(leader)
            .deadline(READ_DEADLINE);
        let options = if backward { options.backwards() } else { options.forwards() };
        let mut read = match self.client.read_stream(physical, &options).await {
            Ok(read) => read,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut out = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(e) = resolved.event {
                        out.push(e);
                    }
                }
                Ok(None) => return Ok(out),
                Err(e) if is_not_found(&e) => return Ok(Vec::new()),
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// The event at exactly `revision` of a stream, if it is there (read on the leader: it
    /// reads back what was just written).
    async fn read_at(&self, physical: &str, revision: u64) -> Result<Option<::kurrentdb::RecordedEvent>, StoreError> {
        let mut found = self.read_raw(physical, StreamPosition::Position(revision), false, 1, true).await?;
        Ok(found.pop().filter(|e| e.revision == revision))
    }

    /// The events at revisions `first` and `last` of a stream (one read when they are the same).
    async fn read_ends(
        &self,
        physical: &str,
        first: u64,
        last: u64,
    ) -> Result<(Option<::kurrentdb::RecordedEvent>, Option<::kurrentdb::RecordedEvent>), StoreError> {
        if first == last {
            return Ok((self.read_at(physical, first).await?, None));
        }
        futures::try_join!(self.read_at(physical, first), self.read_at(physical, last))
    }

    /// The result of the append of `command_id` spanning revisions `first..=last`, from its
    /// first and (when different) last event.
    fn result_of(
        &self,
        stream: &str,
        physical: &str,
        command_id: Uuid,
        (first, last): (u64, u64),
        (head, tail): (Option<::kurrentdb::RecordedEvent>, Option<::kurrentdb::RecordedEvent>),
    ) -> Result<StreamResult, StoreError> {
        let missing =
            || StoreError::Backend(format!("KurrentDB: events {first}..={last} of {physical} cannot be read back"));
        let (first_event, _) = self.decode_in(stream, &head.ok_or_else(missing)?)?;
        let last_event = match tail {
            Some(e) => self.decode_in(stream, &e)?.0,
            None if last == first => first_event.clone(),
            None => return Err(missing()),
        };
        if first_event.command_id != command_id || last_event.command_id != command_id {
            return Err(StoreError::Backend(format!(
                "KurrentDB: events {first}..={last} of {physical} are not those of command {command_id}"
            )));
        }
        Ok(StreamResult {
            stream: stream.to_string(),
            first_position: first_event.position,
            last_position: last_event.position,
            version: last_event.version,
        })
    }

    /// The result of the append whose first event is at `first` and that wrote `count` events.
    async fn result_at(
        &self,
        stream: &str,
        physical: &str,
        command_id: Uuid,
        first: u64,
        count: u64,
    ) -> Result<StreamResult, StoreError> {
        // `count` comes from stored metadata: never trust it to stay in range
        let last = first.saturating_add(count.max(1) - 1);
        let ends = self.read_ends(physical, first, last).await?;
        self.result_of(stream, physical, command_id, (first, last), ends)
    }

    /// An earlier append of this command among the stream's last [`TAIL_SCAN`] events.
    async fn find_previous(
        &self,
        stream: &str,
        physical: &str,
        command_id: Uuid,
    ) -> Result<Option<StreamResult>, StoreError> {
        let tail = self.read_raw(physical, StreamPosition::End, true, TAIL_SCAN, true).await?;
        for e in &tail {
            // Events that are not ours (no readable metadata) cannot be a previous run.
            let Ok(meta) = serde_json::from_slice::<StoredMeta>(&e.custom_metadata) else { continue };
            let index = usize::try_from(meta.index).unwrap_or(usize::MAX);
            if meta.command_id == command_id && e.id == event_id(command_id, stream, index) {
                let Some(first) = e.revision.checked_sub(meta.index) else { continue };
                return self.result_at(stream, physical, command_id, first, meta.count).await.map(Some);
            }
        }
        Ok(None)
    }

    fn event_data(
        &self,
        meta: &AppendMeta,
        stream: &str,
        events: &[NewEvent],
        attempt: Uuid,
    ) -> Result<Vec<EventData>, StoreError> {
        let count = events.len() as u64;
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let stored = StoredMeta {
                    command_id: meta.command_id,
                    correlation_id: meta.correlation_id,
                    causation_id: meta.causation_id,
                    actor: meta.actor,
                    schema_version: e.schema_version,
                    event_type: e.event_type.clone(),
                    index: i as u64,
                    count,
                    attempt,
                    kurrent_correlation_id: Some(meta.correlation_id.to_string()),
                    kurrent_causation_id: meta.causation_id.map(|c| c.to_string()),
                };
                EventData::json(&e.event_type, &e.data)
                    .and_then(|d| d.metadata_as_json(&stored))
                    .map(|d| d.id(event_id(meta.command_id, stream, i)))
                    .map_err(|err| StoreError::Invalid(format!("event not serializable: {err}")))
            })
            .collect()
    }

    /// Reads `$all` from `from` (exclusive), forward or backward, through an optional
    /// server filter, keeping up to `limit` events that `keep` accepts.
    async fn scan_all(
        &self,
        from: Option<Position>,
        backward: bool,
        filter: &SubscriptionFilter,
        limit: usize,
        mut keep: impl FnMut(&::kurrentdb::RecordedEvent) -> bool,
    ) -> Result<Vec<::kurrentdb::RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = from;
        while out.len() < limit {
            // +1: a forward read includes the event at the cursor, which is skipped.
            let batch = (limit - out.len()).clamp(32, 1000) + 1;
            let start = match cursor {
                Some(p) => StreamPosition::Position(p),
                None if backward => StreamPosition::End,
                None => StreamPosition::Start,
            };
            let options = ReadAllOptions::default()
                .position(start)
                .max_count(batch)
                .filter(filter.clone())
                .deadline(READ_DEADLINE);
            let options = if backward { options.backwards() } else { options.forwards() };
            let mut read = self.client.read_all(&options).await.map_err(backend)?;
            let mut received = 0;
            let mut last = None;
            while let Some(resolved) = read.next().await.map_err(backend)? {
                received += 1;
                let Some(e) = resolved.event else { continue };
                if let Some(c) = cursor
                    && ((!backward && e.position <= c) || (backward && e.position >= c))
                {
                    continue;
                }
                last = Some(e.position);
                if keep(&e) {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            // A short read is the end of $all (the server's filtered reads go on until
            // they have `batch` events or reach the end).
            match last {
                Some(p) if received >= batch => cursor = Some(p),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The server-side filter for a log read: stream-name prefixes for the categories (or
    /// the namespace), else "no system streams".
    fn server_filter(&self, categories: &[String]) -> SubscriptionFilter {
        if !categories.is_empty() {
            categories
                .iter()
                .fold(SubscriptionFilter::on_stream_name(), |f, c| f.add_prefix(format!("{}{c}-", self.namespace)))
        } else if !self.namespace.is_empty() {
            SubscriptionFilter::on_stream_name().add_prefix(&self.namespace)
        } else {
            SubscriptionFilter::on_stream_name().exclude_system_events()
        }
    }
}

#[async_trait]
impl EventStore for KurrentStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities { multi_stream_append: false }
    }

    async fn append(&self, meta: &AppendMeta, appends: Vec<StreamAppend>) -> Result<AppendResult, StoreError> {
        validate(&appends)?;
        if appends.len() > 1 {
            return Err(StoreError::Unsupported("multi-stream append"));
        }
        let Some(a) = appends.into_iter().next() else {
            return Err(StoreError::Invalid("nothing to append".into()));
        };
        if a.stream.starts_with(SNAPSHOT_PREFIX) || a.stream.starts_with('$') {
            return Err(StoreError::Invalid(format!("stream name {:?} is reserved", a.stream)));
        }
        let physical = self.physical(&a.stream);
        let duplicate = |r: StreamResult| AppendResult { duplicate: true, streams: vec![r] };

        // 1. A run of this command near the stream's end: answer its result, write nothing.
        if let Some(first) = self.find_previous(&a.stream, &physical, meta.command_id).await? {
            return Ok(duplicate(first));
        }
        let Some(state) = stream_state(a.expected) else {
            let actual = self.stream_version(&a.stream).await?;
            return Err(StoreError::Conflict { stream: a.stream, expected: a.expected, actual });
        };

        // 2. The write; a repeat the server recognizes succeeds without writing.
        let attempt = Uuid::new_v4();
        let n = a.events.len() as u64;
        let events = self.event_data(meta, &a.stream, &a.events, attempt)?;
        let options = AppendToStreamOptions::default().stream_state(state);
        let written = match self.client.append_to_stream(physical.as_str(), &options, events).await {
            Ok(w) => w,
            Err(::kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                // A repeat racing with its first run can land here (partial idempotency).
                if let Some(first) = self.find_previous(&a.stream, &physical, meta.command_id).await? {
                    return Ok(duplicate(first));
                }
                let actual = match current {
                    CurrentRevision::Current(v) => Some(to_i64(v)),
                    CurrentRevision::NoStream => None,
                };
                return Err(StoreError::Conflict { stream: a.stream, expected: a.expected, actual });
            }
            Err(e) => return Err(backend(e)),
        };

        // 3. Ours or a repeat's? The first event's attempt id tells.
        let last = written.next_expected_version;
        let first = last.checked_add(1).and_then(|end| end.checked_sub(n)).ok_or_else(|| {
            StoreError::Backend(format!("KurrentDB answered revision {last} for an append of {n} events"))
        })?;
        let (head, tail) = self.read_ends(&physical, first, last).await?;
        let Some(head) = head else {
            return Err(StoreError::Backend(format!("KurrentDB: event {first} of {physical} cannot be read back")));
        };
        let (_, head_meta) = self.decode_in(&a.stream, &head)?;
        if head.id != event_id(meta.command_id, &a.stream, 0) || head_meta.command_id != meta.command_id {
            return Err(StoreError::Backend(format!(
                "KurrentDB: event {first} of {physical} is not the first of command {}",
                meta.command_id
            )));
        }
        if head_meta.attempt != attempt {
            // A repeat: the first run wrote `count` events from `first` (usually as many as now).
            let first_result = if head_meta.count == n {
                self.result_of(&a.stream, &physical, meta.command_id, (first, last), (Some(head), tail))?
            } else {
                self.result_at(&a.stream, &physical, meta.command_id, first, head_meta.count).await?
            };
            return Ok(duplicate(first_result));
        }
        let result = self.result_of(&a.stream, &physical, meta.command_id, (first, last), (Some(head), tail))?;
        self.wake_tx.send_modify(|n| *n = n.wrapping_add(1));
        Ok(AppendResult { duplicate: false, streams: vec![result] })
    }

    async fn read_stream_page(
        &self,
        stream: &str,
        from: i64,
        backward: bool,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(0);
        if limit == 0 || (backward && from < 0) {
            return Ok(Vec::new());
        }
        let position = match (backward, from) {
            (true, i64::MAX) => StreamPosition::End,
            (_, from) => StreamPosition::Position(from.max(0) as u64),
        };
        let raw = self.read_raw(&self.physical(stream), position, backward, limit, false).await?;
        raw.iter()
            .map(|e| self.decode_in(stream, e).map(|(event, _)| event))
            .filter(|r| match r {
                Ok(e) if backward => e.version <= from,
                Ok(e) => e.version >= from,
                Err(_) => true,
            })
            .collect()
    }

    async fn read_log_page(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(0);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let wanted = |e: &::kurrentdb::RecordedEvent| {
            self.log_stream(e).is_some_and(|s| {
                (filter.categories.is_empty() || filter.categories.iter().any(|c| c == category_of(s)))
                    && (filter.event_types.is_empty() || filter.event_types.contains(&e.event_type))
            })
        };
        let raw =
            self.scan_all(position_after(after), false, &self.server_filter(&filter.categories), limit, wanted).await?;
        raw.iter()
            .map(|e| {
                let stream = self.log_stream(e).unwrap_or_default();
                self.decode_in(stream, e).map(|(event, _)| event)
            })
            .collect()
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        let last = self.scan_all(None, true, &self.server_filter(&[]), 1, |e| self.log_stream(e).is_some()).await?;
        Ok(last.first().map(|e| checkpoint_at(e.position)).unwrap_or(Checkpoint::START))
    }

    async fn checkpoint_of(&self, position: i64) -> Result<Option<Checkpoint>, StoreError> {
        let Ok(p) = u64::try_from(position) else { return Ok(None) };
        if p == 0 {
            return Ok(None);
        }
        let at = Position { commit: p, prepare: p };
        let options = ReadAllOptions::default()
            .position(StreamPosition::Position(at))
            .forwards()
            .max_count(1)
            .deadline(READ_DEADLINE);
        // A position that is no record boundary is refused (InvalidArgument): no event there.
        let invalid = |e: &::kurrentdb::Error| match e {
            ::kurrentdb::Error::Grpc { code, .. } => {
                matches!(i32::from(*code), GRPC_INVALID_ARGUMENT | GRPC_OUT_OF_RANGE)
            }
            _ => false,
        };
        let mut read = match self.client.read_all(&options).await {
            Ok(read) => read,
            Err(e) if invalid(&e) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        let found = match read.next().await {
            Ok(found) => found,
            Err(e) if invalid(&e) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        Ok(found
            .and_then(|r| r.event)
            .filter(|e| e.position == at && self.log_stream(e).is_some())
            .map(|e| checkpoint_at(e.position)))
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<i64>, StoreError> {
        let last = self.read_raw(&self.physical(stream), StreamPosition::End, true, 1, false).await?;
        Ok(last.first().map(|e| to_i64(e.revision)))
    }

    async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let last = self.read_raw(&self.snapshot_stream(stream), StreamPosition::End, true, 1, false).await?;
        let Some(e) = last.first() else { return Ok(None) };
        match serde_json::from_slice::<StoredSnapshot>(&e.data) {
            Ok(s) => Ok(Some(Snapshot { version: s.version, state_version: s.state_version, state: s.state })),
            Err(err) => {
                tracing::warn!(%stream, error = %err, "ignoring an unreadable snapshot event");
                Ok(None)
            }
        }
    }

    async fn save_snapshot(&self, stream: &str, s: &Snapshot) -> Result<(), StoreError> {
        let physical = self.snapshot_stream(stream);
        let payload = StoredSnapshot { version: s.version, state_version: s.state_version, state: s.state.clone() };
        // A concurrent writer moves the stream on: look again (a few times; a snapshot is only a shortcut).
        for _ in 0..3 {
            let last = self.read_raw(&physical, StreamPosition::End, true, 1, false).await?;
            let state = match last.first() {
                Some(e) => {
                    if let Ok(stored) = serde_json::from_slice::<StoredSnapshot>(&e.data)
                        && stored.version >= s.version
                        && stored.state_version == s.state_version
                    {
                        return Ok(()); // a newer (or the same) snapshot of this shape is stored
                    }
                    StreamState::StreamRevision(e.revision)
                }
                None => StreamState::NoStream,
            };
            let event = EventData::json(SNAPSHOT_TYPE, &payload)
                .map_err(|e| StoreError::Invalid(format!("snapshot not serializable: {e}")))?
                .id(Uuid::new_v4());
            let options = AppendToStreamOptions::default().stream_state(state);
            match self.client.append_to_stream(physical.as_str(), &options, event).await {
                Ok(_) => {
                    if state == StreamState::NoStream {
                        // Keep only the latest snapshot; best effort (ACLs may forbid it).
                        let metadata = StreamMetadata::builder().max_count(1).build();
                        if let Err(e) = self
                            .client
                            .set_stream_metadata(physical.as_str(), &AppendToStreamOptions::default(), &metadata)
                            .await
                        {
                            tracing::debug!(stream = %physical, error = %e, "could not set max-count on a snapshot stream");
                        }
                    }
                    return Ok(());
                }
                Err(::kurrentdb::Error::WrongExpectedVersion { .. }) => continue,
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }

    fn wake(&self) -> watch::Receiver<u64> {
        self.wake_tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored_meta() -> StoredMeta {
        StoredMeta {
            command_id: Uuid::from_u128(1),
            correlation_id: Uuid::from_u128(2),
            causation_id: Some(Uuid::from_u128(3)),
            actor: Some(Uuid::from_u128(4)),
            schema_version: 2,
            event_type: "A".into(),
            index: 0,
            count: 1,
            attempt: Uuid::from_u128(5),
            kurrent_correlation_id: Some(Uuid::from_u128(2).to_string()),
            kurrent_causation_id: Some(Uuid::from_u128(3).to_string()),
        }
    }

    fn raw<'a>(data: &'a [u8], meta: &'a [u8]) -> Raw<'a> {
        Raw {
            stream: "thing-1",
            revision: 4,
            id: Uuid::from_u128(9),
            event_type: "A",
            data,
            custom_metadata: meta,
            // 2023-11-14T22:13:20.1234567Z in 100 ns ticks
            created_ticks: Some("17000000001234567"),
            created: DateTime::UNIX_EPOCH,
            position: Position { commit: 1234, prepare: 1234 },
        }
    }

    #[test]
    fn a_stored_event_decodes_with_its_metadata_position_and_time() {
        let meta = serde_json::to_vec(&stored_meta()).unwrap();
        let (e, m) = decode(&raw(br#"{"n":1}"#, &meta)).unwrap();
        assert_eq!(m, stored_meta());
        assert_eq!((e.stream.as_str(), e.version, e.event_type.as_str()), ("thing-1", 4, "A"));
        assert_eq!(e.data, json!({"n": 1}));
        assert_eq!((e.command_id, e.correlation_id), (Uuid::from_u128(1), Uuid::from_u128(2)));
        assert_eq!(
            (e.causation_id, e.actor, e.schema_version),
            (Some(Uuid::from_u128(3)), Some(Uuid::from_u128(4)), 2)
        );
        assert_eq!(e.event_id, Uuid::from_u128(9));
        assert_eq!(e.checkpoint(), Checkpoint { commit_id: 1234, position: 1234 });
        assert_eq!(e.recorded_at.timestamp(), 1_700_000_000);
        assert_eq!(e.recorded_at.timestamp_subsec_nanos(), 123_456_700);
    }

    #[test]
    fn a_payload_that_is_not_json_is_a_decode_error_naming_stream_and_version() {
        let meta = serde_json::to_vec(&stored_meta()).unwrap();
        match decode(&raw(b"\x00\xffnot json", &meta)) {
            Err(StoreError::Decode { stream, version, event_type, .. }) => {
                assert_eq!((stream.as_str(), version, event_type.as_str()), ("thing-1", 4, "A"));
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn an_event_without_our_metadata_is_a_decode_error() {
        for meta in [&b""[..], b"{}", br#"{"command_id":"x"}"#, b"\xff"] {
            assert!(matches!(decode(&raw(b"{}", meta)), Err(StoreError::Decode { .. })), "{meta:?}");
        }
    }

    #[test]
    fn the_server_time_falls_back_when_ticks_are_missing_or_bad() {
        let meta = serde_json::to_vec(&stored_meta()).unwrap();
        for ticks in [None, Some("soon")] {
            let mut r = raw(b"{}", &meta);
            r.created_ticks = ticks;
            r.created = DateTime::from_timestamp(42, 0).unwrap();
            assert_eq!(decode(&r).unwrap().0.recorded_at.timestamp(), 42);
        }
    }

    #[test]
    fn positions_map_to_checkpoints_and_back() {
        assert_eq!(position_after(Checkpoint::START), None);
        let p = Position { commit: 5000, prepare: 5000 };
        assert_eq!(position_after(checkpoint_at(p)), Some(p));
        // "no position" (u64::MAX) is not a huge number
        assert_eq!(checkpoint_at(Position::end()), Checkpoint { commit_id: -1, position: -1 });
        // the checkpoint order is the $all order
        let (a, b) = (Position { commit: 10, prepare: 30 }, Position { commit: 20, prepare: 15 });
        assert!(a < b && checkpoint_at(a) < checkpoint_at(b));
    }

    #[test]
    fn the_metadata_carries_kurrentdbs_correlation_keys() {
        let v = serde_json::to_value(stored_meta()).unwrap();
        assert_eq!(v["$correlationId"], json!(Uuid::from_u128(2).to_string()));
        assert_eq!(v["$causationId"], json!(Uuid::from_u128(3).to_string()));
        assert_eq!(v["index"], json!(0));
    }
}
