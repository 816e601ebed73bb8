//! The SQLite backend (embedded default): the same contract on one writer connection.
//!
//! SQLite has a single writer, so appends are serialized by the one-connection writer
//! pool and the position order is the commit order; `commit_id` is always 0.

use super::*;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{Row, SqlitePool};
use std::sync::Arc;
use tokio::sync::watch;

/// The SQLite event store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    wake_tx: Arc<watch::Sender<u64>>,
}

use crate::sql::COLUMNS;

fn row_to_event(row: SqliteRow) -> Result<RecordedEvent, sqlx::Error> {
    let Json(data): Json<Value> = row.try_get("data")?;
    Ok(RecordedEvent {
        position: row.try_get("position")?,
        commit_id: row.try_get("commit_id")?,
        stream: row.try_get("stream")?,
        version: row.try_get("version")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        data,
        command_id: row.try_get("command_id")?,
        correlation_id: row.try_get("correlation_id")?,
        causation_id: row.try_get("causation_id")?,
        actor: row.try_get("actor")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

impl SqliteStore {
    /// A store over the writer and reader pools.
    pub fn new(writer: SqlitePool, reader: SqlitePool) -> Self {
        let (wake_tx, _) = watch::channel(0u64);
        SqliteStore { writer, reader, wake_tx: Arc::new(wake_tx) }
    }

    async fn append_in_tx(
        tx: &mut sqlx::SqliteConnection,
        meta: &AppendMeta,
        appends: &[StreamAppend],
    ) -> Result<AppendResult, StoreError> {
        let previous: Option<(Json<Vec<StreamResult>>,)> =
            sqlx::query_as("SELECT result FROM commands WHERE command_id = ?1")
                .bind(meta.command_id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((Json(streams),)) = previous {
            return Ok(AppendResult { duplicate: true, streams });
        }
        let now = Utc::now();
        let mut results = Vec::with_capacity(appends.len());
        for a in appends {
            let actual: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream = ?1")
                .bind(&a.stream)
                .fetch_optional(&mut *tx)
                .await?;
            if !a.expected.accepts(actual) {
                return Err(StoreError::Conflict { stream: a.stream.clone(), expected: a.expected, actual });
            }
            let n = a.events.len() as i64;
            let first_version = actual.map_or(0, |v| v + 1);
            let new_version = first_version + n - 1;
            sqlx::query(
                "INSERT INTO streams (stream, version) VALUES (?1, ?2) \
                 ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
            )
            .bind(&a.stream)
            .bind(new_version)
            .execute(&mut *tx)
            .await?;
            let mut first_position = 0;
            let mut last_position = 0;
            for (i, e) in a.events.iter().enumerate() {
                let position: i64 = sqlx::query_scalar(
                    "INSERT INTO events (stream, category, version, event_id, event_type, schema_version, data, \
                     command_id, correlation_id, causation_id, actor, recorded_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING position",
                )
                .bind(&a.stream)
                .bind(category_of(&a.stream))
                .bind(first_version + i as i64)
                .bind(e.event_id)
                .bind(&e.event_type)
                .bind(e.schema_version)
                .bind(Json(&e.data))
                .bind(meta.command_id)
                .bind(meta.correlation_id)
                .bind(meta.causation_id)
                .bind(meta.actor)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|err| match &err {
                    sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::DuplicateEvent,
                    _ => StoreError::Database(err),
                })?;
                if i == 0 {
                    first_position = position;
                }
                last_position = position;
            }
            results.push(StreamResult {
                stream: a.stream.clone(),
                first_position,
                last_position,
                version: new_version,
            });
        }
        sqlx::query("INSERT INTO commands (command_id, result, recorded_at) VALUES (?1, ?2, ?3)")
            .bind(meta.command_id)
            .bind(Json(&results))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        Ok(AppendResult { duplicate: false, streams: results })
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities { multi_stream_append: true }
    }

    async fn append(&self, meta: &AppendMeta, appends: Vec<StreamAppend>) -> Result<AppendResult, StoreError> {
        validate(&appends)?;
        let mut tx = self.writer.begin().await?;
        let result = Self::append_in_tx(&mut tx, meta, &appends).await;
        match result {
            Ok(r) if !r.duplicate => {
                tx.commit().await?;
                self.wake_tx.send_modify(|n| *n = n.wrapping_add(1));
                Ok(r)
            }
            Ok(r) => Ok(r),
            Err(e) => {
                tx.rollback().await?;
                Err(e)
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
        let sql = crate::sql::stream_page(backward);
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(stream).bind(from).bind(limit).fetch_all(&self.reader).await?;
        Ok(rows.into_iter().map(row_to_event).collect::<Result<_, _>>()?)
    }

    async fn read_log_page(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // Filters are bound as JSON arrays and expanded with json_each (no SQL building).
        let mut sql = format!("SELECT {COLUMNS} FROM events WHERE position > ?1");
        if !filter.categories.is_empty() {
            sql.push_str(" AND category IN (SELECT value FROM json_each(?3))");
        }
        if !filter.event_types.is_empty() {
            sql.push_str(" AND event_type IN (SELECT value FROM json_each(?4))");
        }
        sql.push_str(" ORDER BY position LIMIT ?2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.position)
            .bind(limit)
            .bind(Json(&filter.categories))
            .bind(Json(&filter.event_types))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.into_iter().map(row_to_event).collect::<Result<_, _>>()?)
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        let pos: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events").fetch_one(&self.reader).await?;
        Ok(pos.map(|p| Checkpoint { commit_id: 0, position: p }).unwrap_or(Checkpoint::START))
    }

    async fn is_committed(&self, position: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE position = ?1)")
            .bind(position)
            .fetch_one(&self.reader)
            .await?)
    }

    async fn checkpoint_of(&self, position: i64) -> Result<Option<Checkpoint>, StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT position FROM events WHERE position = ?1")
            .bind(position)
            .fetch_optional(&self.reader)
            .await?;
        Ok(found.map(|p| Checkpoint { commit_id: 0, position: p }))
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT version FROM streams WHERE stream = ?1")
            .bind(stream)
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, i32, Json<Value>)> =
            sqlx::query_as(crate::sql::LOAD_SNAPSHOT).bind(stream).fetch_optional(&self.reader).await?;
        Ok(row.map(|(version, state_version, Json(state))| Snapshot { version, state_version, state }))
    }

    async fn save_snapshot(&self, stream: &str, s: &Snapshot) -> Result<(), StoreError> {
        sqlx::query(crate::sql::SAVE_SNAPSHOT)
            .bind(stream)
            .bind(s.version)
            .bind(s.state_version)
            .bind(Json(&s.state))
            .bind(Utc::now())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    fn wake(&self) -> watch::Receiver<u64> {
        self.wake_tx.subscribe()
    }

    async fn recorded(&self, command_id: Uuid) -> Result<Option<AppendResult>, StoreError> {
        let row: Option<(Json<Vec<StreamResult>>,)> =
            sqlx::query_as("SELECT result FROM commands WHERE command_id = ?1")
                .bind(command_id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|(Json(streams),)| AppendResult { duplicate: true, streams }))
    }
}
