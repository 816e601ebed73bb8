//! The Postgres backend: one function call per append, gap-free global reads.
//!
//! Appends are group-committed: concurrent `append` calls queue to a few committer
//! tasks, each of which sends up to [`MAX_BATCH`] of them in one call to
//! `gather_append_batch` (migrations/postgres/0004_group_commit.sql): one round trip and
//! one WAL flush for the batch, each append in its own subtransaction with its own
//! result. A batch that fails as a whole (a deadlock between two batches, a lost
//! connection) is retried append by append with `gather_append`.
//! Global reads order by `(commit_id, position)` and read only rows whose transaction
//! id is below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction below it
//! has finished, so no row can still appear before the returned ones.

use super::*;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Row};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};

/// The most appends one group commit carries (below Postgres' subtransaction cache of 64).
pub const MAX_BATCH: usize = 32;
/// A batch stops growing once it holds this many events: one backend applies a batch
/// serially, so big appends gain more from running side by side than from sharing a flush.
pub const MAX_BATCH_EVENTS: usize = 32;
/// How many batches may be in flight at once.
pub const COMMITTERS: usize = 4;

/// One queued append and where its answer goes.
struct Pending {
    meta: AppendMeta,
    appends: Vec<StreamAppend>,
    payload: Value,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

impl Pending {
    fn event_count(&self) -> usize {
        self.appends.iter().map(|a| a.events.len()).sum()
    }
}

/// The channel appenders notify and subscribers listen on.
pub const CHANNEL: &str = "gather_events";

/// The Postgres event store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    wake_tx: Arc<watch::Sender<u64>>,
    notify_others: Arc<Notify>,
    queue: mpsc::Sender<Pending>,
}

const COLUMNS: &str = "position, commit_id, stream, version, event_id, event_type, schema_version, data, \
                       command_id, correlation_id, causation_id, actor, recorded_at";

impl PostgresStore {
    /// A store over `pool`; spawns the LISTEN task and the coalescing NOTIFY task.
    pub fn new(pool: PgPool) -> Self {
        let (wake_tx, _) = watch::channel(0u64);
        let (queue, rx) = mpsc::channel(1024);
        let store = PostgresStore { pool, wake_tx: Arc::new(wake_tx), notify_others: Arc::new(Notify::new()), queue };
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..COMMITTERS {
            tokio::spawn(committer(store.pool.clone(), rx.clone()));
        }
        store.spawn_listener();
        store.spawn_notifier();
        store
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn bump(&self) {
        self.wake_tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes subscribers of other processes: one NOTIFY per burst of appends,
    /// outside the appends' transactions (NOTIFY inside them would serialize commits).
    fn spawn_notifier(&self) {
        let pool = self.pool.clone();
        let notify = self.notify_others.clone();
        let wake = Arc::downgrade(&self.wake_tx);
        tokio::spawn(async move {
            loop {
                notify.notified().await;
                if wake.upgrade().is_none() {
                    return;
                }
                if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&pool).await {
                    tracing::debug!(error = %e, "could not notify other processes of new events");
                }
            }
        });
    }

    /// Listens for other processes' appends; a slow poll is the fallback when the
    /// connection drops (and wakes readers waiting behind an unrelated transaction).
    fn spawn_listener(&self) {
        let pool = self.pool.clone();
        let wake = Arc::downgrade(&self.wake_tx);
        tokio::spawn(async move {
            let mut listener: Option<PgListener> = None;
            loop {
                let Some(tx) = wake.upgrade() else { return };
                drop(tx);
                if listener.is_none() {
                    match PgListener::connect_with(&pool).await {
                        Ok(mut l) => {
                            if l.listen(CHANNEL).await.is_ok() {
                                listener = Some(l);
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "could not LISTEN for new events; polling"),
                    }
                }
                let woke = match listener.as_mut() {
                    Some(l) => match tokio::time::timeout(Duration::from_millis(500), l.try_recv()).await {
                        Ok(Ok(Some(_))) => true,
                        Ok(Ok(None)) | Ok(Err(_)) => {
                            listener = None;
                            true
                        }
                        Err(_) => true, // the poll tick
                    },
                    None => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        true
                    }
                };
                if woke {
                    let Some(tx) = wake.upgrade() else { return };
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        });
    }
}

/// Reads one `events` row (every column) into a recorded event.
pub fn row_to_event(row: PgRow) -> Result<RecordedEvent, sqlx::Error> {
    Ok(RecordedEvent {
        position: row.try_get("position")?,
        commit_id: row.try_get("commit_id")?,
        stream: row.try_get("stream")?,
        version: row.try_get("version")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        data: row.try_get("data")?,
        command_id: row.try_get("command_id")?,
        correlation_id: row.try_get("correlation_id")?,
        causation_id: row.try_get("causation_id")?,
        actor: row.try_get("actor")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// Maps the function's errors to store errors.
fn map_append_error(e: sqlx::Error, appends: &[StreamAppend]) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            Some("GA409") => return conflict_from_message(db.message(), appends),
            Some("GA208") => return StoreError::DuplicateCommand,
            Some("23505") if db.constraint() == Some("events_event_id_key") => return StoreError::DuplicateEvent,
            _ => {}
        }
    }
    StoreError::Database(e)
}

/// The JSON `gather_append` takes for one call's streams.
fn append_payload(appends: &[StreamAppend]) -> Value {
    Value::Array(
        appends
            .iter()
            .map(|a| {
                let (kind, version) = a.expected.parts();
                serde_json::json!({
                    "stream": a.stream, "category": category_of(&a.stream),
                    "expected": kind, "version": version, "events": a.events,
                })
            })
            .collect(),
    )
}

/// Takes queued appends in batches and group-commits them until the store is dropped.
async fn committer(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        {
            let mut rx = queue.lock().await;
            match rx.recv().await {
                Some(p) => batch.push(p),
                None => return,
            }
            let mut events: usize = batch.iter().map(|p| p.event_count()).sum();
            while batch.len() < MAX_BATCH && events < MAX_BATCH_EVENTS {
                match rx.try_recv() {
                    Ok(p) => {
                        events += p.event_count();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
        }
        if batch.len() == 1 {
            let p = batch.pop().expect("one pending append");
            let r = append_one(&pool, &p).await;
            let _ = p.reply.send(r);
            continue;
        }
        let body: Vec<Value> = batch
            .iter()
            .map(|p| {
                serde_json::json!({
                    "command_id": p.meta.command_id, "correlation_id": p.meta.correlation_id,
                    "causation_id": p.meta.causation_id, "actor": p.meta.actor, "appends": p.payload,
                })
            })
            .collect();
        let answer = sqlx::query_scalar::<_, Value>("SELECT gather_append_batch($1)")
            .bind(Value::Array(body))
            .fetch_one(&pool)
            .await;
        match answer {
            Ok(Value::Array(results)) if results.len() == batch.len() => {
                for (p, r) in batch.into_iter().zip(results) {
                    let r = batch_result(r, &p.appends);
                    let _ = p.reply.send(r);
                }
            }
            other => {
                if let Err(e) = &other {
                    tracing::debug!(error = %e, size = batch.len(), "group commit failed; appending one by one");
                }
                for p in batch {
                    let r = append_one(&pool, &p).await;
                    let _ = p.reply.send(r);
                }
            }
        }
    }
}

/// One append on its own (a batch of one, or the fallback of a failed batch).
async fn append_one(pool: &PgPool, p: &Pending) -> Result<AppendResult, StoreError> {
    let v = sqlx::query_scalar::<_, Value>("SELECT gather_append($1, $2, $3, $4, $5)")
        .bind(p.meta.command_id)
        .bind(p.meta.correlation_id)
        .bind(p.meta.causation_id)
        .bind(p.meta.actor)
        .bind(&p.payload)
        .fetch_one(pool)
        .await
        .map_err(|e| map_append_error(e, &p.appends))?;
    serde_json::from_value(v).map_err(|e| StoreError::Invalid(format!("append result unreadable: {e}")))
}

/// Reads one entry of `gather_append_batch`'s answer.
fn batch_result(r: Value, appends: &[StreamAppend]) -> Result<AppendResult, StoreError> {
    if let Some(ok) = r.get("ok") {
        return serde_json::from_value(ok.clone())
            .map_err(|e| StoreError::Invalid(format!("append result unreadable: {e}")));
    }
    let message = r.get("message").and_then(|m| m.as_str()).unwrap_or_default();
    match r.get("error").and_then(|e| e.as_str()) {
        Some("conflict") => Err(conflict_from_message(message, appends)),
        Some("duplicate_command") => Err(StoreError::DuplicateCommand),
        Some("unique") if r.get("constraint").and_then(|c| c.as_str()) == Some("events_event_id_key") => {
            Err(StoreError::DuplicateEvent)
        }
        _ => Err(StoreError::Invalid(format!("append refused: {message}"))),
    }
}

fn conflict_from_message(msg: &str, appends: &[StreamAppend]) -> StoreError {
    let (stream, actual) = msg.rsplit_once('|').unwrap_or(("", "-1"));
    let actual = actual.parse::<i64>().ok().filter(|v| *v >= 0);
    let expected = appends.iter().find(|a| a.stream == stream).map(|a| a.expected).unwrap_or(ExpectedVersion::Any);
    StoreError::Conflict { stream: stream.to_string(), expected, actual }
}

impl PostgresStore {
    async fn recorded_result(&self, command_id: Uuid) -> Result<Option<AppendResult>, StoreError> {
        let row: Option<(Value,)> = sqlx::query_as("SELECT result FROM commands WHERE command_id = $1")
            .bind(command_id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some((v,)) => {
                let streams = serde_json::from_value(v)
                    .map_err(|e| StoreError::Invalid(format!("stored command result unreadable: {e}")))?;
                Ok(Some(AppendResult { duplicate: true, streams }))
            }
            None => Ok(None),
        }
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities { multi_stream_append: true }
    }

    async fn append(&self, meta: &AppendMeta, appends: Vec<StreamAppend>) -> Result<AppendResult, StoreError> {
        validate(&appends)?;
        let payload = append_payload(&appends);
        let (reply, answer) = oneshot::channel();
        let pending = Pending { meta: meta.clone(), appends, payload, reply };
        self.queue.send(pending).await.map_err(|_| StoreError::Invalid("the event store is shut down".into()))?;
        let result = answer.await.map_err(|_| StoreError::Invalid("the append was dropped".into()))?;
        let result = match result {
            // A concurrent append of the same command may have won: answer with its result.
            Err(StoreError::Conflict { .. }) | Err(StoreError::DuplicateCommand) => {
                match self.recorded_result(meta.command_id).await? {
                    Some(first) => Ok(first),
                    None => result.map_err(|e| match e {
                        StoreError::DuplicateCommand => StoreError::Invalid("duplicate command vanished".into()),
                        other => other,
                    }),
                }
            }
            other => other,
        };
        if let Ok(r) = &result
            && !r.duplicate
        {
            self.bump();
            self.notify_others.notify_one();
        }
        result
    }

    async fn read_stream_page(
        &self,
        stream: &str,
        from: i64,
        backward: bool,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = if backward {
            format!("SELECT {COLUMNS} FROM events WHERE stream = $1 AND version <= $2 ORDER BY version DESC LIMIT $3")
        } else {
            format!("SELECT {COLUMNS} FROM events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3")
        };
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(stream).bind(from).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(row_to_event).collect::<Result<_, _>>()?)
    }

    async fn read_log_page(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut sql = format!(
            "SELECT {COLUMNS} FROM events WHERE (commit_id, position) > ($1, $2) \
             AND commit_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        );
        match filter.categories.len() {
            0 => {}
            1 => sql.push_str(" AND category = $4[1]"),
            _ => sql.push_str(" AND category = ANY($4)"),
        }
        if !filter.event_types.is_empty() {
            sql.push_str(" AND event_type = ANY($5)");
        }
        sql.push_str(" ORDER BY commit_id, position LIMIT $3");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.commit_id)
            .bind(after.position)
            .bind(limit)
            .bind(&filter.categories)
            .bind(&filter.event_types)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(row_to_event).collect::<Result<_, _>>()?)
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT commit_id, position FROM events \
             WHERE commit_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             ORDER BY commit_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(c, p)| Checkpoint { commit_id: c, position: p }).unwrap_or(Checkpoint::START))
    }

    async fn checkpoint_of(&self, position: i64) -> Result<Option<Checkpoint>, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT commit_id, position FROM events WHERE position = $1 \
             AND commit_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        )
        .bind(position)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(c, p)| Checkpoint { commit_id: c, position: p }))
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT version FROM streams WHERE stream = $1")
            .bind(stream)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, i32, Value)> =
            sqlx::query_as("SELECT version, state_version, state FROM snapshots WHERE stream = $1")
                .bind(stream)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(version, state_version, state)| Snapshot { version, state_version, state }))
    }

    async fn save_snapshot(&self, stream: &str, s: &Snapshot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (stream, version, state_version, state) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version, \
             state_version = EXCLUDED.state_version, state = EXCLUDED.state, taken_at = now() \
             WHERE snapshots.version < EXCLUDED.version OR snapshots.state_version <> EXCLUDED.state_version",
        )
        .bind(stream)
        .bind(s.version)
        .bind(s.state_version)
        .bind(&s.state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn wake(&self) -> watch::Receiver<u64> {
        self.wake_tx.subscribe()
    }

    async fn recorded(&self, command_id: Uuid) -> Result<Option<AppendResult>, StoreError> {
        self.recorded_result(command_id).await
    }
}
