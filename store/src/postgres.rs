//! The Postgres backend: set-based group commit, gap-free global reads.
//!
//! Appends are group-committed: concurrent `append` calls queue to a few committer
//! tasks, each of which sends up to [`MAX_BATCH`] of them in one call to
//! `gather_append_set` (migrations/postgres/0013_store_ownership.sql): one round trip,
//! one statement for all the batch's events and one WAL flush. The function first takes
//! a transaction-level advisory lock on every stream and command id of the batch, in one
//! global order, before it writes anything: batches never deadlock, and the transaction
//! id the batch takes at its first write is younger than every earlier writer of its
//! streams, so each stream reads in version order in the global log. Each member's
//! expectations are checked against the versions left by the members before it; a
//! refused member writes nothing and the others commit; a chain's member is refused
//! unless the member before it was appended. A batch that fails as a whole (a reused
//! event id, a lost connection) is retried chain by chain (a lone append is a chain of
//! one).
//!
//! Global reads order by `(commit_id, position)` and read only rows below
//! `gather_readable_below()` (the oldest running transaction's id plus the store's clock
//! offset): every transaction below it has finished, so no row can still appear before
//! the returned ones. `commit_id` belongs to the store: an explicit value is refused, and
//! [`rebase`] moves the clock after a move to another cluster.

use super::*;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Row};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};

/// The most appends one group commit carries.
pub const MAX_BATCH: usize = 64;
/// A batch stops growing once it holds this many events (one INSERT writes them all).
pub const MAX_BATCH_EVENTS: usize = 256;

/// How many batches may be in flight at once: `GATHER_STORE_COMMITTERS` (1 to 32), or
/// one per core, at least 2 (one batch waits for its WAL flush while the next is
/// applied), at most 8.
pub fn committers() -> usize {
    if let Some(n) = std::env::var("GATHER_STORE_COMMITTERS").ok().and_then(|v| v.trim().parse::<usize>().ok()) {
        return n.clamp(1, 32);
    }
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8)
}

/// Where one append's answer goes.
type Reply = oneshot::Sender<Result<AppendResult, StoreError>>;

/// One queued append, or a chain of appends decided on each other's state (kept
/// together in one batch, in order), and where their answers go.
struct Pending {
    chain: Vec<(BatchMember, Reply)>,
}

impl Pending {
    fn event_count(&self) -> usize {
        self.chain.iter().flat_map(|(m, _)| &m.appends).map(|a| a.events.len()).sum()
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

use crate::sql::COLUMNS;

impl PostgresStore {
    /// A store over `pool`; spawns the LISTEN task and the coalescing NOTIFY task.
    pub fn new(pool: PgPool) -> Self {
        let (wake_tx, _) = watch::channel(0u64);
        let (queue, rx) = mpsc::channel(1024);
        let store = PostgresStore { pool, wake_tx: Arc::new(wake_tx), notify_others: Arc::new(Notify::new()), queue };
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..committers() {
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
    // By index, in the order of `COLUMNS` (every query that reads events selects them).
    Ok(RecordedEvent {
        position: row.try_get(0)?,
        commit_id: row.try_get(1)?,
        stream: row.try_get(2)?,
        version: row.try_get(3)?,
        event_id: row.try_get(4)?,
        event_type: row.try_get(5)?,
        schema_version: row.try_get(6)?,
        data: row.try_get(7)?,
        command_id: row.try_get(8)?,
        correlation_id: row.try_get(9)?,
        causation_id: row.try_get(10)?,
        actor: row.try_get(11)?,
        recorded_at: row.try_get(12)?,
    })
}

/// Maps a failed group commit's error: a reused event id is the caller's bug; a
/// command id recorded meanwhile by a concurrent append is a repeat.
fn map_append_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.constraint() {
            Some("events_event_id_key") => return StoreError::DuplicateEvent,
            Some("command_positions_pkey") => return StoreError::DuplicateCommand,
            _ => {}
        }
    }
    StoreError::Database(e)
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
        // Chains stay whole and in order: the members after a chain's first are
        // refused in the statement once one before them is not appended.
        let mut members = Vec::new();
        let mut replies = Vec::new();
        let mut lengths = Vec::new();
        for p in batch {
            lengths.push(p.chain.len());
            for (m, reply) in p.chain {
                members.push(m);
                replies.push(reply);
            }
        }
        metrics::histogram!("gather_store_group_commit_appends").record(members.len() as f64);
        let chained: Vec<bool> = lengths.iter().flat_map(|n| (0..*n).map(|i| i > 0)).collect();
        match append_on(&pool, &members, &chained).await {
            Err(e) if lengths.len() > 1 => {
                tracing::debug!(error = %e, size = members.len(), "group commit failed; appending chain by chain");
                let mut rest = members.into_iter().zip(replies);
                for n in lengths {
                    let (chain, replies): (Vec<BatchMember>, Vec<Reply>) = rest.by_ref().take(n).unzip();
                    let chained: Vec<bool> = (0..n).map(|i| i > 0).collect();
                    answer_chain(replies, append_on(&pool, &chain, &chained).await);
                }
            }
            results => answer_chain(replies, results),
        }
    }
}

/// [`append_set`] on a connection of `pool`.
async fn append_on(
    pool: &PgPool,
    members: &[BatchMember],
    chained: &[bool],
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    let mut conn = pool.acquire().await?;
    append_set(&mut conn, members, chained).await
}

/// Sends a chain's answers: each its own, or the whole chain's failure to every member.
fn answer_chain(replies: Vec<Reply>, results: Result<Vec<Result<AppendResult, StoreError>>, StoreError>) {
    match results {
        Ok(results) => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            let message = e.to_string();
            let mut first = Some(e);
            for reply in replies {
                let e =
                    first.take().unwrap_or_else(|| StoreError::Unreadable(format!("group commit failed: {message}")));
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// One member of a group commit: a command's appends.
#[derive(Debug, Clone)]
pub struct BatchMember {
    /// The command's metadata.
    pub meta: AppendMeta,
    /// Its appends (validated by the caller).
    pub appends: Vec<StreamAppend>,
}

/// One row of `gather_append_set`'s answer: member (1-based), outcome, stream, first
/// and last position, version.
type SetRow = (i32, String, Option<String>, Option<i64>, Option<i64>, Option<i64>);

/// Group-commits `batch` in one statement on `conn` (in its transaction, if one is open):
/// each member gets its own result; `Err` means the batch as a whole failed (nothing of
/// it was written) and may be retried.
pub async fn append_batch(
    conn: &mut sqlx::PgConnection,
    batch: &[BatchMember],
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    append_set(conn, batch, &vec![false; batch.len()]).await
}

/// [`append_batch`], where a member marked `chained` is refused (a conflict on its
/// first stream) unless the member before it was appended: it was decided on the
/// state that one leaves.
pub async fn append_set(
    conn: &mut sqlx::PgConnection,
    batch: &[BatchMember],
    chained: &[bool],
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    let mut m_command = Vec::with_capacity(batch.len());
    let mut m_correlation = Vec::with_capacity(batch.len());
    let mut m_causation = Vec::with_capacity(batch.len());
    let mut m_actor = Vec::with_capacity(batch.len());
    let (mut a_member, mut a_stream, mut a_expected, mut a_count) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut e_append, mut e_id, mut e_type, mut e_schema, mut e_data) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (m, member) in batch.iter().enumerate() {
        m_command.push(member.meta.command_id);
        m_correlation.push(member.meta.correlation_id);
        m_causation.push(member.meta.causation_id);
        m_actor.push(member.meta.actor);
        for a in &member.appends {
            a_member.push(m as i32 + 1);
            a_stream.push(a.stream.as_str());
            a_expected.push(match a.expected {
                ExpectedVersion::Any => -1i64,
                ExpectedVersion::NoStream => -2,
                ExpectedVersion::StreamExists => -3,
                // no stream is ever at a negative version
                ExpectedVersion::Exact(v) if v < 0 => -4,
                ExpectedVersion::Exact(v) => v,
            });
            a_count.push(a.events.len() as i32);
            for e in &a.events {
                e_append.push(a_stream.len() as i32);
                e_id.push(e.event_id);
                e_type.push(e.event_type.as_str());
                e_schema.push(e.schema_version);
                e_data.push(&e.data);
            }
        }
    }
    let rows: Vec<SetRow> = sqlx::query_as(
        "SELECT member, outcome, stream, first_position, last_position, version \
         FROM gather_append_set($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&m_command)
    .bind(&m_correlation)
    .bind(&m_causation)
    .bind(&m_actor)
    .bind(&a_member)
    .bind(&a_stream)
    .bind(&a_expected)
    .bind(&a_count)
    .bind(&e_append)
    .bind(&e_id)
    .bind(&e_type)
    .bind(&e_schema)
    .bind(&e_data)
    .bind(chained)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_append_error)?;

    let mut results: Vec<Option<Result<AppendResult, StoreError>>> = (0..batch.len()).map(|_| None).collect();
    for (member, outcome, stream, first, last, version) in rows {
        let slot = usize::try_from(member - 1)
            .ok()
            .and_then(|i| results.get_mut(i).map(|r| (i, r)))
            .ok_or_else(|| StoreError::Unreadable(format!("group commit answered for member {member}")))?;
        let (i, slot) = slot;
        let unreadable = || StoreError::Unreadable(format!("group commit answer {outcome:?} is incomplete"));
        match outcome.as_str() {
            "ok" | "duplicate" => {
                let r = StreamResult {
                    stream: stream.ok_or_else(unreadable)?,
                    first_position: first.ok_or_else(unreadable)?,
                    last_position: last.ok_or_else(unreadable)?,
                    version: version.ok_or_else(unreadable)?,
                };
                match slot {
                    Some(Ok(done)) => done.streams.push(r),
                    _ => *slot = Some(Ok(AppendResult { duplicate: outcome == "duplicate", streams: vec![r] })),
                }
            }
            "conflict" => {
                let stream = stream.ok_or_else(unreadable)?;
                let expected = batch[i]
                    .appends
                    .iter()
                    .find(|a| a.stream == stream)
                    .map(|a| a.expected)
                    .unwrap_or(ExpectedVersion::Any);
                let actual = version.filter(|v| *v >= 0);
                *slot = Some(Err(StoreError::Conflict { stream, expected, actual }));
            }
            "repeated" => *slot = Some(Err(StoreError::DuplicateCommand)),
            other => return Err(StoreError::Unreadable(format!("group commit outcome {other:?}"))),
        }
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| StoreError::Unreadable("group commit left a member unanswered".into())))
        .collect()
}

impl PostgresStore {
    async fn recorded_result(&self, command_id: Uuid) -> Result<Option<AppendResult>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT e.stream, min(e.position), max(e.position), max(e.version) \
             FROM command_positions c \
             JOIN events e ON e.position BETWEEN c.first_position AND c.last_position AND e.command_id = c.command_id \
             WHERE c.command_id = $1 GROUP BY e.stream ORDER BY min(e.position)",
        )
        .bind(command_id)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let streams = rows
            .into_iter()
            .map(|(stream, first_position, last_position, version)| StreamResult {
                stream,
                first_position,
                last_position,
                version,
            })
            .collect();
        Ok(Some(AppendResult { duplicate: true, streams }))
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities { multi_stream_append: true }
    }

    async fn append(&self, meta: &AppendMeta, appends: Vec<StreamAppend>) -> Result<AppendResult, StoreError> {
        validate(&appends)?;
        let (reply, answer) = oneshot::channel();
        let pending = Pending { chain: vec![(BatchMember { meta: meta.clone(), appends }, reply)] };
        self.queue.send(pending).await.map_err(|_| StoreError::Shutdown)?;
        let result = answer.await.map_err(|_| StoreError::LostReply)?;
        let result = match result {
            // A concurrent append of the same command may have won: answer with its result.
            Err(StoreError::Conflict { .. }) | Err(StoreError::DuplicateCommand) => {
                match self.recorded_result(meta.command_id).await? {
                    Some(first) => Ok(first),
                    None => result.map_err(|e| match e {
                        StoreError::DuplicateCommand => {
                            StoreError::Unreadable("a repeated command has no recorded result".into())
                        }
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

    /// The chain in one group commit, whole and in order.
    async fn append_chain(&self, chain: Vec<(AppendMeta, Vec<StreamAppend>)>) -> Vec<Result<AppendResult, StoreError>> {
        let mut out: Vec<Option<Result<AppendResult, StoreError>>> = Vec::with_capacity(chain.len());
        let mut pending = Vec::new();
        let mut answers = Vec::new();
        let mut broken = false;
        for (meta, appends) in chain {
            // A member that is invalid ends the chain there: the rest are refused.
            if broken {
                out.push(Some(Err(chain_broken(&appends))));
                continue;
            }
            if let Err(e) = validate(&appends) {
                out.push(Some(Err(e)));
                broken = true;
                continue;
            }
            let (reply, answer) = oneshot::channel();
            pending.push((BatchMember { meta, appends }, reply));
            answers.push((out.len(), answer));
            out.push(None);
        }
        if !pending.is_empty() {
            if self.queue.send(Pending { chain: pending }).await.is_err() {
                for (i, _) in &answers {
                    out[*i] = Some(Err(StoreError::Shutdown));
                }
            } else {
                for (i, answer) in answers {
                    out[i] = Some(answer.await.unwrap_or(Err(StoreError::LostReply)));
                }
            }
        }
        if out.iter().any(|r| matches!(r, Some(Ok(a)) if !a.duplicate)) {
            self.bump();
            self.notify_others.notify_one();
        }
        out.into_iter().map(|r| r.unwrap_or(Err(StoreError::LostReply))).collect()
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
             AND commit_id < gather_readable_below()"
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
        // Decode rows as they arrive, while Postgres is still sending the rest.
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.commit_id)
            .bind(after.position)
            .bind(limit)
            .bind(&filter.categories)
            .bind(&filter.event_types)
            .fetch(&self.pool);
        let mut page = Vec::with_capacity(limit.clamp(0, LOG_PAGE) as usize);
        while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
            page.push(row_to_event(row)?);
        }
        Ok(page)
    }

    /// Like the default, but the next page is read while the caller consumes this one.
    fn read_log(
        &self,
        after: Checkpoint,
        filter: LogFilter,
    ) -> futures::stream::BoxStream<'_, Result<RecordedEvent, StoreError>> {
        use futures::StreamExt;
        let store = self.clone();
        let fetch = move |at: Checkpoint| {
            let (store, filter) = (store.clone(), filter.clone());
            tokio::spawn(async move { store.read_log_page(at, &filter, LOG_PAGE).await })
        };
        let first = fetch(after);
        futures::stream::unfold((Some(first), fetch), |(next, fetch)| async move {
            let page = match next?.await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return Some((futures::stream::iter(vec![Err(e)]), (None, fetch))),
                Err(e) => {
                    let e = StoreError::Unreadable(format!("log page reader stopped: {e}"));
                    return Some((futures::stream::iter(vec![Err(e)]), (None, fetch)));
                }
            };
            if page.is_empty() {
                return None;
            }
            let following = page.last().filter(|_| page.len() as i64 == LOG_PAGE).map(|e| fetch(e.checkpoint()));
            Some((futures::stream::iter(page.into_iter().map(Ok).collect::<Vec<_>>()), (following, fetch)))
        })
        .flatten()
        .boxed()
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT commit_id, position FROM events \
             WHERE commit_id < gather_readable_below() \
             ORDER BY commit_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(c, p)| Checkpoint { commit_id: c, position: p }).unwrap_or(Checkpoint::START))
    }

    async fn is_committed(&self, position: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE position = $1)")
            .bind(position)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn checkpoint_of(&self, position: i64) -> Result<Option<Checkpoint>, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT commit_id, position FROM events WHERE position = $1 \
             AND commit_id < gather_readable_below()",
        )
        .bind(position)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(c, p)| Checkpoint { commit_id: c, position: p }))
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT max(version) FROM events WHERE stream = $1")
            .bind(stream)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, i32, Value)> =
            sqlx::query_as(crate::sql::LOAD_SNAPSHOT).bind(stream).fetch_optional(&self.pool).await?;
        Ok(row.map(|(version, state_version, state)| Snapshot { version, state_version, state }))
    }

    async fn save_snapshot(&self, stream: &str, s: &Snapshot) -> Result<(), StoreError> {
        sqlx::query(crate::sql::SAVE_SNAPSHOT)
            .bind(stream)
            .bind(s.version)
            .bind(s.state_version)
            .bind(&s.state)
            .bind(chrono::Utc::now())
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

/// What [`rebase`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rebase {
    /// The offset added to transaction ids before.
    pub old_offset: i64,
    /// The offset added to transaction ids from now on.
    pub new_offset: i64,
    /// The highest `commit_id` in the log.
    pub max_commit_id: i64,
}

/// Moves the store's clock past every `commit_id` in the log (after a restore or a
/// logical-replication move into a cluster whose transaction ids are lower).
/// Run it once after the move, before the application starts writing; it is
/// idempotent, and appends wait while it runs.
pub async fn rebase(pool: &PgPool) -> Result<Rebase, StoreError> {
    let (old_offset, new_offset, max_commit_id): (i64, i64, i64) =
        sqlx::query_as("SELECT old_offset, new_offset, max_commit_id FROM gather_store_rebase()")
            .fetch_one(pool)
            .await?;
    Ok(Rebase { old_offset, new_offset, max_commit_id })
}

/// The transaction that holds back the log's readable head: readers read only below the
/// oldest transaction of the whole cluster that holds a transaction id, whichever
/// database or application it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    /// Its backend's process id.
    pub pid: i32,
    /// Its `application_name` (empty when the client set none).
    pub application_name: String,
    /// Its database (None for a background process).
    pub database: Option<String>,
    /// Its state (`active`, `idle in transaction`, …; None when not visible to this role).
    pub state: Option<String>,
    /// How long it has been open: how long events committed after it began may have
    /// been held back from readers.
    pub held_for: Duration,
}

/// The oldest open transaction of the cluster that holds a transaction id (None when
/// there is none): what `gather projections status` and `/metrics` report as the fence.
pub async fn fence(pool: &PgPool) -> Result<Option<Fence>, StoreError> {
    type Row = (i32, Option<String>, Option<String>, Option<String>, f64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT pid, application_name, datname::text, state, \
         extract(epoch FROM clock_timestamp() - coalesce(xact_start, backend_start))::float8 \
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL \
         ORDER BY age(backend_xid) DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(pid, application_name, database, state, secs)| Fence {
        pid,
        application_name: application_name.unwrap_or_default(),
        database,
        state,
        held_for: Duration::from_secs_f64(secs.max(0.0)),
    }))
}
