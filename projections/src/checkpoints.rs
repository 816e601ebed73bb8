//! Read-your-writes across processes: a query waits until the projections it reads have
//! stored a checkpoint at or past a position, as the database holds them (so any
//! process's projectors count, and a failed projection delays only the queries that
//! read it). Waiters re-read the stored checkpoints when woken: by Postgres
//! LISTEN/NOTIFY on [`CHECKPOINT_CHANNEL`] (every checkpoint write notifies at commit),
//! or in-process by this process's own projectors; a slow fallback tick covers a lost
//! listener connection. There is no tight poll.

use crate::runtime::{CHECKPOINT_CHANNEL, Projectors};
use gather_store::Checkpoint;
use gather_store::db::Db;
use gather_store::on_db_read;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often waiters re-read even without a notification (a safety net only).
const FALLBACK: Duration = Duration::from_secs(1);

/// Stored checkpoints, and a signal that one of them may have moved.
#[derive(Clone)]
pub struct Checkpoints {
    db: Db,
    tick: Arc<watch::Sender<u64>>,
}

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
            tokio::spawn(listen(pool.clone(), CHECKPOINT_CHANNEL, tick.clone(), shutdown));
        }
        Checkpoints { db, tick }
    }

    /// The lowest stored checkpoint of `names` (START for one that has none yet).
    pub async fn lowest(&self, names: &[&str]) -> Result<Checkpoint, sqlx::Error> {
        if names.is_empty() {
            return Ok(Checkpoint::START);
        }
        let list: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let sql =
            format!("SELECT name, commit_id, position FROM projection_checkpoints WHERE name IN ({})", list.join(", "));
        let rows: Vec<(String, i64, i64)> = on_db_read!(&self.db, p => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for n in names {
                q = q.bind(*n);
            }
            q.fetch_all(p).await
        })?;
        if rows.len() < names.len() {
            return Ok(Checkpoint::START);
        }
        Ok(rows
            .into_iter()
            .map(|(_, commit_id, position)| Checkpoint { commit_id, position })
            .min()
            .unwrap_or(Checkpoint::START))
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
        let mut rx = self.tick.subscribe();
        loop {
            rx.borrow_and_update();
            let now = self.lowest(names).await?;
            if now >= target {
                return Ok(now);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout);
            }
            let _ = tokio::time::timeout(left.min(FALLBACK), rx.changed()).await;
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
