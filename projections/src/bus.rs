//! The message contract of projection updates and the two buses that carry them.
//!
//! Production: RabbitMQ (lapin). The relay publishes to the topic exchange
//! `gather.updates` (and `gather.audit` when enabled), persistent and mandatory, with
//! publisher confirms. Topology, declared idempotently by every process at start-up and
//! after every reconnect:
//! - `gather.notifications`: the notification worker's work queue (quorum), bound to
//!   the routing keys that send mail; a message it rejects goes through the dead-letter
//!   exchange `gather.dead` to `gather.notifications.dead`;
//! - `gather.notifications.retry.{1,2,3}`: tiered delay queues (1 s, 10 s, 60 s) whose
//!   messages expire back into `gather.notifications`;
//! - `gather.push.<boot id>`: one per api process (classic, bounded with drop-head),
//!   bound to everything, feeding its WebSocket and SSE clients. Not exclusive and not
//!   auto-delete: those die with the connection, so every update published while the
//!   process reconnects would be lost; instead the queue is durable and expires
//!   ([`PUSH_QUEUE_EXPIRES`]) once its process has been gone that long.
//!
//! Embedded: [`LocalBus`], an in-process bus with the same [`Update`] contract, fed by
//! the same outbox through the same relay.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

/// The topic exchange projection updates are published to.
pub const EXCHANGE: &str = "gather.updates";
/// The topic exchange every event goes to when `GATHER_AUDIT_EXCHANGE=on`.
pub const AUDIT_EXCHANGE: &str = "gather.audit";
/// The dead-letter exchange (direct).
pub const DEAD_EXCHANGE: &str = "gather.dead";
/// The notification worker's queue.
pub const NOTIFY_QUEUE: &str = "gather.notifications";
/// Where notifications that cannot be sent end.
pub const DEAD_QUEUE: &str = "gather.notifications.dead";
/// The retry tiers: queue name and delay.
pub const RETRY_TIERS: [(&str, Duration); 3] = [
    ("gather.notifications.retry.1", Duration::from_secs(1)),
    ("gather.notifications.retry.2", Duration::from_secs(10)),
    ("gather.notifications.retry.3", Duration::from_secs(60)),
];
/// The routing key that tells push workers a member was forgotten: their updates leave
/// every push history (it sends no mail).
pub const MEMBER_FORGOTTEN: &str = "member.forgotten";

/// The routing keys that send email (the notification queue's bindings).
pub const MAIL_KEYS: [&str; 8] = [
    "member.registered",
    "booking.*",
    "activity.approved",
    "activity.rejected",
    "activity.rescheduled",
    "activity.cancelled",
    "activity.attendee_list",
    "invitation.sent",
];
/// A push queue holds at most this many messages; the oldest are dropped first.
pub const PUSH_QUEUE_MAX: i64 = 10_000;
/// A push queue without a consumer for this long is deleted by the broker.
pub const PUSH_QUEUE_EXPIRES: Duration = Duration::from_secs(300);

/// One projection update, as published (the body of every message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Stable id, derived from the event: receivers drop duplicates by it.
    pub id: Uuid,
    /// The push topic: `member:<id>`, `activity:<id>` or `chat:<id>`.
    pub topic: String,
    /// What happened, also the routing key (`booking.confirmed`, `chat.message_posted`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The global position of the event it reflects.
    pub position: i64,
    /// The request or flow the event belongs to.
    pub correlation_id: Uuid,
    /// The members it concerns (pushed to them; emailed where the kind sends mail).
    #[serde(default)]
    pub recipients: Vec<Uuid>,
    /// An address that is not (yet) a member's: the invited email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The payload.
    pub data: serde_json::Value,
}

impl Update {
    /// The frame a client receives: `{topic, type, position, data}`.
    pub fn frame(&self) -> serde_json::Value {
        serde_json::json!({"topic": self.topic, "type": self.kind, "position": self.position, "data": self.data})
    }
}

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// RabbitMQ refused or dropped: retry later.
    #[error("rabbitmq error: {0}")]
    Amqp(#[from] lapin::Error),
    /// Could not connect within the bound.
    #[error("could not connect to rabbitmq within {0:?}")]
    Timeout(Duration),
    /// The broker did not confirm a message, or returned it unroutable.
    #[error("the broker did not take the message: {0}")]
    NotConfirmed(String),
    /// The in-process consumer is gone.
    #[error("the in-process consumer stopped")]
    Closed,
}

/// The in-process bus: every update goes to the push subscribers (lossy broadcast, like
/// a bounded push queue) and, awaited, to the one in-process notification worker.
#[derive(Clone)]
pub struct LocalBus {
    push: broadcast::Sender<Arc<Update>>,
    mail: Arc<std::sync::Mutex<Option<mpsc::Sender<Update>>>>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus::new()
    }
}

impl LocalBus {
    /// An empty bus.
    pub fn new() -> LocalBus {
        let (push, _) = broadcast::channel(PUSH_QUEUE_MAX as usize);
        LocalBus { push, mail: Arc::default() }
    }

    /// Receives every update (a lagging receiver loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.push.subscribe()
    }

    /// Becomes the notification worker: updates with a mail key arrive here.
    pub fn take_mail(&self, capacity: usize) -> mpsc::Receiver<Update> {
        let (tx, rx) = mpsc::channel(capacity);
        *self.mail.lock().expect("mail sender lock") = Some(tx);
        rx
    }

    /// Delivers one update: to the push subscribers, and to the notification worker if
    /// it mails this kind (waits while its queue is full).
    pub async fn publish(&self, update: Update) -> Result<(), BusError> {
        let _ = self.push.send(Arc::new(update.clone()));
        if routes_to_mail(&update.kind) {
            let mail = self.mail.lock().expect("mail sender lock").clone();
            if let Some(mail) = mail {
                mail.send(update).await.map_err(|_| BusError::Closed)?;
            }
        }
        Ok(())
    }
}

/// Whether a routing key matches one of [`MAIL_KEYS`] (topic semantics for `*`).
pub fn routes_to_mail(kind: &str) -> bool {
    MAIL_KEYS.iter().any(|pattern| match pattern.strip_suffix(".*") {
        Some(prefix) => kind.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')).is_some_and(|r| !r.contains('.')),
        None => *pattern == kind,
    })
}

/// The RabbitMQ side: connects with a bound and declares the topology. Workers call
/// [`Broker::connect`] again after any failure (their supervisors back off).
#[derive(Clone)]
pub struct Broker {
    url: String,
    connected: Arc<AtomicBool>,
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

impl Broker {
    /// A broker at `url` (`amqp://…`); checks the connection and declares the topology
    /// once within `timeout`, so a wrong URL stops start-up.
    pub async fn start(url: &str, timeout: Duration) -> Result<Broker, BusError> {
        let broker = Broker { url: url.to_owned(), connected: Arc::new(AtomicBool::new(false)) };
        let connection = broker.connect(timeout).await?;
        let _ = connection.close(200, "start-up check".into()).await;
        Ok(broker)
    }

    /// A new connection with the topology declared.
    pub async fn connect(&self, timeout: Duration) -> Result<Connection, BusError> {
        let connect = async {
            let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            declare_topology(&channel).await?;
            let _ = channel.close(200, "topology declared".into()).await;
            Ok::<_, BusError>(connection)
        };
        let connection = tokio::time::timeout(timeout, connect).await.map_err(|_| BusError::Timeout(timeout))??;
        Ok(connection)
    }

    /// Records whether the workers' connections are up (the readiness check reads it).
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    /// Whether the workers' last connection attempt succeeded and is still up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Declares the exchanges and work queues (idempotent).
pub async fn declare_topology(channel: &Channel) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    for (name, kind) in
        [(EXCHANGE, ExchangeKind::Topic), (AUDIT_EXCHANGE, ExchangeKind::Topic), (DEAD_EXCHANGE, ExchangeKind::Direct)]
    {
        channel.exchange_declare(name.into(), kind, durable, FieldTable::default()).await?;
    }
    let queue = QueueDeclareOptions { durable: true, ..Default::default() };
    let quorum = text("quorum");
    channel
        .queue_declare(
            NOTIFY_QUEUE.into(),
            queue,
            table(&[
                ("x-queue-type", quorum.clone()),
                ("x-dead-letter-exchange", text(DEAD_EXCHANGE)),
                ("x-dead-letter-routing-key", text(DEAD_QUEUE)),
            ]),
        )
        .await?;
    for key in MAIL_KEYS {
        channel
            .queue_bind(
                NOTIFY_QUEUE.into(),
                EXCHANGE.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    channel.queue_declare(DEAD_QUEUE.into(), queue, table(&[("x-queue-type", quorum.clone())])).await?;
    channel
        .queue_bind(
            DEAD_QUEUE.into(),
            DEAD_EXCHANGE.into(),
            DEAD_QUEUE.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for (name, delay) in RETRY_TIERS {
        channel
            .queue_declare(
                name.into(),
                queue,
                table(&[
                    ("x-queue-type", quorum.clone()),
                    ("x-message-ttl", AMQPValue::LongLongInt(delay.as_millis() as i64)),
                    ("x-dead-letter-exchange", text("")),
                    ("x-dead-letter-routing-key", text(NOTIFY_QUEUE)),
                ]),
            )
            .await?;
    }
    Ok(())
}

/// Declares this api process's push queue, bound to every update.
pub async fn declare_push_queue(channel: &Channel, boot_id: Uuid) -> Result<String, lapin::Error> {
    let name = format!("gather.push.{boot_id}");
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            table(&[
                ("x-queue-type", text("classic")),
                ("x-expires", AMQPValue::LongLongInt(PUSH_QUEUE_EXPIRES.as_millis() as i64)),
                ("x-max-length", AMQPValue::LongLongInt(PUSH_QUEUE_MAX)),
                ("x-overflow", text("drop-head")),
            ]),
        )
        .await?;
    channel
        .queue_bind(
            name.as_str().into(),
            EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(name)
}

/// Exponential backoff for supervisors: 100 ms doubling to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_keys_match_like_rabbitmq_topics() {
        assert!(routes_to_mail("booking.confirmed"));
        assert!(routes_to_mail("invitation.sent"));
        assert!(!routes_to_mail("booking.confirmed.extra"));
        assert!(!routes_to_mail("chat.message_posted"));
        assert!(!routes_to_mail("activity.seats_left"));
    }
}
