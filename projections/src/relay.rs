//! The relay: outbox rows → RabbitMQ (or the in-process bus), then deleted.
//!
//! One relay per partition at a time: on Postgres each process's relay holds a
//! session-level advisory lock per partition it serves (a dead process's locks go with
//! its connection; the others pick them up within [`RECLAIM`]). A lane is a
//! partition's messages for one exchange. Each round reads the oldest [`BATCH`] rows
//! of every owned lane in `seq` order (one query), publishes them in that order on one
//! channel (so each lane keeps its order), awaits their confirms together and deletes
//! each lane's confirmed prefix in one statement. A message the broker nacks or
//! returns unroutable (`mandatory`) is a failure: it and everything after it in its
//! lane stay in the outbox and are retried after a backoff, while the other lanes go
//! on. Nothing is deleted before its confirm, so a broker failure means at-least-once
//! delivery (ids are stable; consumers drop duplicates).
//!
//! Woken by `NOTIFY gather_outbox` (Postgres) with polling every [`POLL`] as the
//! guarantee. The relay supervises itself: any broker error drops the connection and
//! reconnects (declaring the topology again) with backoff.

use crate::bus::{Broker, BusError, LocalBus, Update, backoff};
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
    partition: i32,
    exchange: String,
    routing_key: String,
    message: String,
}

/// Why a round stopped.
enum RoundError {
    /// The broker connection or channel failed: reconnect.
    Broker(BusError),
    /// The database failed: retry the round.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for RoundError {
    fn from(e: sqlx::Error) -> Self {
        RoundError::Db(e)
    }
}

/// The relay of one process.
pub struct Relay {
    db: Db,
    sink: Sink,
    stats: Arc<RelayStats>,
}

/// A lane: a partition's messages for one exchange, published in order.
type Lane = (i32, String);

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
        // Consecutive refusals per lane (the backoff grows with them).
        let mut tried: HashMap<Lane, u32> = HashMap::new();
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
            let now = Instant::now();
            lane_backoff.retain(|_, (until, _)| *until > now);
            let skip: Vec<Lane> = lane_backoff.keys().cloned().collect();
            let channel = broker.as_ref().map(|(_, ch)| ch);
            let mut broke = false;
            let moved = match self.round(&owned, &skip, channel).await {
                Ok(Round { moved, refused }) => {
                    for (lane, why) in refused {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        let n = tried.get(&lane).map_or(0, |n| n + 1);
                        tried.insert(lane.clone(), n);
                        tracing::warn!(partition = lane.0, exchange = %lane.1, %why, "the broker refused an outbox message; the lane backs off");
                        lane_backoff.insert(lane, (Instant::now() + backoff(n), n));
                    }
                    moved
                }
                Err(RoundError::Broker(e)) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "outbox relay lost rabbitmq; reconnecting");
                    if let Sink::Broker(b) = &self.sink {
                        b.set_connected(false);
                    }
                    broker = None;
                    broke = true;
                    0
                }
                Err(RoundError::Db(e)) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "outbox relay could not read or delete outbox rows; retrying");
                    broke = true;
                    0
                }
            };
            if moved > 0 && lane_backoff.is_empty() {
                tried.clear();
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

    /// One round: the oldest [`BATCH`] rows of every owned lane not backing off, in
    /// `seq` order, published together (each lane's rows keep their order), their
    /// confirms awaited together, and each lane's confirmed prefix deleted in one
    /// statement. A lane whose message was refused keeps it and what follows it.
    async fn round(&self, owned: &[i32], skip: &[Lane], channel: Option<&Channel>) -> Result<Round, RoundError> {
        if owned.is_empty() {
            return Ok(Round::default());
        }
        let rows = self.read(owned, skip).await?;
        if rows.is_empty() {
            return Ok(Round::default());
        }
        let outcomes: Vec<Result<(), String>> = match (&self.sink, channel) {
            (Sink::Local(bus), _) => {
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    match serde_json::from_str::<Update>(&row.message) {
                        Ok(update) => bus.publish(update).await.map_err(RoundError::Broker)?,
                        Err(e) => tracing::error!(id = %row.id, error = %e, "an unreadable outbox row is dropped"),
                    }
                    out.push(Ok(()));
                }
                out
            }
            (Sink::Broker(_), Some(channel)) => publish_all(channel, &rows).await?,
            (Sink::Broker(_), None) => return Ok(Round::default()),
        };
        // Per lane: everything up to its first failure is done.
        let mut failed: HashMap<Lane, String> = HashMap::new();
        let mut done = Vec::with_capacity(rows.len());
        let mut broker_error = None;
        for (row, outcome) in rows.iter().zip(outcomes) {
            let lane = (row.partition, row.exchange.clone());
            if failed.contains_key(&lane) {
                continue;
            }
            match outcome {
                Ok(()) => done.push(row.seq),
                Err(why) => {
                    if why.starts_with("broker:") {
                        broker_error.get_or_insert_with(|| why.clone());
                    }
                    failed.insert(lane, why);
                }
            }
        }
        if !done.is_empty() {
            self.delete(&done).await?;
            self.stats.published.fetch_add(done.len() as u64, Ordering::Relaxed);
            metrics::counter!("gather_relay_published_total").increment(done.len() as u64);
        }
        if let Some(e) = broker_error {
            return Err(RoundError::Broker(BusError::NotConfirmed(e)));
        }
        Ok(Round { moved: done.len(), refused: failed.into_iter().collect() })
    }

    async fn read(&self, owned: &[i32], skip: &[Lane]) -> Result<Vec<Row>, sqlx::Error> {
        match &self.db {
            Db::Postgres(p) => {
                let (skip_p, skip_x): (Vec<i32>, Vec<String>) = skip.iter().cloned().unzip();
                sqlx::query_as(
                    "SELECT seq, id, partition, exchange, routing_key, message FROM outbox o \
                     WHERE partition = ANY($1) AND NOT EXISTS (\
                       SELECT 1 FROM unnest($2::int[], $3::text[]) AS s(p, x) WHERE s.p = o.partition AND s.x = o.exchange) \
                     ORDER BY seq LIMIT $4",
                )
                .bind(owned)
                .bind(&skip_p)
                .bind(&skip_x)
                .bind(BATCH)
                .fetch_all(p)
                .await
            }
            // One process owns every partition, and the in-process bus refuses nothing.
            // The writer: a row committed a moment ago is visible (no stale reader).
            Db::Sqlite { writer, .. } => {
                sqlx::query_as(
                    "SELECT seq, id, partition, exchange, routing_key, message FROM outbox ORDER BY seq LIMIT $1",
                )
                .bind(BATCH)
                .fetch_all(writer)
                .await
            }
        }
    }

    async fn delete(&self, seqs: &[i64]) -> Result<(), sqlx::Error> {
        match &self.db {
            Db::Postgres(p) => {
                sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)").bind(seqs).execute(p).await?;
            }
            Db::Sqlite { writer, .. } => {
                // One writer: seqs are committed in order and every row was read and
                // delivered, so what was read is exactly the rows up to the last seq.
                let last = seqs.iter().copied().max().unwrap_or(0);
                sqlx::query("DELETE FROM outbox WHERE seq <= $1").bind(last).execute(writer).await?;
            }
        }
        Ok(())
    }
}

/// What a round did.
#[derive(Default)]
struct Round {
    /// Rows confirmed and deleted.
    moved: usize,
    /// Lanes whose message the broker refused, and why.
    refused: Vec<(Lane, String)>,
}

/// Opens a connection (topology declared) and a confirming channel.
async fn open(broker: &Broker) -> Result<(Connection, Channel), BusError> {
    let connection = broker.connect(Duration::from_secs(10)).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok((connection, channel))
}

/// Publishes `rows` in order (persistent, mandatory, each to its exchange), then awaits
/// every confirm; per row `Ok`, or why not (`broker: …` when the channel failed).
async fn publish_all(channel: &Channel, rows: &[Row]) -> Result<Vec<Result<(), String>>, RoundError> {
    let mut confirms = Vec::with_capacity(rows.len());
    for row in rows {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(row.id.to_string().into())
            .with_content_type("application/json".into());
        let confirm = channel
            .basic_publish(
                row.exchange.as_str().into(),
                row.routing_key.as_str().into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                row.message.as_bytes(),
                props,
            )
            .await;
        match confirm {
            Ok(c) => confirms.push(c),
            // Nothing after it was published: the earlier ones still get their confirms.
            Err(e) if confirms.is_empty() => return Err(RoundError::Broker(e.into())),
            Err(_) => break,
        }
    }
    let published = confirms.len();
    let mut out: Vec<Result<(), String>> = futures::future::join_all(confirms)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(c) if c.is_ack() => match c.take_message() {
                None => Ok(()),
                Some(_) => Err("returned unroutable".to_owned()),
            },
            Ok(_) => Err("nacked by the broker".to_owned()),
            Err(e) => Err(format!("broker: {e}")),
        })
        .collect();
    out.extend((published..rows.len()).map(|_| Err("broker: the channel failed while publishing".to_owned())));
    Ok(out)
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
