//! Rebuilding a projection beside its live tables (ARCHITECTURE.md decision 10).
//!
//! 1. **Claim**: one row in `projection_rebuilds` and empty shadow tables
//!    (`{table}__rebuild`, same columns, constraints and indexes) are created in one
//!    transaction, so the row exists exactly while the shadow tables do. A rebuild whose
//!    owner still beats is refused; one whose owner went quiet for [`STALE`] is taken
//!    over and resumed where it stopped; one that failed starts again from scratch.
//! 2. **Build**: the projection replays the log into the shadow tables, a batch at a
//!    time; each batch commits with the rebuild's checkpoint and heartbeat.
//! 3. **Swap**: once the build reaches the head, one transaction locks the live
//!    checkpoint (the live projector waits on it), applies the last events, drops the
//!    live tables, renames the shadow ones (and their indexes) into place, moves the live
//!    checkpoint to the rebuild's and deletes the claim. Queries read the old tables
//!    until that commit and the new ones after it; the live projector sees its
//!    checkpoint moved and follows it (see `runtime`).
//!
//! Only projections that own tables can be rebuilt: replaying the notifier or the
//! process manager would send emails and schedule timers again.

use crate::runtime::{
    Projection, ProjectionError, SHADOW_SUFFIX, Target, apply_events, error_chain, lock_checkpoint, save_checkpoint,
};
use crate::verify::is_virtual;
use chrono::{DateTime, Utc};
use gather_store::db::{Db, Tx};
use gather_store::{Checkpoint, EventStore, LogFilter, RecordedEvent, StoreError};
use gather_store::{on_db_read, on_tx};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A rebuild whose owner has not beaten for this long may be taken over.
pub const STALE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Events per build batch (and per page of the swap's final catch-up): big enough that
/// a batch's statements (a read of the touched rows, one upsert per table) cost little
/// per event, small enough to keep a batch's transaction short.
pub const BATCH: i64 = 2000;

/// Database failures in a row after which a rebuild stops and records the last one
/// (about 20 s of backoff: long enough for a database restart, short of a stale claim).
const MAX_FAILURES: u32 = 10;

/// How long the swap waits for a lock (Postgres) before it gives up and tries again.
const SWAP_LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a database error is Postgres' `lock_not_available` (a `lock_timeout`).
fn lock_timed_out(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("55P03"))
}

/// Pages the swap applies under the checkpoint lock before it gives up and tries again
/// (a write load faster than the rebuild must not hold the lock for long).
const SWAP_PAGES: usize = 4;

/// Why a rebuild could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// No projection has this name.
    #[error("there is no projection named {0:?}")]
    Unknown(String),
    /// The projection has side effects (email, timers) and owns no tables.
    #[error("projection {0:?} has side effects (email, timers) and cannot be rebuilt")]
    NotRebuildable(String),
    /// Another process is rebuilding it and still beats.
    #[error("projection {0:?} is already being rebuilt")]
    InProgress(String),
    /// Another process took the rebuild over while this one was quiet.
    #[error("another process took over the rebuild of {0:?}")]
    TakenOver(String),
    /// A live table could not be copied (its catalog entry is not what Gather wrote).
    #[error("table {table} cannot be copied: {detail}")]
    Schema {
        /// The live table.
        table: String,
        /// What was unexpected.
        detail: String,
    },
    /// An event could not be applied, or the database failed for good.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

impl From<sqlx::Error> for RebuildError {
    fn from(e: sqlx::Error) -> Self {
        RebuildError::Projection(ProjectionError::Database(e))
    }
}

impl From<StoreError> for RebuildError {
    fn from(e: StoreError) -> Self {
        match e {
            // A failed read is retried like a failed write; a bad event is not.
            StoreError::Database(e) => RebuildError::Projection(ProjectionError::Database(e)),
            e => RebuildError::Projection(ProjectionError::Store(e)),
        }
    }
}

/// A rebuild in progress (or stopped on an error), as `projection_rebuilds` holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RebuildStatus {
    /// The projection.
    pub name: String,
    /// The process that runs it.
    pub owner: Uuid,
    /// The shadow tables hold everything up to this global position.
    pub position: i64,
    /// The head of the log when the rebuild started.
    pub target_position: i64,
    /// Events replayed so far.
    pub events: i64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The owner's last sign of life.
    pub heartbeat_at: DateTime<Utc>,
    /// Why it stopped, if it did.
    pub error: Option<String>,
}

impl RebuildStatus {
    /// How far the shadow tables are, from 0 to 1 (by global position).
    pub fn progress(&self) -> f64 {
        if self.target_position <= 0 {
            return 1.0;
        }
        (self.position as f64 / self.target_position as f64).clamp(0.0, 1.0)
    }

    /// Whether the owner has gone quiet (so another process may take over).
    pub fn stale(&self, now: DateTime<Utc>) -> bool {
        now - self.heartbeat_at > STALE
    }
}

const STATUS_COLUMNS: &str =
    "name, owner, position, target_position, events, started_at, heartbeat_at, error FROM projection_rebuilds";

/// Every rebuild in progress or stopped on an error.
pub async fn statuses(db: &Db) -> Result<Vec<RebuildStatus>, sqlx::Error> {
    let sql = format!("SELECT {STATUS_COLUMNS} ORDER BY name");
    on_db_read!(db, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await)
}

/// A claimed rebuild, ready to [`run`](Rebuild::run).
pub struct Rebuild {
    db: Db,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    owner: Uuid,
    at: Checkpoint,
    /// The next page, read while the current one is applied (and the checkpoint it
    /// follows: it is used only if the build is still there).
    prefetch: Option<(Checkpoint, Prefetch)>,
    /// Events per batch.
    batch: i64,
}

type Prefetch = tokio::task::JoinHandle<Result<Vec<RecordedEvent>, StoreError>>;

impl std::fmt::Debug for Rebuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rebuild").field("projection", &self.projection.name()).field("at", &self.at).finish()
    }
}

impl Rebuild {
    /// Claims the rebuild of `name` among `projections`: refuses one another process
    /// runs, resumes a stale one, and otherwise creates fresh shadow tables.
    pub async fn claim(
        db: &Db,
        store: Arc<dyn EventStore>,
        projections: &[Arc<dyn Projection>],
        name: &str,
    ) -> Result<Rebuild, RebuildError> {
        let projection = projections
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| RebuildError::Unknown(name.to_owned()))?;
        if projection.tables().is_empty() {
            return Err(RebuildError::NotRebuildable(name.to_owned()));
        }
        let (owner, now) = (Uuid::now_v7(), Utc::now());
        let target = store.head().await?;
        let mut tx = db.begin().await?;
        // The insert takes the claim; a racing claimer waits on it, then sees our row.
        let inserted = on_tx!(&mut tx, c => sqlx::query(
            "INSERT INTO projection_rebuilds (name, owner, commit_id, position, target_position, events, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $6) ON CONFLICT (name) DO NOTHING",
        ).bind(name).bind(owner).bind(Checkpoint::START.commit_id).bind(Checkpoint::START.position)
         .bind(target.position).bind(now).execute(&mut **c).await.map(|r| r.rows_affected()))?;
        let mut at = Checkpoint::START;
        let fresh = if inserted == 1 {
            true
        } else {
            let sql = format!("SELECT {STATUS_COLUMNS} WHERE name = $1");
            let sql = if db.is_postgres() { format!("{sql} FOR UPDATE") } else { sql };
            let row: RebuildStatus = on_tx!(&mut tx, c =>
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_one(&mut **c).await)?;
            let resume = row.error.is_none();
            if resume && !row.stale(now) {
                return Err(RebuildError::InProgress(name.to_owned()));
            }
            if resume {
                let cp: (i64, i64) = on_tx!(&mut tx, c => sqlx::query_as(
                    "UPDATE projection_rebuilds SET owner = $2, heartbeat_at = $3 WHERE name = $1 RETURNING commit_id, position",
                ).bind(name).bind(owner).bind(now).fetch_one(&mut **c).await)?;
                at = Checkpoint { commit_id: cp.0, position: cp.1 };
                tracing::info!(projection = name, from = %at, "taking over a stale rebuild");
            } else {
                on_tx!(&mut tx, c => sqlx::query(
                    "UPDATE projection_rebuilds SET owner = $2, commit_id = $3, position = $4, target_position = $5, \
                     events = 0, started_at = $6, heartbeat_at = $6, error = NULL WHERE name = $1",
                ).bind(name).bind(owner).bind(Checkpoint::START.commit_id).bind(Checkpoint::START.position)
                 .bind(target.position).bind(now).execute(&mut **c).await.map(|r| r.rows_affected()))?;
            }
            !resume
        };
        if fresh {
            for table in projection.backend_tables(db.is_postgres()) {
                create_shadow(&mut tx, table).await?;
            }
            tracing::info!(projection = name, target = %target, "rebuild started");
        }
        tx.commit().await?;
        Ok(Rebuild { db: db.clone(), store, projection, owner, at, prefetch: None, batch: BATCH })
    }

    /// Uses batches of `events` events (default [`BATCH`]).
    pub fn with_batch(mut self, events: i64) -> Self {
        self.batch = events.max(1);
        self
    }

    /// The projection being rebuilt.
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// The live tables being rebuilt.
    pub fn tables(&self) -> Vec<&'static str> {
        self.projection.backend_tables(self.db.is_postgres())
    }

    /// Builds the shadow tables up to the head, then swaps them in. Returns the
    /// checkpoint the live projection continues from. A database error is retried with
    /// backoff (up to [`MAX_FAILURES`] in a row); an event that cannot be applied, or a
    /// database that keeps failing, stops the rebuild and is recorded in its status.
    pub async fn run(mut self) -> Result<Checkpoint, RebuildError> {
        let mut backoff = Duration::from_millis(50);
        let mut failures = 0;
        loop {
            match self.step().await {
                Ok(Some(done)) => {
                    tracing::info!(projection = self.name(), at = %done, "rebuild swapped in");
                    return Ok(done);
                }
                Ok(None) => (backoff, failures) = (Duration::from_millis(50), 0),
                Err(RebuildError::Projection(ProjectionError::Database(e))) if failures < MAX_FAILURES => {
                    failures += 1;
                    tracing::warn!(projection = self.name(), error = %e, failures, "rebuild batch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    if !matches!(e, RebuildError::TakenOver(_)) {
                        tracing::error!(projection = self.name(), error = %e, "rebuild stopped");
                        self.record_error(&e).await;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Where the shadow tables stand (a resumed rebuild starts where its owner stopped).
    pub fn position(&self) -> Checkpoint {
        self.at
    }

    /// One batch of the build, or the swap once the build has caught up (then the
    /// checkpoint the live projection continues from). [`run`](Rebuild::run) loops on it.
    pub async fn step(&mut self) -> Result<Option<Checkpoint>, RebuildError> {
        let batch = self.batch;
        let page = match self.prefetch.take() {
            Some((after, next)) if after == self.at => match next.await {
                Ok(page) => page?,
                Err(e) => {
                    return Err(RebuildError::Projection(ProjectionError::Database(sqlx::Error::Io(
                        std::io::Error::other(e.to_string()),
                    ))));
                }
            },
            other => {
                if let Some((_, next)) = other {
                    next.abort();
                }
                self.store.read_log_page(self.at, &LogFilter::all(), batch).await?
            }
        };
        if (page.len() as i64) < batch {
            return self.swap(page).await;
        }
        // Read the next page while this one is applied (the log only grows).
        if let Some(last) = page.last().map(|e| e.checkpoint()) {
            let store = self.store.clone();
            let next = tokio::spawn(async move { store.read_log_page(last, &LogFilter::all(), batch).await });
            self.prefetch = Some((last, next));
        }
        let mut tx = crate::runtime::begin(&self.db).await?;
        let at = self.apply(&mut tx, &page).await?;
        tx.commit().await?;
        self.at = at;
        Ok(None)
    }

    /// One batch of the build that never goes past `limit` and never swaps (for
    /// `verify`, which compares the copy with the live tables instead). True once the
    /// shadow tables have reached `limit` or the head of the log.
    pub async fn build_step(&mut self, limit: Checkpoint) -> Result<bool, RebuildError> {
        let batch = self.batch;
        let mut page = self.store.read_log_page(self.at, &LogFilter::all(), batch).await?;
        let full = page.len() as i64 == batch;
        page.retain(|e| e.checkpoint() <= limit);
        let reached = !full || (page.len() as i64) < batch;
        let mut tx = crate::runtime::begin(&self.db).await?;
        let at = self.apply(&mut tx, &page).await?;
        tx.commit().await?;
        self.at = at;
        Ok(reached)
    }

    /// Inside `tx` (which holds the live checkpoint's lock), applies to the shadow tables
    /// exactly the events after their checkpoint up to and including `live`. `None` (and
    /// nothing applied) when the shadow tables are already past `live`; otherwise the
    /// checkpoint they reach in `tx` (`live` itself, or where they stood if they were
    /// already there).
    pub(crate) async fn align(&self, tx: &mut Tx, live: Checkpoint) -> Result<Option<Checkpoint>, RebuildError> {
        let batch = self.batch;
        if self.at > live {
            return Ok(None);
        }
        let mut at = self.at;
        loop {
            let mut page = self.store.read_log_page(at, &LogFilter::all(), batch).await?;
            let full = page.len() as i64 == batch;
            page.retain(|e| e.checkpoint() <= live);
            let done = !full || (page.len() as i64) < batch;
            if !page.is_empty() {
                at = self.apply(tx, &page).await?;
            }
            if done {
                return Ok(Some(at));
            }
        }
    }

    /// Drops the shadow tables and the claim row inside `tx` (if this owner still holds
    /// it), ending the rebuild without swapping.
    pub(crate) async fn discard(&self, tx: &mut Tx) -> Result<(), RebuildError> {
        let owned = on_tx!(tx, c => sqlx::query("DELETE FROM projection_rebuilds WHERE name = $1 AND owner = $2")
            .bind(self.name()).bind(self.owner).execute(&mut **c).await.map(|r| r.rows_affected()))?;
        if owned == 0 {
            return Err(RebuildError::TakenOver(self.name().to_owned()));
        }
        for table in self.tables() {
            let sql = format!("DROP TABLE IF EXISTS {}", Target::Shadow.table(table));
            on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Applies `page` to the shadow tables and records the progress, as the owner.
    async fn apply(&self, tx: &mut Tx, page: &[RecordedEvent]) -> Result<Checkpoint, RebuildError> {
        // Ownership first: after a take-over (or its swap) the shadow tables are not ours.
        let at = page.last().map(|e| e.checkpoint()).unwrap_or(self.at);
        let owned = on_tx!(tx, c => sqlx::query(
            "UPDATE projection_rebuilds SET commit_id = $3, position = $4, events = events + $5, heartbeat_at = $6 \
             WHERE name = $1 AND owner = $2",
        ).bind(self.name()).bind(self.owner).bind(at.commit_id).bind(at.position).bind(page.len() as i64)
         .bind(Utc::now()).execute(&mut **c).await.map(|r| r.rows_affected()))?;
        if owned == 0 {
            return Err(RebuildError::TakenOver(self.name().to_owned()));
        }
        apply_events(tx, self.projection.as_ref(), Target::Shadow, page).await?;
        Ok(at)
    }

    /// Applies the last events and swaps the shadow tables in, in one transaction;
    /// `None` when writes outran it (the applied pages are kept and it tries again).
    async fn swap(&mut self, first: Vec<RecordedEvent>) -> Result<Option<Checkpoint>, RebuildError> {
        let batch = self.batch;
        let mut tx = self.db.begin().await?;
        if let Tx::Postgres(c) = &mut tx {
            // Never queue behind a long reader while holding the checkpoint (and, with
            // it, the log's readable head): give up quickly and try again.
            let timeout = format!("SET LOCAL lock_timeout = '{}ms'", SWAP_LOCK_TIMEOUT.as_millis());
            sqlx::query(sqlx::AssertSqlSafe(timeout)).execute(&mut **c).await?;
        }
        // The live projector applies its batches under this lock: it waits for the swap.
        let live = match lock_checkpoint(&mut tx, self.name()).await {
            Ok(live) => live,
            Err(e) if lock_timed_out(&e) => return self.later("the live checkpoint is busy").await,
            Err(e) => return Err(e.into()),
        };
        let mut at = self.apply(&mut tx, &first).await?;
        let mut caught_up = (first.len() as i64) < batch;
        for _ in 1..SWAP_PAGES {
            let page = self.store.read_log_page(at, &LogFilter::all(), batch).await?;
            caught_up = (page.len() as i64) < batch;
            if !page.is_empty() {
                at = self.apply(&mut tx, &page).await?;
            }
            if caught_up {
                break;
            }
        }
        if !caught_up {
            tx.commit().await?;
            self.at = at;
            return Ok(None);
        }
        if live > at {
            // Cannot happen while the log only grows below the readable head; never
            // swap in a copy older than the live one.
            tracing::warn!(projection = self.name(), %live, shadow = %at, "the live view is ahead; not swapping yet");
            tx.commit().await?;
            self.at = at;
            return self.later("the live view is ahead").await;
        }
        for table in self.tables() {
            match swap_table(&mut tx, table).await {
                Ok(()) => {}
                Err(RebuildError::Projection(ProjectionError::Database(e))) if lock_timed_out(&e) => {
                    return self.later("a reader holds the live table").await;
                }
                Err(e) => return Err(e),
            }
        }
        save_checkpoint(&mut tx, self.name(), at).await?;
        on_tx!(&mut tx, c => sqlx::query("DELETE FROM projection_rebuilds WHERE name = $1")
            .bind(self.name()).execute(&mut **c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        self.at = at;
        Ok(Some(at))
    }

    /// Gives up this swap attempt (its transaction rolls back) and lets the caller retry.
    async fn later(&self, why: &str) -> Result<Option<Checkpoint>, RebuildError> {
        tracing::info!(projection = self.name(), why, "swap postponed");
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(None)
    }

    async fn record_error(&self, e: &RebuildError) {
        let message = error_chain(e);
        let written = gather_store::on_db!(&self.db, p => sqlx::query(
            "UPDATE projection_rebuilds SET error = $3, heartbeat_at = $4 WHERE name = $1 AND owner = $2",
        ).bind(self.name()).bind(self.owner).bind(&message).bind(Utc::now()).execute(p).await.map(|r| r.rows_affected()));
        if let Err(err) = written {
            tracing::warn!(error = %err, "could not record the rebuild's error");
        }
    }
}

/// Creates an empty `{table}__rebuild` with the live table's columns, constraints and
/// indexes (the indexes named `{index}__rebuild` on Postgres, where the swap renames
/// them; SQLite has no index rename, so the swap recreates them there).
pub(crate) async fn create_shadow(tx: &mut Tx, table: &str) -> Result<(), RebuildError> {
    let shadow = Target::Shadow.table(table);
    let schema_err = |detail: String| RebuildError::Schema { table: table.to_owned(), detail };
    match tx {
        Tx::Postgres(c) => {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {shadow}"))).execute(&mut **c).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {shadow} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES)"
            )))
            .execute(&mut **c)
            .await?;
            let indexes: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT schemaname::text, indexname::text, indexdef FROM pg_indexes \
                 WHERE schemaname = current_schema() AND tablename = $1",
            )
            .bind(table)
            .fetch_all(&mut **c)
            .await?;
            for (schema, index, def) in indexes {
                if index.len() + SHADOW_SUFFIX.len() > PG_MAX_NAME {
                    return Err(schema_err(format!("index name {index:?} is too long to copy")));
                }
                let from = format!(" INDEX {index} ON {schema}.{table} ");
                let to = format!(" INDEX {index}{SHADOW_SUFFIX} ON {schema}.{shadow} ");
                if !def.contains(&from) {
                    return Err(schema_err(format!("index definition {def:?} does not read \"{}\"", from.trim())));
                }
                sqlx::query(sqlx::AssertSqlSafe(def.replacen(&from, &to, 1))).execute(&mut **c).await?;
            }
        }
        Tx::Sqlite(c) => {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {shadow}"))).execute(&mut **c).await?;
            let sql: Option<String> =
                sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1")
                    .bind(table)
                    .fetch_optional(&mut **c)
                    .await?;
            let sql = sql.ok_or_else(|| schema_err("no such table".into()))?;
            let ddl = if is_virtual(&sql) {
                // `CREATE VIRTUAL TABLE <name> USING <module>(<arguments>)` (FTS5): the same
                // module and arguments under the new name; the module creates its own
                // internal tables (`<name>_data`, …), which no projection lists.
                let using = sql
                    .to_ascii_uppercase()
                    .find(" USING ")
                    .map(|i| &sql[i..])
                    .ok_or_else(|| schema_err(format!("unexpected DDL {sql:?}")))?;
                format!("CREATE VIRTUAL TABLE {shadow}{using}")
            } else {
                // `CREATE TABLE <name> (<definition>)`: keep the definition, change the name.
                let body =
                    sql.find('(').map(|i| &sql[i..]).ok_or_else(|| schema_err(format!("unexpected DDL {sql:?}")))?;
                format!("CREATE TABLE {shadow} {body}")
            };
            sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(&mut **c).await?;
        }
    }
    Ok(())
}

/// Drops `table` and renames `{table}__rebuild` into its place, indexes included.
pub(crate) async fn swap_table(tx: &mut Tx, table: &str) -> Result<(), RebuildError> {
    let shadow = Target::Shadow.table(table);
    match tx {
        Tx::Postgres(c) => {
            let constraints: Vec<(String, String)> = sqlx::query_as(
                "SELECT conname::text, contype::text FROM pg_constraint \
                 WHERE conrelid = to_regclass($1) AND contype IN ('p', 'u')",
            )
            .bind(table)
            .fetch_all(&mut **c)
            .await?;
            let indexes: Vec<String> = sqlx::query_scalar(
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
            )
            .bind(&shadow)
            .fetch_all(&mut **c)
            .await?;
            let live_indexes: Vec<String> = sqlx::query_scalar(
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
            )
            .bind(table)
            .fetch_all(&mut **c)
            .await?;
            let mut copied: Vec<&str> = indexes.iter().filter_map(|i| i.strip_suffix(SHADOW_SUFFIX)).collect();
            let mut live: Vec<&str> = live_indexes.iter().map(String::as_str).collect();
            copied.sort_unstable();
            live.sort_unstable();
            if copied != live {
                return Err(schema_changed(table, format!("indexes {live:?} live, {copied:?} in the copy")));
            }
            same_columns(table, &columns_pg(c, table).await?, &columns_pg(c, &shadow).await?)?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}"))).execute(&mut **c).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE {shadow} RENAME TO {table}")))
                .execute(&mut **c)
                .await?;
            for index in indexes {
                if let Some(live) = index.strip_suffix(SHADOW_SUFFIX) {
                    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER INDEX {index} RENAME TO {live}")))
                        .execute(&mut **c)
                        .await?;
                }
            }
            for (name, kind) in constraints {
                let kind = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {name}"
                )))
                .execute(&mut **c)
                .await?;
            }
        }
        Tx::Sqlite(c) => {
            let indexes: Vec<String> = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
            )
            .bind(table)
            .fetch_all(&mut **c)
            .await?;
            let columns = |t: String| {
                sqlx::query_as::<_, (String, String)>("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                    .bind(t)
            };
            let live = columns(table.to_owned()).fetch_all(&mut **c).await?;
            let copy = columns(shadow.clone()).fetch_all(&mut **c).await?;
            same_columns(table, &live, &copy)?;
            // A virtual table (FTS5) is swapped the same way: its module renames its
            // internal tables along with it, and it has no indexes of its own.
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}"))).execute(&mut **c).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE {shadow} RENAME TO {table}")))
                .execute(&mut **c)
                .await?;
            for sql in indexes {
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **c).await?;
            }
        }
    }
    Ok(())
}

/// Postgres' identifier limit (longer names are silently truncated).
const PG_MAX_NAME: usize = 63;

fn schema_changed(table: &str, detail: String) -> RebuildError {
    RebuildError::Schema {
        table: table.to_owned(),
        detail: format!("the live table changed during the rebuild ({detail}); start the rebuild again"),
    }
}

/// Refuses to swap in a copy whose columns differ from the live table's (a migration
/// ran during the rebuild): the swap would silently undo it.
fn same_columns(table: &str, live: &[(String, String)], copy: &[(String, String)]) -> Result<(), RebuildError> {
    if live == copy {
        Ok(())
    } else {
        Err(schema_changed(table, format!("columns {live:?} live, {copy:?} in the copy")))
    }
}

async fn columns_pg(c: &mut sqlx::PgConnection, table: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(c)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::compare_tables;

    const FTS_ARGS: &str = "fts5(title, tags, description, organiser, content='', contentless_delete=1, \
                            tokenize='porter unicode61 remove_diacritics 2')";

    /// A scratch SQLite database with a search table and its FTS5 index, one row each.
    async fn scratch() -> Db {
        let path = std::env::temp_dir().join(format!("gather-fts-{}.db", Uuid::now_v7().simple()));
        let db = Db::connect(&format!("sqlite://{}", path.display())).await.expect("scratch database");
        for sql in [
            "CREATE TABLE activity_search (activity_id TEXT PRIMARY KEY, title TEXT NOT NULL)".to_owned(),
            format!("CREATE VIRTUAL TABLE activity_search_fts USING {FTS_ARGS}"),
            "INSERT INTO activity_search (rowid, activity_id, title) VALUES (1, 'a', 'Old pottery')".to_owned(),
            "INSERT INTO activity_search_fts (rowid, title, tags, description, organiser) \
             VALUES (1, 'Old pottery', 'adults', 'Wheels.', 'Clay Club')"
                .to_owned(),
        ] {
            sql_on(&db, &sql).await;
        }
        db
    }

    async fn sql_on(db: &Db, sql: &str) {
        gather_store::on_db!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(p).await.map(|r| r.rows_affected()))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn matches(db: &Db, table: &str, query: &str) -> Vec<i64> {
        let sql = format!("SELECT rowid FROM {table} WHERE {table} MATCH $1 ORDER BY rowid");
        gather_store::on_db!(db, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(query).fetch_all(p).await)
            .expect("match query")
    }

    async fn names(db: &Db) -> Vec<String> {
        gather_store::on_db!(db, p => sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(p).await)
        .expect("catalog")
    }

    #[tokio::test]
    async fn an_fts5_virtual_table_is_copied_with_its_module_arguments_and_swapped_in() {
        let db = scratch().await;
        let mut tx = db.begin().await.unwrap();
        for table in ["activity_search", "activity_search_fts"] {
            create_shadow(&mut tx, table).await.unwrap();
        }
        tx.commit().await.unwrap();
        let ddl: String = gather_store::on_db!(&db, p => sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE name = 'activity_search_fts__rebuild'").fetch_one(p).await)
        .unwrap();
        assert_eq!(ddl, format!("CREATE VIRTUAL TABLE activity_search_fts__rebuild USING {FTS_ARGS}"));
        assert_eq!(matches(&db, "activity_search_fts__rebuild", "pottery").await, Vec::<i64>::new(), "empty copy");

        sql_on(
            &db,
            "INSERT INTO activity_search__rebuild (rowid, activity_id, title) VALUES (7, 'b', 'Kids workshop')",
        )
        .await;
        sql_on(
            &db,
            "INSERT INTO activity_search_fts__rebuild (rowid, title, tags, description, organiser) \
             VALUES (7, 'Kids workshop', 'kids clay', 'Hands in clay. Café crème.', 'Clay Club')",
        )
        .await;
        let mut tx = db.begin().await.unwrap();
        for table in ["activity_search", "activity_search_fts"] {
            swap_table(&mut tx, table).await.unwrap();
        }
        tx.commit().await.unwrap();

        assert_eq!(matches(&db, "activity_search_fts", "pottery").await, Vec::<i64>::new(), "the old index is gone");
        assert_eq!(matches(&db, "activity_search_fts", "clay").await, vec![7]);
        // The tokenizer came along: porter stems, diacritics are removed.
        assert_eq!(matches(&db, "activity_search_fts", "workshops").await, vec![7]);
        assert_eq!(matches(&db, "activity_search_fts", "cafe").await, vec![7]);
        let tables = names(&db).await;
        assert!(tables.iter().all(|t| !t.contains(SHADOW_SUFFIX)), "nothing of the copy is left: {tables:?}");
        assert!(tables.contains(&"activity_search_fts_data".to_owned()), "{tables:?}");
        // contentless_delete came along too: a row can be deleted from the swapped index.
        sql_on(&db, "DELETE FROM activity_search_fts WHERE rowid = 7").await;
        assert_eq!(matches(&db, "activity_search_fts", "clay").await, Vec::<i64>::new());

        // And it can be copied again from the swapped-in table.
        let mut tx = db.begin().await.unwrap();
        create_shadow(&mut tx, "activity_search_fts").await.unwrap();
        tx.commit().await.unwrap();
        assert!(names(&db).await.contains(&"activity_search_fts__rebuild".to_owned()));
    }

    #[tokio::test]
    async fn a_virtual_table_is_compared_by_its_rowids() {
        let db = scratch().await;
        let mut tx = db.begin().await.unwrap();
        create_shadow(&mut tx, "activity_search_fts").await.unwrap();
        tx.commit().await.unwrap();
        sql_on(
            &db,
            "INSERT INTO activity_search_fts__rebuild (rowid, title, tags, description, organiser) \
             VALUES (1, 'Old pottery', 'adults', 'Wheels.', 'Clay Club')",
        )
        .await;
        let mut tx = db.begin().await.unwrap();
        let same = compare_tables(&mut tx, "activity_search_fts", "activity_search_fts__rebuild").await.unwrap();
        assert!(same.identical(), "{same:?}");
        assert_eq!((same.live_rows, same.rebuilt_rows), (1, 1));
        tx.commit().await.unwrap();

        sql_on(
            &db,
            "INSERT INTO activity_search_fts__rebuild (rowid, title, tags, description, organiser) \
             VALUES (2, 'New', '', '', '')",
        )
        .await;
        let mut tx = db.begin().await.unwrap();
        let differs = compare_tables(&mut tx, "activity_search_fts", "activity_search_fts__rebuild").await.unwrap();
        assert!(!differs.identical());
        assert_eq!((differs.live_rows, differs.rebuilt_rows), (1, 2));
        assert_eq!(differs.buckets.len(), 1, "{differs:?}");
        assert_eq!((differs.buckets[0].live_rows, differs.buckets[0].rebuilt_rows), (0, 1));
    }
}
