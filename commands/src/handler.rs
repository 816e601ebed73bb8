//! The command handler: load → decide → append, retrying on conflicts.
//!
//! State is loaded from the latest valid snapshot plus the events after it, decided on
//! with the actor and `now`, and appended with the loaded version as the expected
//! version. A conflict reloads and decides again (bounded, with jitter) unless the
//! caller pinned a version (`If-Match`). Snapshots are written by a spawned task after
//! the append, never on its path. Commands queued on one stream are decided in order,
//! each on the state the ones before it leave, and appended as one chain
//! ([`CommandHandler::handle`]).

use crate::codec::{self, Upcasters};
use crate::store::{
    AppendMeta, AppendResult, EventStore, ExpectedVersion, NewEvent, Snapshot, StoreError, StreamAppend, StreamResult,
    stream_name,
};
use crate::uniqueness::RESERVATION_RELEASED;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use gather_domain::{Actor, Aggregate, Context, DomainError};
use rand::Rng;
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use uuid::Uuid;

/// How many times a conflicting decision is retried on fresh state.
pub const MAX_RETRIES: u32 = 8;

/// A source of "now" (a real clock in production, a fixed one in tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Who issues a command and how it is tracked.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// The command id (the `Idempotency-Key` when given).
    pub command_id: Uuid,
    /// The request's correlation id.
    pub correlation_id: Uuid,
    /// The event that caused this command (process managers).
    pub causation_id: Option<Uuid>,
    /// The authenticated actor.
    pub actor: Actor,
    /// A version pinned by `If-Match`: no retry, a conflict is reported.
    pub if_match: Option<i64>,
}

impl CommandMeta {
    /// A fresh command by `actor`, correlated with itself.
    pub fn new(actor: Actor) -> Self {
        let id = Uuid::now_v7();
        CommandMeta { command_id: id, correlation_id: id, causation_id: None, actor, if_match: None }
    }
}

/// What a handled command produced.
#[derive(Debug, Clone)]
pub struct CommandOutcome<E> {
    /// The stream written.
    pub stream: String,
    /// The global position of the last event written (or of the stream's last event
    /// when the decision produced none).
    pub position: i64,
    /// The stream's version after the command (-1: still no stream).
    pub version: i64,
    /// The events decided (empty for a repeated command id).
    pub events: Vec<E>,
    /// True when this command id had been handled before and nothing was written.
    pub duplicate: bool,
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A domain rule refused it: report `code()` to the caller.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The pinned version (`If-Match`) is stale: answer 412 with the actual version.
    #[error("the stream is at version {actual:?}, not the expected one")]
    PreconditionFailed {
        /// The stream's actual version.
        actual: Option<i64>,
    },
    /// Another stream of the same append (e.g. an email reservation) already exists.
    #[error("{stream} already exists")]
    Taken {
        /// The stream that was expected not to exist.
        stream: String,
    },
    /// Conflicts did not settle within the retry budget: the caller may retry later.
    #[error("too much contention on {stream}")]
    Contention {
        /// The contended stream.
        stream: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A loaded aggregate: its state, version and the position of its last event.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    /// The folded state.
    pub state: S,
    /// The last version (None = no stream).
    pub version: Option<i64>,
    /// The global position of the last event (0 = none).
    pub position: i64,
}

/// Handles commands for any aggregate over one event store.
#[derive(Clone)]
pub struct CommandHandler {
    store: Arc<dyn EventStore>,
    upcasters: Arc<Upcasters>,
    clock: Clock,
    snapshot_every: i64,
    local: Arc<Local>,
}

/// How many streams' states the handler keeps in memory.
pub const CACHE_STREAMS: usize = 10_000;

/// Per-process helpers for hot streams: commands on one stream queue on a lock instead
/// of conflicting with each other, and the state after the last append is kept, so
/// the next command reads only what other processes appended since.
#[derive(Default)]
struct Local {
    locks: std::sync::Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    states: std::sync::Mutex<HashMap<String, CachedState>>,
    /// Commands waiting for their stream's lock: whoever takes it next decides all of
    /// them, one after the other, and appends them as one chain.
    queued: std::sync::Mutex<HashMap<String, Vec<Box<dyn Any + Send>>>>,
}

/// A command waiting in its stream's queue, and where its answer goes.
struct Job<A: Aggregate> {
    command: A::Command,
    meta: CommandMeta,
    reply: tokio::sync::oneshot::Sender<Result<CommandOutcome<A::Event>, CommandError>>,
}

/// A job decided in a chain, waiting for the chain's append.
struct Decided<A: Aggregate> {
    /// Its place in the queue.
    index: usize,
    job: Job<A>,
    events: Vec<A::Event>,
}

/// At most this many commands are decided into one chain.
pub const MAX_CHAIN: usize = 32;

#[derive(Clone)]
struct CachedState {
    version: i64,
    position: i64,
    /// The vault's epoch when cached: a shred since makes the state stale (it may hold
    /// personal data that is now forgotten).
    epoch: u64,
    state: Arc<dyn Any + Send + Sync>,
}

impl Local {
    fn lock_for(&self, stream: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = locks.get(stream).and_then(Weak::upgrade) {
            return l;
        }
        if locks.len() >= CACHE_STREAMS {
            locks.retain(|_, w| w.strong_count() > 0);
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(stream.to_string(), Arc::downgrade(&l));
        l
    }

    fn enqueue(&self, stream: &str, job: Box<dyn Any + Send>) {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        queued.entry(stream.to_string()).or_default().push(job);
    }

    /// The queued jobs of `stream` (at most [`MAX_CHAIN`], oldest first). A job of
    /// another type cannot be queued on the same stream (a stream is one aggregate's).
    fn take<A: Aggregate>(&self, stream: &str) -> Vec<Job<A>> {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        let Some(list) = queued.get_mut(stream) else { return Vec::new() };
        let n = list.len().min(MAX_CHAIN);
        let jobs: Vec<Box<dyn Any + Send>> = list.drain(..n).collect();
        if list.is_empty() {
            queued.remove(stream);
        }
        // A job that is not of this aggregate is dropped: its caller hears LostReply.
        jobs.into_iter().filter_map(|j| j.downcast::<Job<A>>().ok().map(|j| *j)).collect()
    }

    fn get(&self, stream: &str) -> Option<CachedState> {
        self.states.lock().unwrap_or_else(|p| p.into_inner()).get(stream).cloned()
    }

    fn put(&self, stream: &str, entry: Option<CachedState>) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match entry {
            Some(e) => {
                if states.len() >= CACHE_STREAMS && !states.contains_key(stream) {
                    states.clear();
                }
                states.insert(stream.to_string(), e);
            }
            None => {
                states.remove(stream);
            }
        }
    }
}

impl CommandHandler {
    /// A handler over `store`, with the system clock and snapshots every 100 events.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        CommandHandler {
            store,
            upcasters: Arc::new(Upcasters::standard()),
            clock: Arc::new(Utc::now),
            snapshot_every: 100,
            local: Arc::new(Local::default()),
        }
    }

    /// Replaces the clock (tests, replays).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the upcasters.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    /// Takes a snapshot every `n` events (0 = never).
    pub fn with_snapshot_every(mut self, n: i64) -> Self {
        self.snapshot_every = n;
        self
    }

    /// The store behind this handler.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The vault's epoch (0 without one): cached states older than it are dropped.
    fn epoch(&self) -> u64 {
        self.store.vault().map_or(0, |v| v.epoch())
    }

    /// The current time by this handler's clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Loads an aggregate from its latest valid snapshot plus the events after it.
    pub async fn load<A: Aggregate>(&self, id: Uuid) -> Result<Loaded<A::State>, StoreError> {
        let stream = stream_name(A::CATEGORY, id);
        let snapshot = match self.store.load_snapshot(&stream).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%stream, error = %e, "ignoring a snapshot that cannot be read");
                None
            }
        };
        let (mut state, mut version) = match snapshot {
            Some(s) if s.state_version == A::STATE_VERSION as i32 => match serde_json::from_value(s.state) {
                Ok(state) => (state, Some(s.version)),
                Err(e) => {
                    tracing::warn!(%stream, error = %e, "ignoring an unreadable snapshot");
                    (A::State::default(), None)
                }
            },
            _ => (A::State::default(), None),
        };
        let mut position = 0;
        let from = version.map_or(0, |v| v + 1);
        let mut events = self.store.read_stream(&stream, from);
        while let Some(recorded) = events.try_next().await? {
            let event: A::Event = codec::decode(&recorded, &self.upcasters)?;
            state = A::evolve(state, &event);
            version = Some(recorded.version);
            position = recorded.position;
        }
        if position == 0 && version.is_some() {
            // loaded wholly from a snapshot: find the last event's position
            if let Some(last) = self.store.read_stream_page(&stream, i64::MAX, true, 1).await?.pop() {
                position = last.position;
            }
        }
        Ok(Loaded { state, version, position })
    }

    /// The aggregate's current state for the checks a request makes around its
    /// command: this process's cached state plus what was appended since (only the
    /// stream's tail is read), or loaded in full and then cached.
    pub async fn load_current<A: Aggregate>(&self, id: Uuid) -> Result<Loaded<A::State>, StoreError> {
        let stream = stream_name(A::CATEGORY, id);
        let epoch = self.epoch();
        let loaded = self.load_cached::<A>(id, &stream).await?;
        if let Some(version) = loaded.version
            && epoch == self.epoch()
            && self.local.get(&stream).is_none_or(|c| c.version < version || c.epoch != epoch)
        {
            let state = Arc::new(loaded.state.clone());
            self.local.put(&stream, Some(CachedState { version, position: loaded.position, epoch, state }));
        }
        Ok(loaded)
    }

    /// Loads from this process's cached state plus what was appended since, or in full.
    async fn load_cached<A: Aggregate>(&self, id: Uuid, stream: &str) -> Result<Loaded<A::State>, StoreError> {
        let Some(cached) = self.local.get(stream).filter(|c| c.epoch == self.epoch()) else {
            return self.load::<A>(id).await;
        };
        let Some(state) = cached.state.downcast_ref::<A::State>() else { return self.load::<A>(id).await };
        let mut loaded = Loaded { state: state.clone(), version: Some(cached.version), position: cached.position };
        let mut events = self.store.read_stream(stream, cached.version + 1);
        while let Some(recorded) = events.try_next().await? {
            let event: A::Event = codec::decode(&recorded, &self.upcasters)?;
            loaded.state = A::evolve(loaded.state, &event);
            loaded.version = Some(recorded.version);
            loaded.position = recorded.position;
        }
        Ok(loaded)
    }

    /// Decides `command` on aggregate `id` and appends the result.
    ///
    /// Commands on one stream queue for its lock; whoever takes the lock decides every
    /// queued command one after the other, each on the state the ones before it leave,
    /// and appends them as one chain (one group commit): a hot stream gets a whole
    /// queue per commit round trip, not one command. A command whose predecessor in the
    /// chain was not appended, and a refusal or no-op decided on a state not yet
    /// committed, is decided again alone afterwards. The work runs on a task of its
    /// own, so a caller that goes away does not take the others' answers with it.
    pub async fn handle<A>(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<CommandOutcome<A::Event>, CommandError>
    where
        A: Aggregate,
        A::Command: Clone + 'static,
    {
        let stream = stream_name(A::CATEGORY, id);
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.local.enqueue(&stream, Box::new(Job::<A> { command, meta: meta.clone(), reply }));
        let this = self.clone();
        tokio::spawn(async move {
            let lock = this.local.lock_for(&stream);
            let _queued = lock.lock().await;
            let jobs = this.local.take::<A>(&stream);
            if !jobs.is_empty() {
                this.run_chain::<A>(id, &stream, jobs).await;
            }
        });
        answer.await.unwrap_or(Err(CommandError::Store(StoreError::LostReply)))
    }

    /// Decides `jobs` (queued on `stream`, whose lock is held) in order and appends them
    /// as one chain; answers each.
    async fn run_chain<A>(&self, id: Uuid, stream: &str, jobs: Vec<Job<A>>)
    where
        A: Aggregate,
        A::Command: Clone,
    {
        let mut jobs = jobs.into_iter();
        if jobs.len() == 1 {
            if let Some(job) = jobs.next() {
                self.alone(id, stream, job).await;
            }
            return;
        }
        let epoch = self.epoch();
        let loaded = match self.load_cached::<A>(id, stream).await {
            Ok(l) => l,
            Err(_) => {
                // Each alone: each hears the store's error itself.
                self.local.put(stream, None);
                for job in jobs {
                    self.alone(id, stream, job).await;
                }
                return;
            }
        };
        let mut before = loaded.version;
        let (mut state, mut version, mut position) = (loaded.state, loaded.version, loaded.position);
        let mut chain: Vec<Decided<A>> = Vec::new();
        let mut appends: Vec<(AppendMeta, Vec<StreamAppend>)> = Vec::new();
        // Decided again alone once the chain is in, in their order of arrival: their
        // decision rested on state not yet committed, or they came after a pinned one.
        let mut again: Vec<(usize, Job<A>)> = Vec::new();
        let mut jobs = jobs.enumerate();
        while let Some((index, job)) = jobs.next() {
            if job.meta.if_match.is_some() {
                if !chain.is_empty() {
                    // A pinned version is checked on committed state, in its turn: the
                    // chain ends before it.
                    again.push((index, job));
                    again.extend(jobs.by_ref());
                    break;
                }
                self.alone(id, stream, job).await;
                match self.load_cached::<A>(id, stream).await {
                    Ok(l) => {
                        (state, version, position, before) = (l.state, l.version, l.position, l.version);
                    }
                    Err(_) => {
                        again.extend(jobs.by_ref());
                        break;
                    }
                }
                continue;
            }
            let ctx = Context { actor: job.meta.actor.clone(), now: self.now() };
            match A::decide(&state, job.command.clone(), &ctx) {
                Ok(events) if !events.is_empty() => match self.encode_sealed::<A>(id, &events).await {
                    Ok(encoded) => {
                        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        let append = StreamAppend { stream: stream.to_owned(), expected, events: encoded };
                        appends.push((append_meta(&job.meta), vec![append]));
                        version = Some(version.unwrap_or(-1) + events.len() as i64);
                        state = events.iter().fold(state, A::evolve);
                        chain.push(Decided { index, job, events });
                    }
                    Err(e) => {
                        let _ = job.reply.send(Err(e.into()));
                    }
                },
                // Refused, or nothing to do: final only on committed state.
                _ if !chain.is_empty() => again.push((index, job)),
                Ok(_) => {
                    let outcome = CommandOutcome {
                        stream: stream.to_owned(),
                        position,
                        version: version.unwrap_or(-1),
                        events: Vec::new(),
                        duplicate: false,
                    };
                    let _ = job.reply.send(Ok(outcome));
                }
                Err(refused) => {
                    let r = self.refused(stream, &job.meta, refused).await;
                    let _ = job.reply.send(r);
                }
            }
        }
        let decided_any = !chain.is_empty();
        let results = if appends.is_empty() { Vec::new() } else { self.store.append_chain(appends).await };
        let mut whole = results.len() == chain.len();
        let mut last = None;
        for (decided, result) in
            chain.into_iter().zip(results.into_iter().map(Some).chain(std::iter::repeat_with(|| None)))
        {
            match result {
                Some(Ok(r)) if r.duplicate => {
                    // A repeat of a command appended before: answered with its first result.
                    whole = false;
                    let _ = decided.job.reply.send(Ok(self.repeat_outcome(stream, r)));
                }
                Some(Ok(r)) => {
                    metrics::counter!("gather_store_appends_total").increment(1);
                    let mine = r.streams.iter().find(|s| s.stream == stream);
                    let (position, v) = mine.map_or((r.last_position(), -1), |s| (s.last_position, s.version));
                    last = Some((position, v));
                    let outcome = CommandOutcome {
                        stream: stream.to_owned(),
                        position,
                        version: v,
                        events: decided.events,
                        duplicate: false,
                    };
                    let _ = decided.job.reply.send(Ok(outcome));
                }
                _ => {
                    whole = false;
                    metrics_conflict();
                    again.push((decided.index, decided.job));
                }
            }
        }
        match last {
            Some((position, v)) if whole && epoch == self.epoch() => {
                self.local
                    .put(stream, Some(CachedState { version: v, position, epoch, state: Arc::new(state.clone()) }));
                self.maybe_snapshot::<A>(stream, before.unwrap_or(-1), v, state);
            }
            // Decided but not all appended: the state in hand is not the stream's.
            _ if decided_any => self.local.put(stream, None),
            _ => {}
        }
        again.sort_by_key(|(index, _)| *index);
        for (_, job) in again {
            self.alone(id, stream, job).await;
        }
    }

    /// Decides and appends one queued job on its own (the stream's lock is held) and
    /// answers it.
    async fn alone<A>(&self, id: Uuid, stream: &str, job: Job<A>)
    where
        A: Aggregate,
        A::Command: Clone,
    {
        let no_extra = |_: &[A::Event]| Vec::new();
        let r = self.decide_and_append::<A, _>(id, stream, job.command, &job.meta, &no_extra).await;
        let _ = job.reply.send(r);
    }

    /// The answer to a refused command: the refusal, unless a racing repeat of this very
    /// command appended first (then its first result).
    async fn refused<E>(
        &self,
        stream: &str,
        meta: &CommandMeta,
        refused: DomainError,
    ) -> Result<CommandOutcome<E>, CommandError> {
        match self.store.recorded(meta.command_id).await? {
            Some(first) => Ok(self.repeat_outcome(stream, first)),
            None => Err(refused.into()),
        }
    }

    /// The events encoded, their personal fields sealed.
    async fn encode_sealed<A: Aggregate>(&self, id: Uuid, events: &[A::Event]) -> Result<Vec<NewEvent>, StoreError> {
        let mut encoded = events
            .iter()
            .map(codec::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Invalid(format!("event not serializable: {e}")))?;
        if let Some(vault) = self.store.vault() {
            for (event, new) in events.iter().zip(encoded.iter_mut()) {
                vault.seal(id, event, new).await?;
            }
        }
        Ok(encoded)
    }

    /// Like [`handle`](Self::handle), appending `extra` streams (built from the decided
    /// events) in the same atomic append, e.g. a uniqueness reservation.
    pub async fn handle_with<A>(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
        extra: impl Fn(&[A::Event]) -> Vec<StreamAppend> + Send,
    ) -> Result<CommandOutcome<A::Event>, CommandError>
    where
        A: Aggregate,
        A::Command: Clone,
    {
        let stream = stream_name(A::CATEGORY, id);
        let lock = self.local.lock_for(&stream);
        let _queued = lock.lock().await;
        self.decide_and_append::<A, _>(id, &stream, command, meta, &extra).await
    }

    /// Load → decide → append for one command, retrying on conflicts; the caller holds
    /// the stream's lock.
    async fn decide_and_append<A, F>(
        &self,
        id: Uuid,
        stream: &str,
        command: A::Command,
        meta: &CommandMeta,
        extra: &F,
    ) -> Result<CommandOutcome<A::Event>, CommandError>
    where
        A: Aggregate,
        A::Command: Clone,
        F: Fn(&[A::Event]) -> Vec<StreamAppend> + Send + ?Sized,
    {
        let stream = stream.to_owned();
        let mut attempt = 0;
        loop {
            // The vault's epoch before the load: a shred after it makes this state stale.
            let epoch = self.epoch();
            let loaded = match self.load_cached::<A>(id, &stream).await {
                Ok(l) => l,
                Err(e) => {
                    self.local.put(&stream, None);
                    return Err(e.into());
                }
            };
            if let Some(pinned) = meta.if_match
                && loaded.version != Some(pinned)
            {
                return Err(CommandError::PreconditionFailed { actual: loaded.version });
            }
            let ctx = Context { actor: meta.actor.clone(), now: self.now() };
            let events = match A::decide(&loaded.state, command.clone(), &ctx) {
                Ok(events) => events,
                Err(refused) => return self.refused(&stream, meta, refused).await,
            };
            if events.is_empty() {
                return Ok(CommandOutcome {
                    stream,
                    position: loaded.position,
                    version: loaded.version.unwrap_or(-1),
                    events,
                    duplicate: false,
                });
            }
            let encoded = self.encode_sealed::<A>(id, &events).await?;
            let expected = match loaded.version {
                Some(v) => ExpectedVersion::Exact(v),
                None => ExpectedVersion::NoStream,
            };
            let mut appends = vec![StreamAppend { stream: stream.clone(), expected, events: encoded }];
            appends.extend(extra(&events));
            match self.append_all(&append_meta(meta), appends).await {
                Ok(result) => {
                    metrics::counter!("gather_store_appends_total").increment(1);
                    return Ok(self.finish::<A>(stream, loaded, events, result, epoch));
                }
                Err(StoreError::Conflict { stream: s, actual, .. }) => {
                    self.local.put(&stream, None);
                    if s != stream {
                        return Err(CommandError::Taken { stream: s });
                    }
                    if meta.if_match.is_some() {
                        return Err(CommandError::PreconditionFailed { actual });
                    }
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(CommandError::Contention { stream });
                    }
                    let jitter = rand::rng().random_range(0..(1u64 << attempt.min(6)));
                    tracing::debug!(%stream, attempt, "conflict; deciding again on fresh state");
                    metrics_conflict();
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Appends atomically where the backend can; otherwise (KurrentDB) reserves the
    /// extra streams first, then appends the main one, and compensates on failure by
    /// appending `ReservationReleased` to what it reserved (ARCHITECTURE.md decision 5).
    async fn append_all(&self, meta: &AppendMeta, mut appends: Vec<StreamAppend>) -> Result<AppendResult, StoreError> {
        if appends.len() == 1 || self.store.capabilities().multi_stream_append {
            return self.store.append(meta, appends).await;
        }
        let main = appends.remove(0);
        let mut reserved: Vec<StreamResult> = Vec::new();
        for (i, mut extra) in appends.into_iter().enumerate() {
            if extra.expected == ExpectedVersion::NoStream
                && let Some(last) = self.store.read_stream_page(&extra.stream, i64::MAX, true, 1).await?.pop()
                && last.event_type == RESERVATION_RELEASED
            {
                // a released reservation may be taken again
                extra.expected = ExpectedVersion::Exact(last.version);
            }
            let sub = AppendMeta { command_id: derived_id(meta.command_id, i as u32 + 1), ..meta.clone() };
            match self.store.append(&sub, vec![extra]).await {
                Ok(r) => reserved.extend(r.streams),
                Err(e) => {
                    self.release(meta, &reserved).await;
                    return Err(e);
                }
            }
        }
        match self.store.append(meta, vec![main]).await {
            Ok(mut r) => {
                r.streams.extend(reserved);
                Ok(r)
            }
            Err(e) => {
                self.release(meta, &reserved).await;
                Err(e)
            }
        }
    }

    async fn release(&self, meta: &AppendMeta, reserved: &[StreamResult]) {
        for r in reserved {
            let event = NewEvent {
                event_id: Uuid::now_v7(),
                event_type: RESERVATION_RELEASED.into(),
                schema_version: 1,
                data: serde_json::json!({ "command_id": meta.command_id }),
            };
            let append = StreamAppend {
                stream: r.stream.clone(),
                expected: ExpectedVersion::Exact(r.version),
                events: vec![event],
            };
            let m = AppendMeta { command_id: Uuid::now_v7(), causation_id: Some(meta.command_id), ..meta.clone() };
            if let Err(e) = self.store.append(&m, vec![append]).await {
                tracing::error!(stream = %r.stream, error = %e, "could not release a reservation; release it by hand");
            }
        }
    }

    fn finish<A: Aggregate>(
        &self,
        stream: String,
        loaded: Loaded<A::State>,
        events: Vec<A::Event>,
        result: AppendResult,
        epoch: u64,
    ) -> CommandOutcome<A::Event> {
        let mine = result.streams.iter().find(|s| s.stream == stream);
        let (position, version) = mine.map_or((result.last_position(), -1), |s| (s.last_position, s.version));
        if result.duplicate {
            return self.repeat_outcome(&stream, result);
        }
        let before = loaded.version.unwrap_or(-1);
        let state = events.iter().fold(loaded.state, A::evolve);
        if epoch != self.epoch() {
            // A shred since the load: this state may hold what is now forgotten.
            self.local.put(&stream, None);
            return CommandOutcome { stream, position, version, events, duplicate: false };
        }
        self.local.put(&stream, Some(CachedState { version, position, epoch, state: Arc::new(state.clone()) }));
        self.maybe_snapshot::<A>(&stream, before, version, state);
        CommandOutcome { stream, position, version, events, duplicate: false }
    }

    /// The answer to a repeated command id: where its first result landed (the first
    /// try may have decided on another stream, a new id per try).
    fn repeat_outcome<E>(&self, stream: &str, result: AppendResult) -> CommandOutcome<E> {
        let mine = result.streams.iter().find(|s| s.stream == stream);
        let (position, version) = mine.map_or((result.last_position(), -1), |s| (s.last_position, s.version));
        let first = result.streams.first();
        let stream = first.map(|s| s.stream.clone()).unwrap_or_else(|| stream.to_owned());
        let (position, version) = first.map_or((position, version), |s| (s.last_position, s.version));
        self.local.put(&stream, None);
        CommandOutcome { stream, position, version, events: Vec::new(), duplicate: true }
    }

    /// Saves a snapshot of `state` (at `version`) on a task of its own when the append
    /// from `before` crossed a multiple of the snapshot interval.
    fn maybe_snapshot<A: Aggregate>(&self, stream: &str, before: i64, version: i64, state: A::State) {
        if self.snapshot_every > 0 && (version + 1) / self.snapshot_every > (before + 1) / self.snapshot_every {
            let stream = stream.to_owned();
            let store = self.store.clone();
            let name = stream.clone();
            let entity = stream.split_once('-').and_then(|(_, id)| Uuid::parse_str(id).ok()).unwrap_or_default();
            tokio::spawn(async move {
                let mut snapshot = match serde_json::to_value(&state) {
                    Ok(state) => Snapshot { version, state_version: A::STATE_VERSION as i32, state },
                    Err(e) => return tracing::warn!(stream = %name, error = %e, "state not serializable"),
                };
                if let Some(vault) = store.vault() {
                    let (paths, by_address) = (A::PERSONAL_STATE, A::PERSONAL_STATE_BY_ADDRESS);
                    // Under live keys only: a subject without one was shredded since.
                    let owner = (entity, by_address);
                    let new_keys = crate::store::vault::NewKeys::UnlessShredded;
                    let sealed = vault.seal_fields(entity, &mut snapshot.state, paths, owner, new_keys).await;
                    if let Err(e) = sealed {
                        return tracing::debug!(stream = %name, error = %e, "no snapshot: its data could not be sealed");
                    }
                }
                if let Err(e) = store.save_snapshot(&name, &snapshot).await {
                    tracing::warn!(stream = %name, error = %e, "could not save a snapshot");
                }
            });
        }
    }
}

/// The append metadata of a command.
fn append_meta(meta: &CommandMeta) -> AppendMeta {
    AppendMeta {
        command_id: meta.command_id,
        correlation_id: meta.correlation_id,
        causation_id: meta.causation_id,
        actor: Some(meta.actor.id),
    }
}

/// A command id derived from another and an index (stable, distinct per index).
fn derived_id(command_id: Uuid, index: u32) -> Uuid {
    crate::ids::derived([command_id.as_bytes().as_slice(), &index.to_be_bytes()].concat())
}

fn metrics_conflict() {
    metrics::counter!("gather_store_conflicts_total").increment(1);
    CONFLICTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Conflicts retried since start (for benchmarks and metrics).
pub static CONFLICTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
