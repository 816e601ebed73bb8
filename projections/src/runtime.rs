//! The projector runtime.
//!
//! Each projection has a stable name (its checkpoint key). A projector reads the global
//! log after its checkpoint, applies a batch of events and writes the new checkpoint in
//! ONE transaction (ARCHITECTURE.md decision 3), then publishes its progress so queries
//! can wait for a position (`Gather-Min-Position`). A database error is retried with
//! backoff; an event that cannot be decoded stops that projector alone (the others keep
//! running): the events before it are applied, the fault is recorded (see [`faults`](crate::faults))
//! and the projector waits for an operator to retry or skip it, instead of skipping it.
//!
//! A batch is applied only if the stored checkpoint is still the one the projector
//! read from (the row is locked first). When it moved (a second projector process got
//! there first, or a rebuild swapped in a fresh copy), the projector follows the stored
//! checkpoint instead of applying the batch twice.

use crate::faults::{self, Fault};
use async_trait::async_trait;
use gather_store::db::{Db, Tx};
use gather_store::on_tx;
use gather_store::{Checkpoint, EventStore, LogFilter, RecordedEvent, StoreError, subscribe};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event could not be read: the projector stops; fix the code or add an upcaster.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database failed: retried with backoff.
    #[error("read model database error")]
    Database(#[from] sqlx::Error),
}

/// The suffix of the shadow tables a rebuild fills beside the live ones.
pub const SHADOW_SUFFIX: &str = "__rebuild";

/// Which copy of its tables a projection writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The tables queries read.
    Live,
    /// The fresh copies a rebuild fills before swapping them in.
    Shadow,
}

impl Target {
    /// The name of table `base` in this copy.
    pub fn table(self, base: &str) -> String {
        match self {
            Target::Live => base.to_owned(),
            Target::Shadow => format!("{base}{SHADOW_SUFFIX}"),
        }
    }
}

/// A read model fed by the global log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The stable name, used as the checkpoint key.
    fn name(&self) -> &'static str;
    /// The tables this projection alone writes. A projection that owns tables can be
    /// rebuilt beside its live copy; one with side effects (email, timers) owns none.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
    /// The tables it owns on one backend: [`tables`](Projection::tables) plus any that
    /// exist on one backend only (SQLite's FTS5 index of the search projection).
    fn backend_tables(&self, postgres: bool) -> Vec<&'static str> {
        let _ = postgres;
        self.tables().to_vec()
    }
    /// Applies one event inside the batch's transaction, to the tables of `at`.
    async fn apply(&self, tx: &mut Tx, at: Target, event: &RecordedEvent) -> Result<(), ProjectionError>;
    /// Applies a batch in order. The default applies one event at a time; a projection
    /// with many writes per event folds the batch in memory and writes each changed row
    /// once. An event that cannot be decoded is reported with its index.
    async fn apply_all(&self, tx: &mut Tx, at: Target, events: &[RecordedEvent]) -> Result<(), BatchError> {
        for (index, event) in events.iter().enumerate() {
            self.apply(tx, at, event).await.map_err(|error| BatchError { index, error })?;
        }
        Ok(())
    }
}

/// The ids a batch fold changed, each once, in the order first changed (the rows to
/// write back at the end of the batch).
#[derive(Debug, Default)]
pub(crate) struct Touched {
    order: Vec<uuid::Uuid>,
    seen: std::collections::HashSet<uuid::Uuid>,
}

impl Touched {
    /// Records that `id` changed.
    pub(crate) fn mark(&mut self, id: uuid::Uuid) {
        if self.seen.insert(id) {
            self.order.push(id);
        }
    }

    /// The changed ids, in order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, uuid::Uuid> {
        self.order.iter()
    }
}

/// Why a batch could not be applied, and at which event.
#[derive(Debug, thiserror::Error)]
#[error("event {index} of the batch: {error}")]
pub struct BatchError {
    /// The index in the batch of the event that failed (0 when the batch's own writes
    /// failed).
    pub index: usize,
    /// What failed.
    #[source]
    pub error: ProjectionError,
}

impl From<sqlx::Error> for BatchError {
    fn from(e: sqlx::Error) -> Self {
        BatchError { index: 0, error: ProjectionError::Database(e) }
    }
}

/// A projector's state, for readiness and the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Reading the log up to the head seen at start.
    CatchingUp,
    /// Caught up with the head seen at start; following live.
    Live,
    /// Stopped on an error that retrying cannot fix.
    Failed(String),
}

/// A projector's published progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Everything up to here is applied.
    pub checkpoint: Checkpoint,
    /// Where it stands.
    pub state: RunState,
}

/// The running projectors and their progress.
#[derive(Clone, Default)]
pub struct Projectors {
    progress: BTreeMap<&'static str, watch::Receiver<Progress>>,
    resync: BTreeMap<&'static str, Arc<Notify>>,
    tasks: Vec<tokio::task::AbortHandle>,
    /// Closed once every projector task has returned (each holds a sender).
    done: Arc<tokio::sync::Mutex<Option<tokio::sync::mpsc::Receiver<()>>>>,
}

impl Projectors {
    /// Starts one projector task per projection; each stops when `shutdown` flips.
    pub async fn start(
        db: Db,
        store: Arc<dyn EventStore>,
        projections: Vec<Arc<dyn Projection>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Projectors, ProjectionError> {
        // The projectors that are caught up read each new page of the log once between them.
        let store: Arc<dyn EventStore> = Arc::new(crate::tail::SharedTail::new(store));
        let head = store.head().await?;
        let (mut progress, mut resync, mut tasks) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
        let (running, done) = tokio::sync::mpsc::channel::<()>(1);
        for p in projections {
            let checkpoint = load_checkpoint(&db, p.name()).await?;
            let state = if checkpoint >= head { RunState::Live } else { RunState::CatchingUp };
            let (tx, rx) = watch::channel(Progress { checkpoint, state });
            progress.insert(p.name(), rx);
            let notify = Arc::new(Notify::new());
            resync.insert(p.name(), notify.clone());
            let (db, store, shutdown) = (db.clone(), store.clone(), shutdown.clone());
            let task = Task { db, store, projection: p, head, progress: tx, resync: notify };
            let running = running.clone();
            tasks.push(
                tokio::spawn(async move {
                    let _running = running;
                    task.run(checkpoint, shutdown).await
                })
                .abort_handle(),
            );
        }
        drop(running);
        Ok(Projectors { progress, resync, tasks, done: Arc::new(tokio::sync::Mutex::new(Some(done))) })
    }

    /// Waits until every projector task has returned (after `shutdown` flipped, each
    /// finishes and commits the batch it is applying first).
    pub async fn stopped(&self) {
        let mut done = self.done.lock().await;
        if let Some(rx) = done.as_mut() {
            while rx.recv().await.is_some() {}
        }
    }

    /// Cancels every projector task at its next await point, as if the process died
    /// there (an open batch transaction rolls back). Used to test crash recovery; a
    /// normal stop flips `shutdown` instead.
    pub fn abort(&self) {
        self.tasks.iter().for_each(tokio::task::AbortHandle::abort);
    }

    /// Asks the projector of `name` (if it runs here) to re-read its stored checkpoint
    /// now rather than at its next batch; a rebuild calls it after its swap.
    pub fn resync(&self, name: &str) {
        if let Some(n) = self.resync.get(name) {
            n.notify_one();
        }
    }

    /// Each projector's progress, by name.
    pub fn progress(&self) -> BTreeMap<&'static str, Progress> {
        self.progress.iter().map(|(n, rx)| (*n, rx.borrow().clone())).collect()
    }

    /// A receiver of each local projector's progress (to be woken when one moves).
    pub fn watchers(&self) -> Vec<watch::Receiver<Progress>> {
        self.progress.values().cloned().collect()
    }

    /// Whether every projector has caught up with the head it saw at start.
    pub fn ready(&self) -> bool {
        self.progress.values().all(|rx| rx.borrow().state == RunState::Live)
    }

    /// The lowest checkpoint over all projectors: what every read model reflects.
    pub fn checkpoint(&self) -> Checkpoint {
        self.progress.values().map(|rx| rx.borrow().checkpoint).min().unwrap_or(Checkpoint::START)
    }

    /// Waits until every projector has applied `target`, or `timeout` passes.
    pub async fn wait_for(&self, target: Checkpoint, timeout: Duration) -> bool {
        let wait_all = async {
            for rx in self.progress.values() {
                let mut rx = rx.clone();
                if rx.wait_for(|p| p.checkpoint >= target).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, wait_all).await.unwrap_or(false)
    }
}

/// The stored checkpoint of projection `name` (START before its first batch).
pub async fn load_checkpoint(db: &Db, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row: Option<(i64, i64)> = gather_store::on_db_read!(db, pool =>
        sqlx::query_as("SELECT commit_id, position FROM projection_checkpoints WHERE name = $1")
            .bind(name).fetch_optional(pool).await)?;
    Ok(row.map(|(commit_id, position)| Checkpoint { commit_id, position }).unwrap_or(Checkpoint::START))
}

/// Reads the checkpoint of `name` inside `tx` and locks its row until commit, creating
/// the row (at START) if it is missing, so there is always a row to lock: a no-op upsert
/// takes the row lock on Postgres; on SQLite the single writer serializes anyway.
pub async fn lock_checkpoint(tx: &mut Tx, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let (commit_id, position): (i64, i64) = on_tx!(tx, c => sqlx::query_as(
        "INSERT INTO projection_checkpoints (name, commit_id, position) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING commit_id, position",
    ).bind(name).bind(Checkpoint::START.commit_id).bind(Checkpoint::START.position).fetch_one(&mut **c).await)?;
    Ok(Checkpoint { commit_id, position })
}

/// Writes the checkpoint of `name` inside `tx`.
pub async fn save_checkpoint(tx: &mut Tx, name: &str, cp: Checkpoint) -> Result<(), sqlx::Error> {
    const UPSERT: &str = "INSERT INTO projection_checkpoints (name, commit_id, position) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, position = excluded.position";
    match tx {
        Tx::Postgres(c) => {
            // One round trip. The notification is delivered at commit: read-your-writes
            // waiters in every process re-read then.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH saved AS ({UPSERT} RETURNING 1) SELECT pg_notify($4, $1) FROM saved"
            )))
            .bind(name)
            .bind(cp.commit_id)
            .bind(cp.position)
            .bind(CHECKPOINT_CHANNEL)
            .execute(&mut **c)
            .await?;
        }
        Tx::Sqlite(c) => {
            sqlx::query(UPSERT).bind(name).bind(cp.commit_id).bind(cp.position).execute(&mut **c).await?;
        }
    }
    Ok(())
}

/// The Postgres NOTIFY channel on which every checkpoint change is announced.
pub const CHECKPOINT_CHANNEL: &str = "gather_checkpoints";

/// Applies `batch` to the `at` copy of the projection's tables, inside `tx`.
pub async fn apply_events(
    tx: &mut Tx,
    projection: &dyn Projection,
    at: Target,
    batch: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    projection.apply_all(tx, at, batch).await.map_err(|b| b.error)
}

/// Begins a projector transaction. On Postgres it commits asynchronously
/// (`synchronous_commit = off`): a read model and its checkpoint commit together and
/// are derived from the durable log, so a crash that loses the last commits only makes
/// the projector apply those events again; the saved fsync per batch is most of a
/// write's path to being visible.
pub async fn begin(db: &Db) -> Result<Tx, sqlx::Error> {
    match db {
        // One round trip: both statements go as one simple query.
        Db::Postgres(pool) => Ok(Tx::Postgres(pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await?)),
        Db::Sqlite { .. } => db.begin().await,
    }
}

/// What became of a batch.
enum Applied {
    /// Applied; the checkpoint is the batch's last event.
    Done,
    /// Not applied: the stored checkpoint is no longer the one the batch follows.
    Moved(Checkpoint),
    /// Not applied: the event at this index cannot be applied (nothing was written).
    Faulted(usize, StoreError),
}

async fn apply_batch(
    db: &Db,
    projection: &dyn Projection,
    after: Checkpoint,
    batch: &[RecordedEvent],
) -> Result<Applied, ProjectionError> {
    let mut tx = begin(db).await?;
    let stored = lock_checkpoint(&mut tx, projection.name()).await?;
    if stored != after {
        return Ok(Applied::Moved(stored));
    }
    match projection.apply_all(&mut tx, Target::Live, batch).await {
        Ok(()) => {}
        // The transaction rolls back: the caller applies the events before it alone.
        Err(BatchError { index, error: ProjectionError::Store(e) }) => return Ok(Applied::Faulted(index, e)),
        Err(BatchError { error, .. }) => return Err(error),
    }
    if let Some(last) = batch.last() {
        save_checkpoint(&mut tx, projection.name(), last.checkpoint()).await?;
    }
    tx.commit().await?;
    Ok(Applied::Done)
}

/// Applies `before` (the events of a batch before the faulted one) and records `fault`
/// in one transaction, so the stored checkpoint stands just before the faulted event.
async fn record_fault(
    db: &Db,
    projection: &dyn Projection,
    after: Checkpoint,
    before: &[RecordedEvent],
    fault: &Fault,
) -> Result<Applied, ProjectionError> {
    let mut tx = begin(db).await?;
    let stored = lock_checkpoint(&mut tx, projection.name()).await?;
    if stored != after {
        return Ok(Applied::Moved(stored));
    }
    apply_events(&mut tx, projection, Target::Live, before).await?;
    if let Some(last) = before.last() {
        save_checkpoint(&mut tx, projection.name(), last.checkpoint()).await?;
    }
    faults::record(&mut tx, fault).await?;
    tx.commit().await?;
    Ok(Applied::Done)
}

/// One projector: its projection, where to publish progress, and what wakes it.
struct Task {
    db: Db,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    head: Checkpoint,
    progress: watch::Sender<Progress>,
    resync: Arc<Notify>,
}

impl Task {
    /// Follows the log from `from` until `shutdown` flips; stopped by a fault, it waits
    /// for an operator's decision and goes on from the stored checkpoint.
    #[tracing::instrument(skip_all, fields(projection = self.projection.name()))]
    async fn run(self, from: Checkpoint, mut shutdown: watch::Receiver<bool>) {
        let name = self.projection.name();
        let mut at = from;
        // A fault recorded before this process started stands until someone decides.
        if !self.wait_for_decision(&mut at, &mut shutdown).await {
            return;
        }
        let mut sub = subscribe(self.store.clone(), at, LogFilter::all());
        let mut backoff = Duration::from_millis(50);
        loop {
            let resync = tokio::select! {
                b = sub.next_batch(500) => Err(b),
                _ = self.resync.notified() => Ok(()),
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let batch = match resync {
                Err(batch) => batch,
                Ok(()) => {
                    match load_checkpoint(&self.db, name).await {
                        Ok(stored) if stored != at => {
                            at = stored;
                            sub = subscribe(self.store.clone(), at, LogFilter::all());
                            self.moved_to(at);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "could not re-read the checkpoint"),
                    }
                    continue;
                }
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the log; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let Some(last) = batch.last().map(|e| e.checkpoint()) else { continue };
            let mut faulted: Option<(usize, Fault)> = None;
            loop {
                let applied = match &faulted {
                    None => apply_batch(&self.db, self.projection.as_ref(), at, &batch).await,
                    Some((i, fault)) => record_fault(&self.db, self.projection.as_ref(), at, &batch[..*i], fault).await,
                };
                match applied {
                    Ok(Applied::Done) => {
                        backoff = Duration::from_millis(50);
                        match faulted.take() {
                            None => {
                                at = last;
                                self.moved_to(at);
                            }
                            Some((i, fault)) => {
                                if let Some(before) = i.checked_sub(1).and_then(|j| batch.get(j)) {
                                    at = before.checkpoint();
                                    self.moved_to(at);
                                }
                                tracing::error!(stream = %fault.stream, version = fault.version, position = fault.position,
                                    error = %fault.error, "projector stopped: an event cannot be applied; waiting for \
                                    `gather projections retry|skip`");
                                if !self.wait_for_decision(&mut at, &mut shutdown).await {
                                    return;
                                }
                            }
                        }
                        sub = subscribe(self.store.clone(), at, LogFilter::all());
                        break;
                    }
                    Ok(Applied::Moved(stored)) => {
                        tracing::info!(from = %at, to = %stored, "checkpoint moved elsewhere; following it");
                        at = stored;
                        sub = subscribe(self.store.clone(), at, LogFilter::all());
                        self.moved_to(at);
                        break;
                    }
                    Ok(Applied::Faulted(i, e)) => {
                        let event = &batch[i];
                        let fault = Fault {
                            name: name.to_owned(),
                            stream: event.stream.clone(),
                            version: event.version,
                            commit_id: event.commit_id,
                            position: event.position,
                            error: error_chain(&e),
                            failed_at: chrono::Utc::now(),
                        };
                        faulted = Some((i, fault));
                    }
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), "read model write failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// While a fault of this projection is recorded, publishes `Failed` and polls the
    /// fault row about once a second (sooner when resynced). Once an operator decided,
    /// re-reads the stored checkpoint into `at`. False when `shutdown` flipped.
    async fn wait_for_decision(&self, at: &mut Checkpoint, shutdown: &mut watch::Receiver<bool>) -> bool {
        let name = self.projection.name();
        let mut waited = false;
        loop {
            match faults::fault(&self.db, name).await {
                Ok(None) => break,
                Ok(Some(fault)) => {
                    let message = fault.message();
                    self.progress.send_if_modified(|p| {
                        let failed = RunState::Failed(message);
                        let changed = p.state != failed;
                        p.state = failed;
                        changed
                    });
                }
                Err(e) => tracing::warn!(error = %e, "could not read the projection's fault"),
            }
            waited = true;
            tokio::select! {
                _ = tokio::time::sleep(FAULT_POLL) => {}
                _ = self.resync.notified() => {}
                _ = shutdown.wait_for(|s| *s) => return false,
            }
        }
        if waited {
            let mut backoff = Duration::from_millis(50);
            loop {
                match load_checkpoint(&self.db, name).await {
                    Ok(stored) => {
                        *at = stored;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not re-read the checkpoint; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            tracing::info!(from = %at, "an operator decided on the fault; going on");
            let state = if *at >= self.head { RunState::Live } else { RunState::CatchingUp };
            self.progress.send_modify(|p| {
                p.checkpoint = *at;
                p.state = state;
            });
        }
        true
    }

    /// Publishes that everything up to `cp` is applied.
    fn moved_to(&self, cp: Checkpoint) {
        let head = self.head;
        self.progress.send_modify(|p| {
            p.checkpoint = cp;
            if cp >= head && !matches!(p.state, RunState::Failed(_)) {
                p.state = RunState::Live;
            }
        });
    }
}

/// How often a stopped projector reads its fault row for an operator's decision.
pub const FAULT_POLL: Duration = Duration::from_secs(1);

/// The error with its causes, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// How far a projection at `cp` is behind the log: the events after it (counted up to
/// [`LAG_COUNT_CAP`]) and the time the oldest of them was recorded.
pub async fn lag(db: &Db, cp: Checkpoint) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>), sqlx::Error> {
    match db {
        Db::Postgres(p) => {
            sqlx::query_as(
                "SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM events \
                 WHERE (commit_id, position) > ($1, $2) LIMIT $3) AS behind",
            )
            .bind(cp.commit_id)
            .bind(cp.position)
            .bind(LAG_COUNT_CAP)
            .fetch_one(p)
            .await
        }
        Db::Sqlite { reader, .. } => {
            sqlx::query_as(
                "SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM events \
                 WHERE position > $1 LIMIT $2) AS behind",
            )
            .bind(cp.position)
            .bind(LAG_COUNT_CAP)
            .fetch_one(reader)
            .await
        }
    }
}

/// The most events [`lag`] counts (a bigger lag reads as this many).
pub const LAG_COUNT_CAP: i64 = 100_000;
