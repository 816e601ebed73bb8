//! The relay: outbox rows → RabbitMQ (or the in-process bus), then deleted.
//!
//! One relay per partition at a time: on Postgres each process's relay holds a
//! session-level advisory lock per partition it serves (a dead process's locks go with
//! its connection; the others pick them up within [`RECLAIM`]). Within a partition, rows
//! are published in `seq` order on one channel: up to [`BATCH`] publishes, then their
//! confirms are awaited together and the confirmed rows deleted in one statement. A
//! message the broker nacks or returns unroutable (`mandatory`) is a failure: it and
//! everything after it in its lane stay in the outbox and are retried after a backoff;
//! the other lanes go on. Nothing is deleted before its confirm, so a broker failure
//! means at-least-once delivery (ids are stable; consumers drop duplicates).
//!
//! Woken by `NOTIFY gather_outbox` (Postgres) with polling every [`POLL`] as the
//! guarantee. The relay supervises itself: any broker error drops the connection and
//! reconnects (declaring the topology again) with backoff.

use crate::bus::{AUDIT_EXCHANGE, Broker, BusError, EXCHANGE, LocalBus, Update, backoff};
use crate::outbox::PARTITIONS;
use gather_store::db::Db;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

/// Rows published per round trip of confirms.
pub const BATCH: i64 = 256;
/// Polling interval when no NOTIFY arrives.
pub const POLL: Duration = Duration::from_millis(500);
/// How often a relay tries to take partitions it does not hold.
pub const RECLAIM: Duration = Duration::from_secs(2);
/// The advisory lock class of outbox partitions (the key is `(class, partition)`).
const LOCK_CLASS: i32 = 0x6761_7468; // "gath"

/// Where the relay delivers.
#[derive(Clone)]
pub enum Sink {
    /// RabbitMQ.
    Broker(Broker),
    /// The in-process bus.
    Local(LocalBus),
}

/// Counters the benchmark and health read.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Messages confirmed and deleted.
    pub published: AtomicU64,
    /// Failed rounds (broker errors, returns, nacks).
    pub failures: AtomicU64,
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    id: Uuid,
    routing_key: String,
    message: String,
}

/// Why a lane stopped this round.
enum LaneError {
    /// The broker connection or channel failed: reconnect.
    Broker(BusError),
    /// A message was nacked or returned: back the lane off, the others go on.
    Refused(String),
    /// The database failed: retry the round.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for LaneError {
    fn from(e: sqlx::Error) -> Self {
        LaneError::Db(e)
    }
}

/// The relay of one process.
pub struct Relay {
    db: Db,
    sink: Sink,
    stats: Arc<RelayStats>,
}

type Lane = (i32, &'static str);

impl Relay {
    /// A relay from `db`'s outbox into `sink`.
    pub fn new(db: Db, sink: Sink) -> Relay {
        Relay { db, sink, stats: Arc::default() }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` flips.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let (tick, mut wake) = watch::channel(0u64);
        if let Db::Postgres(pool) = &self.db {
            tokio::spawn(crate::checkpoints::listen(pool.clone(), "gather_outbox", Arc::new(tick), shutdown.clone()));
        }
        let mut locks = match Locks::new(&self.db).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "the outbox relay could not open its lock connection; retrying");
                Locks::Retry
            }
        };
        let mut broker: Option<(Connection, Channel)> = None;
        let mut attempt = 0u32;
        let mut lane_backoff: HashMap<Lane, (Instant, u32)> = HashMap::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Locks::Retry = locks {
                locks = Locks::new(&self.db).await.unwrap_or(Locks::Retry);
            }
            let owned = locks.refresh().await;
            if let Sink::Broker(b) = &self.sink
                && broker.is_none()
            {
                match open(b).await {
                    Ok(c) => {
                        tracing::info!("outbox relay connected to rabbitmq");
                        b.set_connected(true);
                        broker = Some(c);
                        attempt = 0;
                    }
                    Err(e) => {
                        b.set_connected(false);
                        tracing::warn!(error = %e, attempt, "outbox relay could not connect to rabbitmq; backing off");
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        if wait(&mut shutdown, backoff(attempt)).await {
                            break;
                        }
                        attempt += 1;
                        continue;
                    }
                }
            }
            let mut moved = 0;
            let mut broke = false;
            'lanes: for partition in owned {
                for exchange in [EXCHANGE, AUDIT_EXCHANGE] {
                    let lane = (partition, exchange);
                    if lane_backoff.get(&lane).is_some_and(|(until, _)| Instant::now() < *until) {
                        continue;
                    }
                    let channel = broker.as_ref().map(|(_, ch)| ch);
                    match self.lane(lane, channel).await {
                        Ok(n) => {
                            moved += n;
                            lane_backoff.remove(&lane);
                        }
                        Err(LaneError::Refused(why)) => {
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            let n = lane_backoff.get(&lane).map_or(0, |(_, n)| *n + 1);
                            tracing::warn!(partition, exchange, %why, "the broker refused an outbox message; the lane backs off");
                            lane_backoff.insert(lane, (Instant::now() + backoff(n), n));
                        }
                        Err(LaneError::Broker(e)) => {
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "outbox relay lost rabbitmq; reconnecting");
                            if let Sink::Broker(b) = &self.sink {
                                b.set_connected(false);
                            }
                            broker = None;
                            broke = true;
                            break 'lanes;
                        }
                        Err(LaneError::Db(e)) => {
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "outbox relay could not read or delete outbox rows; retrying");
                            broke = true;
                            break 'lanes;
                        }
                    }
                }
            }
            if broke {
                if wait(&mut shutdown, backoff(attempt)).await {
                    break;
                }
                attempt += 1;
                continue;
            }
            if moved == 0 {
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
        }
        if let Some((connection, _)) = broker {
            let _ = connection.close(200, "shutting down".into()).await;
        }
    }

    /// Publishes one batch of a lane; returns how many rows it moved.
    async fn lane(&self, (partition, exchange): Lane, channel: Option<&Channel>) -> Result<usize, LaneError> {
        let rows = self.read(partition, exchange).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let confirmed = match (&self.sink, channel) {
            (Sink::Local(bus), _) => {
                let mut n = 0;
                for row in &rows {
                    match serde_json::from_str::<Update>(&row.message) {
                        Ok(update) => bus.publish(update).await.map_err(LaneError::Broker)?,
                        Err(e) => tracing::error!(id = %row.id, error = %e, "an unreadable outbox row is dropped"),
                    }
                    n += 1;
                }
                n
            }
            (Sink::Broker(_), Some(channel)) => publish_batch(channel, exchange, &rows).await?,
            (Sink::Broker(_), None) => return Ok(0),
        };
        if confirmed > 0 {
            self.delete(partition, &rows[..confirmed]).await?;
            self.stats.published.fetch_add(confirmed as u64, Ordering::Relaxed);
        }
        if confirmed < rows.len() {
            return Err(LaneError::Refused(format!("message {} was not confirmed", rows[confirmed].id)));
        }
        Ok(confirmed)
    }

    async fn read(&self, partition: i32, exchange: &str) -> Result<Vec<Row>, sqlx::Error> {
        let sql = "SELECT seq, id, routing_key, message FROM outbox WHERE partition = $1 AND exchange = $2 \
                   ORDER BY seq LIMIT $3";
        match &self.db {
            Db::Postgres(p) => sqlx::query_as(sql).bind(partition).bind(exchange).bind(BATCH).fetch_all(p).await,
            // The writer: a row committed a moment ago is visible (no stale reader).
            Db::Sqlite { writer, .. } => {
                sqlx::query_as(sql).bind(partition).bind(exchange).bind(BATCH).fetch_all(writer).await
            }
        }
    }

    async fn delete(&self, partition: i32, rows: &[Row]) -> Result<(), sqlx::Error> {
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        match &self.db {
            Db::Postgres(p) => {
                sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)").bind(&seqs).execute(p).await?;
            }
            Db::Sqlite { writer, .. } => {
                // One writer: seqs are assigned in commit order, so a prefix is a range.
                let (first, last) = (seqs[0], seqs[seqs.len() - 1]);
                sqlx::query("DELETE FROM outbox WHERE partition = $1 AND seq BETWEEN $2 AND $3")
                    .bind(partition)
                    .bind(first)
                    .bind(last)
                    .execute(writer)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Opens a connection (topology declared) and a confirming channel.
async fn open(broker: &Broker) -> Result<(Connection, Channel), BusError> {
    let connection = broker.connect(Duration::from_secs(10)).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok((connection, channel))
}

/// Publishes `rows` in order (persistent, mandatory), then awaits every confirm; returns
/// the length of the confirmed prefix.
async fn publish_batch(channel: &Channel, exchange: &str, rows: &[Row]) -> Result<usize, LaneError> {
    let mut confirms = Vec::with_capacity(rows.len());
    for row in rows {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(row.id.to_string().into())
            .with_content_type("application/json".into());
        let confirm = channel
            .basic_publish(
                exchange.into(),
                row.routing_key.as_str().into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                row.message.as_bytes(),
                props,
            )
            .await
            .map_err(|e| LaneError::Broker(e.into()))?;
        confirms.push(confirm);
    }
    let results = futures::future::join_all(confirms).await;
    let mut prefix = 0;
    for result in results {
        match result {
            Ok(c) if c.is_ack() => {
                if c.take_message().is_some() {
                    break; // returned: unroutable
                }
                prefix += 1;
            }
            Ok(_) => break,
            Err(e) => {
                if prefix == 0 {
                    return Err(LaneError::Broker(e.into()));
                }
                break;
            }
        }
    }
    Ok(prefix)
}

/// Waits `d` or until shutdown; true when shutting down.
async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    }
}

/// The partitions this relay serves.
enum Locks {
    /// SQLite: one process, every partition.
    All,
    /// Postgres: session advisory locks on a dedicated connection.
    Postgres { conn: sqlx::PgConnection, held: BTreeSet<i32>, checked: Option<Instant> },
    /// The lock connection could not be opened: try again next round.
    Retry,
}

impl Locks {
    async fn new(db: &Db) -> Result<Locks, sqlx::Error> {
        Ok(match db {
            Db::Sqlite { .. } => Locks::All,
            Db::Postgres(pool) => {
                Locks::Postgres { conn: pool.acquire().await?.detach(), held: BTreeSet::new(), checked: None }
            }
        })
    }

    /// Takes free partitions (every [`RECLAIM`]) and returns the held ones.
    async fn refresh(&mut self) -> Vec<i32> {
        match self {
            Locks::All => (0..PARTITIONS).collect(),
            Locks::Retry => Vec::new(),
            Locks::Postgres { conn, held, checked } => {
                if checked.is_none_or(|t| t.elapsed() >= RECLAIM) {
                    *checked = Some(Instant::now());
                    // The locks live as long as this connection: a dead one means
                    // another relay may hold them now.
                    if let Err(e) = sqlx::query("SELECT 1").execute(&mut *conn).await {
                        tracing::warn!(error = %e, "the outbox relay lost its lock connection");
                        *self = Locks::Retry;
                        return Vec::new();
                    }
                    for p in 0..PARTITIONS {
                        if held.contains(&p) {
                            continue;
                        }
                        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
                            .bind(LOCK_CLASS)
                            .bind(p)
                            .fetch_one(&mut *conn)
                            .await
                        {
                            Ok(true) => {
                                held.insert(p);
                            }
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the outbox relay lost its lock connection");
                                *self = Locks::Retry;
                                return Vec::new();
                            }
                        }
                    }
                }
                held.iter().copied().collect()
            }
        }
    }
}
