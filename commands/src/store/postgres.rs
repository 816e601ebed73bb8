//! The Postgres backend: one function call per append, gap-free global reads.
//!
//! Appends call `gather_append` (migrations/postgres/0001_event_store.sql): one round
//! trip, one transaction, the stream's version row locked only for that transaction.
//! Global reads order by `(commit_id, position)` and read only rows whose transaction
//! id is below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction below it
//! has finished, so no row can still appear before the returned ones.

use super::*;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Row};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The channel appenders notify and subscribers listen on.
pub const CHANNEL: &str = "gather_events";

/// The Postgres event store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    wake_tx: Arc<watch::Sender<u64>>,
    notify_others: Arc<Notify>,
}

const COLUMNS: &str = "position, commit_id, stream, version, event_id, event_type, schema_version, data, \
                       command_id, correlation_id, causation_id, actor, recorded_at";

impl PostgresStore {
    /// A store over `pool`; spawns the LISTEN task and the coalescing NOTIFY task.
    pub fn new(pool: PgPool) -> Self {
        let (wake_tx, _) = watch::channel(0u64);
        let store = PostgresStore { pool, wake_tx: Arc::new(wake_tx), notify_others: Arc::new(Notify::new()) };
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

fn row_to_event(row: PgRow) -> Result<RecordedEvent, sqlx::Error> {
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
            Some("GA409") => {
                let msg = db.message();
                let (stream, actual) = msg.rsplit_once('|').unwrap_or(("", "-1"));
                let actual = actual.parse::<i64>().ok().filter(|v| *v >= 0);
                let expected =
                    appends.iter().find(|a| a.stream == stream).map(|a| a.expected).unwrap_or(ExpectedVersion::Any);
                return StoreError::Conflict { stream: stream.to_string(), expected, actual };
            }
            Some("23505") if db.constraint() == Some("events_event_id_key") => return StoreError::DuplicateEvent,
            _ => {}
        }
    }
    StoreError::Database(e)
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
        let payload: Vec<Value> = appends
            .iter()
            .map(|a| {
                let (kind, version) = a.expected.parts();
                serde_json::json!({
                    "stream": a.stream, "category": category_of(&a.stream),
                    "expected": kind, "version": version, "events": a.events,
                })
            })
            .collect();
        let result = sqlx::query_scalar::<_, Value>("SELECT gather_append($1, $2, $3, $4, $5)")
            .bind(meta.command_id)
            .bind(meta.correlation_id)
            .bind(meta.causation_id)
            .bind(meta.actor)
            .bind(Value::Array(payload))
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(v) => {
                let result: AppendResult = serde_json::from_value(v)
                    .map_err(|e| StoreError::Invalid(format!("append result unreadable: {e}")))?;
                if !result.duplicate {
                    self.bump();
                    self.notify_others.notify_one();
                }
                Ok(result)
            }
            Err(e) => {
                let err = map_append_error(e, &appends);
                // A concurrent append of the same command may have won: answer with its result.
                let is_dup = matches!(&err, StoreError::Conflict { .. })
                    || matches!(&err, StoreError::Database(sqlx::Error::Database(d)) if d.code().as_deref() == Some("GA208"));
                if is_dup && let Some(first) = self.recorded_result(meta.command_id).await? {
                    return Ok(first);
                }
                Err(err)
            }
        }
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
}
