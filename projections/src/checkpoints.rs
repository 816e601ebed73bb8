//! Read-your-writes across processes: a query waits until the projections it reads have
//! stored a checkpoint at or past a position, as the database holds them (so any
//! process's projectors count, and a failed projection delays only the queries that
//! read it). Waiters re-read the stored checkpoints when woken: by Postgres
//! LISTEN/NOTIFY on [`CHECKPOINT_CHANNEL`] (every checkpoint write notifies at commit),
//! or in-process by this process's own projectors; a slow fallback tick covers a lost
//! listener connection. There is no tight poll.
//!
//! One task per process re-reads every stored checkpoint when woken (one query, however
//! many requests wait; while nobody waits, at most ten a second) and publishes the
//! result; queries answer from it. A published
//! checkpoint was stored before it was read, so it is a lower bound of what a read
//! model holds afterwards: `Gather-Position` from it never overstates, and a wait that
//! sees the target reached is over.

use crate::runtime::{CHECKPOINT_CHANNEL, Projectors};
use gather_store::Checkpoint;
use gather_store::db::Db;
use gather_store::on_db_read;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often waiters re-read even without a notification (a safety net only).
const FALLBACK: Duration = Duration::from_secs(1);

/// Every stored checkpoint, by projection name, as last read.
type Snapshot = Arc<HashMap<String, Checkpoint>>;

/// Stored checkpoints, and a signal that one of them may have moved.
#[derive(Clone)]
pub struct Checkpoints {
    db: Db,
    /// Held so the refresher keeps its wake-up signal while any handle exists.
    _tick: Arc<watch::Sender<u64>>,
    /// The last read of every checkpoint (None until the first read).
    known: watch::Receiver<Option<Snapshot>>,
    /// Requests waiting for a position: while there are any, every wake-up is read at
    /// once; otherwise reads are spaced by [`IDLE_REFRESH`] (a write-heavy load would
    /// otherwise re-read the table on every projector commit for nobody).
    waiters: Arc<Waiters>,
}

/// Who is waiting, and a wake-up for the refresher when someone starts to.
#[derive(Default)]
struct Waiters {
    count: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::Notify,
}

/// Counts one waiter while alive.
struct Waiting<'a>(&'a Waiters);

impl<'a> Waiting<'a> {
    fn new(w: &'a Waiters) -> Waiting<'a> {
        w.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        w.arrived.notify_one();
        Waiting(w)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How stale the copy may grow while nobody waits (`Gather-Position` of plain reads
/// lags at most this much behind the stored checkpoints).
const IDLE_REFRESH: Duration = Duration::from_millis(100);

/// Why a wait ended without the position.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The projections did not get there in time: answer 503 with `Retry-After`.
    #[error("read models have not reached the position yet")]
    Timeout,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Checkpoints {
    /// Starts listening (Postgres) and following this process's projectors.
    pub fn start(db: Db, projectors: &Projectors, shutdown: watch::Receiver<bool>) -> Checkpoints {
        let (tick, _) = watch::channel(0u64);
        let tick = Arc::new(tick);
        for mut rx in projectors.watchers() {
            let tick = tick.clone();
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    tick.send_modify(|n| *n += 1);
                }
            });
        }
        if let Db::Postgres(pool) = &db {
            tokio::spawn(listen(pool.clone(), CHECKPOINT_CHANNEL, tick.clone(), shutdown.clone()));
        }
        let (publish, known) = watch::channel(None);
        let waiters = Arc::new(Waiters::default());
        tokio::spawn(refresh(db.clone(), tick.subscribe(), publish, waiters.clone(), shutdown));
        Checkpoints { db, _tick: tick, known, waiters }
    }

    /// The lowest checkpoint of `names` in `snapshot` (START for one that has none yet).
    fn lowest_in(snapshot: &HashMap<String, Checkpoint>, names: &[&str]) -> Checkpoint {
        names.iter().map(|n| snapshot.get(*n).copied().unwrap_or(Checkpoint::START)).min().unwrap_or(Checkpoint::START)
    }

    /// The lowest stored checkpoint of `names` (START for one that has none yet), as
    /// last read (at most one wake-up old; read from the database before the first read).
    pub async fn lowest(&self, names: &[&str]) -> Result<Checkpoint, sqlx::Error> {
        if names.is_empty() {
            return Ok(Checkpoint::START);
        }
        if let Some(snapshot) = self.known.borrow().as_ref() {
            return Ok(Self::lowest_in(snapshot, names));
        }
        self.stored_lowest(names).await
    }

    /// [`Checkpoints::lowest`] read from the database now.
    pub async fn stored_lowest(&self, names: &[&str]) -> Result<Checkpoint, sqlx::Error> {
        Ok(Self::lowest_in(&read_all(&self.db).await?, names))
    }

    /// Waits until every one of `names` has stored `target` or later, up to `timeout`;
    /// returns the lowest of their checkpoints then.
    pub async fn wait_for(
        &self,
        names: &[&str],
        target: Checkpoint,
        timeout: Duration,
    ) -> Result<Checkpoint, WaitError> {
        let deadline = Instant::now() + timeout;
        let mut known = self.known.clone();
        let mut waiting = None;
        loop {
            // The refresher stops only at shutdown; then the database answers directly.
            let refreshed = known.has_changed().is_ok();
            let snapshot = known.borrow_and_update().clone();
            let now = match snapshot {
                Some(snapshot) if refreshed => Self::lowest_in(&snapshot, names),
                _ => self.stored_lowest(names).await?,
            };
            if now >= target {
                return Ok(now);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout);
            }
            if refreshed {
                waiting.get_or_insert_with(|| Waiting::new(&self.waiters));
                let _ = tokio::time::timeout(left.min(FALLBACK), known.changed()).await;
            } else {
                tokio::time::sleep(left.min(Duration::from_millis(50))).await;
            }
        }
    }
}

/// Every stored checkpoint, read now.
async fn read_all(db: &Db) -> Result<HashMap<String, Checkpoint>, sqlx::Error> {
    let rows: Vec<(String, i64, i64)> = on_db_read!(db, p => {
        sqlx::query_as("SELECT name, commit_id, position FROM projection_checkpoints").fetch_all(p).await
    })?;
    Ok(rows.into_iter().map(|(name, commit_id, position)| (name, Checkpoint { commit_id, position })).collect())
}

/// Re-reads every checkpoint when `tick` moves (or every [`FALLBACK`]) and publishes
/// it: one query per wake-up, however many requests read or wait; while nobody
/// waits, at most one per [`IDLE_REFRESH`].
async fn refresh(
    db: Db,
    mut tick: watch::Receiver<u64>,
    publish: watch::Sender<Option<Snapshot>>,
    waiters: Arc<Waiters>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tick.borrow_and_update();
        match read_all(&db).await {
            Ok(all) => {
                publish.send_replace(Some(Arc::new(all)));
            }
            Err(e) => tracing::warn!(error = %e, "could not read the projection checkpoints; retrying"),
        }
        tokio::select! {
            changed = tick.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(FALLBACK) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if waiters.count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::select! {
                _ = waiters.arrived.notified() => {}
                _ = tokio::time::sleep(IDLE_REFRESH) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// LISTENs on `channel` and bumps `tick` on every notification (and after every
/// reconnect, since notifications may have been missed meanwhile).
pub(crate) async fn listen(
    pool: sqlx::PgPool,
    channel: &'static str,
    tick: Arc<watch::Sender<u64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = tokio::select! {
            l = connect(&pool, channel) => l,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let mut listener = match connected {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, channel, "listener could not connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        tick.send_modify(|n| *n += 1);
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(_) => tick.send_modify(|n| *n += 1),
                    Err(e) => {
                        tracing::warn!(error = %e, channel, "listener lost its connection; reconnecting");
                        break;
                    }
                },
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

async fn connect(pool: &sqlx::PgPool, channel: &str) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
    l.listen(channel).await?;
    Ok(l)
}
