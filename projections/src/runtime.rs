//! The projector runtime.
//!
//! Each projection has a stable name (its checkpoint key). A projector reads the global
//! log after its checkpoint, applies a batch of events and writes the new checkpoint in
//! ONE transaction (ARCHITECTURE.md decision 3), then publishes its progress so queries
//! can wait for a position (`Gather-Min-Position`). A database error is retried with
//! backoff; an event that cannot be decoded stops the projector with a clear status
//! instead of being skipped.

use async_trait::async_trait;
use gather_commands::db::{Db, Tx};
use gather_commands::on_tx;
use gather_commands::store::{Checkpoint, EventStore, LogFilter, RecordedEvent, StoreError, subscribe};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

/// A read model fed by the global log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The stable name, used as the checkpoint key.
    fn name(&self) -> &'static str;
    /// Applies one event inside the batch's transaction; must be idempotent per event.
    async fn apply(&self, tx: &mut Tx, event: &RecordedEvent) -> Result<(), ProjectionError>;
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
}

impl Projectors {
    /// Starts one projector task per projection; each stops when `shutdown` flips.
    pub async fn start(
        db: Db,
        store: Arc<dyn EventStore>,
        projections: Vec<Arc<dyn Projection>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Projectors, ProjectionError> {
        let head = store.head().await?;
        let mut progress = BTreeMap::new();
        for p in projections {
            let checkpoint = load_checkpoint(&db, p.name()).await?;
            let state = if checkpoint >= head { RunState::Live } else { RunState::CatchingUp };
            let (tx, rx) = watch::channel(Progress { checkpoint, state });
            progress.insert(p.name(), rx);
            let (db, store, shutdown) = (db.clone(), store.clone(), shutdown.clone());
            tokio::spawn(async move { run(db, store, p, checkpoint, head, tx, shutdown).await });
        }
        Ok(Projectors { progress })
    }

    /// Each projector's progress, by name.
    pub fn progress(&self) -> BTreeMap<&'static str, Progress> {
        self.progress.iter().map(|(n, rx)| (*n, rx.borrow().clone())).collect()
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

async fn load_checkpoint(db: &Db, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row: Option<(i64, i64)> = gather_commands::on_db_read!(db, pool =>
        sqlx::query_as("SELECT commit_id, position FROM projection_checkpoints WHERE name = $1")
            .bind(name).fetch_optional(pool).await)?;
    Ok(row.map(|(commit_id, position)| Checkpoint { commit_id, position }).unwrap_or(Checkpoint::START))
}

async fn save_checkpoint(tx: &mut Tx, name: &str, cp: Checkpoint) -> Result<(), sqlx::Error> {
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO projection_checkpoints (name, commit_id, position) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, position = excluded.position",
    ).bind(name).bind(cp.commit_id).bind(cp.position).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

async fn apply_batch(db: &Db, projection: &dyn Projection, batch: &[RecordedEvent]) -> Result<(), ProjectionError> {
    let mut tx = db.begin().await?;
    for event in batch {
        projection.apply(&mut tx, event).await?;
    }
    if let Some(last) = batch.last() {
        save_checkpoint(&mut tx, projection.name(), last.checkpoint()).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(projection = projection.name()))]
async fn run(
    db: Db,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    from: Checkpoint,
    head: Checkpoint,
    progress: watch::Sender<Progress>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sub = subscribe(store, from, LogFilter::all());
    let mut backoff = Duration::from_millis(50);
    loop {
        let batch = tokio::select! {
            b = sub.next_batch(500) => b,
            _ = shutdown.wait_for(|s| *s) => return,
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
        loop {
            match apply_batch(&db, projection.as_ref(), &batch).await {
                Ok(()) => {
                    backoff = Duration::from_millis(50);
                    break;
                }
                Err(ProjectionError::Store(e)) => {
                    tracing::error!(error = %e, "projector stopped: an event cannot be applied");
                    progress.send_modify(|p| p.state = RunState::Failed(error_chain(&e)));
                    return;
                }
                Err(ProjectionError::Database(e)) => {
                    tracing::warn!(error = %e, "read model write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Some(last) = batch.last() {
            let cp = last.checkpoint();
            progress.send_modify(|p| {
                p.checkpoint = cp;
                if cp >= head {
                    p.state = RunState::Live;
                }
            });
        }
    }
}

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
