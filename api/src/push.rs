//! Real-time push: every api process feeds its WebSocket and SSE clients from its own
//! queue (`gather.push.<boot id>`, bound to every update) or, embedded, from the
//! in-process bus.
//!
//! The [`PushHub`] keeps the connected clients and a bounded history of recent updates
//! (for SSE `Last-Event-ID` resume; ids are `<boot id>:<seq>`, so a resume against
//! another process or from before the history gets an explicit `reset`). Each client
//! has a bounded buffer: a client that does not read is disconnected with a reason
//! instead of slowing the others.

use gather_projections::bus::{Broker, LocalBus, Update, backoff, declare_push_queue};
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use uuid::Uuid;

/// Frames a client may have waiting before it is disconnected.
pub const CLIENT_BUFFER: usize = 256;
/// Updates kept for SSE resume.
pub const HISTORY: usize = 10_000;
/// The kinds an activity's watchers receive (its public updates).
pub const PUBLIC_KINDS: [&str; 3] = ["activity.seats_left", "activity.rescheduled", "activity.cancelled"];

/// One frame for one client.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The SSE id (`<boot id>:<seq>`).
    pub id: String,
    /// The update.
    pub update: Arc<Update>,
}

/// What a client watches besides its own updates.
#[derive(Debug, Default)]
struct Client {
    member: Uuid,
    activities: HashSet<Uuid>,
    tx: Option<mpsc::Sender<Outgoing>>,
    closed: Arc<OnceLock<String>>,
}

impl Client {
    fn wants(&self, u: &Update) -> bool {
        if u.recipients.contains(&self.member) {
            return true;
        }
        PUBLIC_KINDS.contains(&u.kind.as_str())
            && u.topic
                .strip_prefix("activity:")
                .and_then(|id| id.parse().ok())
                .is_some_and(|id| self.activities.contains(&id))
    }
}

impl Inner {
    /// A forgotten member's updates (only to them, or messages they sent) are blanked in
    /// the history, keeping their places (resume points stay valid); updates to others
    /// too lose them as a recipient; their clients close.
    fn forget(&mut self, member: Uuid) {
        let sender = serde_json::json!(member);
        let mut blanked = 0;
        for (_, u) in self.history.iter_mut() {
            let theirs = u.data.get("sender_id") == Some(&sender) || u.recipients == [member];
            if !theirs && u.recipients.contains(&member) {
                let mut kept = (**u).clone();
                kept.recipients.retain(|r| *r != member);
                *u = Arc::new(kept);
            } else if theirs {
                *u = Arc::new(Update {
                    id: u.id,
                    topic: String::new(),
                    kind: "forgotten".into(),
                    position: u.position,
                    correlation_id: u.correlation_id,
                    recipients: Vec::new(),
                    email: None,
                    data: serde_json::Value::Null,
                });
                blanked += 1;
            }
        }
        self.clients.retain(|_, c| {
            if c.member == member {
                let _ = c.closed.set("the member was forgotten".to_owned());
            }
            c.member != member
        });
        self.forgets += 1;
        tracing::info!(%member, blanked, "a forgotten member's updates left the push history");
    }
}

#[derive(Default)]
struct Inner {
    /// How many forgets this process has applied.
    forgets: u64,
    next: u64,
    clients: HashMap<u64, Client>,
    seq: u64,
    history: VecDeque<(u64, Arc<Update>)>,
    seen: HashSet<Uuid>,
    seen_order: VecDeque<Uuid>,
}

/// The connected clients of this process.
pub struct PushHub {
    boot_id: Uuid,
    inner: Mutex<Inner>,
}

/// A registered client: its frames, and why it was closed (when it was).
pub struct Registration {
    /// The client's id in the hub.
    pub id: u64,
    /// Frames to send, in order.
    pub frames: mpsc::Receiver<Outgoing>,
    /// Set when the hub closed the client (slow, shutting down).
    pub closed: Arc<OnceLock<String>>,
    /// Missed frames to send first (SSE resume).
    pub replay: Vec<Outgoing>,
    /// The resume point was not in the history: the client must refetch its state.
    pub reset: bool,
}

impl PushHub {
    /// An empty hub with a fresh boot id.
    pub fn new() -> Arc<PushHub> {
        Arc::new(PushHub { boot_id: Uuid::now_v7(), inner: Mutex::default() })
    }

    /// This process's boot id (its push queue's name and its SSE ids carry it).
    pub fn boot_id(&self) -> Uuid {
        self.boot_id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a member's client watching `activities`; with `resume` (a previous SSE
    /// id) the frames it missed are replayed, or `reset` is set.
    pub fn register(&self, member: Uuid, activities: HashSet<Uuid>, resume: Option<&str>) -> Registration {
        let (tx, frames) = mpsc::channel(CLIENT_BUFFER);
        let closed = Arc::new(OnceLock::new());
        let mut inner = self.lock();
        let client = Client { member, activities, tx: Some(tx), closed: closed.clone() };
        let (mut replay, mut reset) = (Vec::new(), false);
        if let Some(resume) = resume {
            let after = resume
                .split_once(':')
                .filter(|(boot, _)| *boot == self.boot_id.to_string())
                .and_then(|(_, seq)| seq.parse::<u64>().ok());
            let oldest = inner.history.front().map_or(inner.seq + 1, |(s, _)| *s);
            match after {
                Some(after) if after + 1 >= oldest && after <= inner.seq => {
                    replay = inner
                        .history
                        .iter()
                        .filter(|(s, u)| *s > after && client.wants(u))
                        .map(|(s, u)| Outgoing { id: self.event_id(*s), update: u.clone() })
                        .collect();
                }
                _ => reset = true,
            }
        }
        inner.next += 1;
        let id = inner.next;
        inner.clients.insert(id, client);
        Registration { id, frames, closed, replay, reset }
    }

    fn event_id(&self, seq: u64) -> String {
        format!("{}:{seq}", self.boot_id)
    }

    /// Adds an activity to a client's watch list.
    pub fn watch(&self, client: u64, activity: Uuid) {
        if let Some(c) = self.lock().clients.get_mut(&client) {
            c.activities.insert(activity);
        }
    }

    /// Removes a client.
    pub fn unregister(&self, client: u64) {
        self.lock().clients.remove(&client);
    }

    /// How many distinct updates this process has dispatched.
    pub fn dispatched(&self) -> u64 {
        self.lock().seq
    }

    /// How many forgotten members' updates this process has blanked.
    pub fn forgets(&self) -> u64 {
        self.lock().forgets
    }

    /// How many clients are connected.
    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    /// Hands an update to every client it concerns (once per update id).
    pub fn dispatch(&self, update: Arc<Update>) {
        let mut inner = self.lock();
        if !inner.seen.insert(update.id) {
            return; // a redelivery
        }
        if update.kind == gather_projections::bus::MEMBER_FORGOTTEN
            && let Some(member) = update.recipients.first()
        {
            inner.forget(*member);
        }
        inner.seen_order.push_back(update.id);
        if inner.seen_order.len() > HISTORY * 2
            && let Some(old) = inner.seen_order.pop_front()
        {
            inner.seen.remove(&old);
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.history.push_back((seq, update.clone()));
        if inner.history.len() > HISTORY {
            inner.history.pop_front();
        }
        let id = self.event_id(seq);
        let mut slow = Vec::new();
        for (cid, client) in inner.clients.iter_mut() {
            if !client.wants(&update) {
                continue;
            }
            let Some(tx) = &client.tx else { continue };
            if let Err(mpsc::error::TrySendError::Full(_)) =
                tx.try_send(Outgoing { id: id.clone(), update: update.clone() })
            {
                let _ = client.closed.set(format!("too slow: more than {CLIENT_BUFFER} frames waiting"));
                slow.push(*cid);
            }
        }
        for cid in slow {
            tracing::info!(client = cid, "a push client that stopped reading is disconnected");
            inner.clients.remove(&cid); // drops its sender: the client ends after its buffer
        }
    }

    /// Closes every client with `reason` (shutdown).
    pub fn close_all(&self, reason: &str) {
        let mut inner = self.lock();
        for (_, client) in inner.clients.drain() {
            let _ = client.closed.set(reason.to_owned());
        }
    }

    /// Feeds the hub from the in-process bus until shutdown.
    pub async fn run_local(self: Arc<Self>, bus: LocalBus, mut shutdown: watch::Receiver<bool>) {
        let mut rx = bus.subscribe();
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(u) => self.dispatch(u),
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "push lagged behind the bus"),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        self.close_all("the server is shutting down");
    }

    /// Feeds the hub from this process's RabbitMQ push queue until shutdown,
    /// reconnecting with backoff.
    pub async fn run_amqp(self: Arc<Self>, broker: Broker, mut shutdown: watch::Receiver<bool>) {
        let mut attempt = 0u32;
        loop {
            let result = tokio::select! {
                r = self.consume(&broker, &mut attempt) => r,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            broker.set_connected(false);
            if let Err(e) = result {
                tracing::warn!(error = %e, attempt, "push consumer lost rabbitmq; reconnecting");
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff(attempt)) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            attempt += 1;
        }
        self.close_all("the server is shutting down");
    }

    async fn consume(&self, broker: &Broker, attempt: &mut u32) -> Result<(), gather_projections::bus::BusError> {
        use futures::StreamExt;
        let connection = broker.connect(Duration::from_secs(10)).await?;
        let channel = connection.create_channel().await?;
        let queue = declare_push_queue(&channel, self.boot_id).await?;
        channel.basic_qos(256, lapin::options::BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await?;
        broker.set_connected(true);
        *attempt = 0;
        tracing::info!(queue, "push consumer ready");
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            match serde_json::from_slice::<Update>(&delivery.data) {
                Ok(u) => self.dispatch(Arc::new(u)),
                Err(e) => tracing::warn!(error = %e, "an unreadable push message is dropped"),
            }
            // Acked once handed to the clients: one in flight when the connection drops
            // is delivered again (and dropped as a duplicate if it was dispatched).
            delivery.acker.ack(lapin::options::BasicAckOptions::default()).await?;
        }
        Err(gather_projections::bus::BusError::NotConfirmed("the push consumer stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(kind: &str, topic: String, recipients: Vec<Uuid>) -> Arc<Update> {
        Arc::new(Update {
            id: Uuid::now_v7(),
            topic,
            kind: kind.into(),
            position: 1,
            correlation_id: Uuid::nil(),
            recipients,
            email: None,
            data: json!({}),
        })
    }

    #[test]
    fn a_client_gets_its_own_updates_and_the_public_updates_of_watched_activities_only() {
        let hub = PushHub::new();
        let (me, other, activity) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut reg = hub.register(me, HashSet::from([activity]), None);
        hub.dispatch(update("booking.confirmed", format!("member:{me}"), vec![me]));
        hub.dispatch(update("booking.confirmed", format!("member:{other}"), vec![other]));
        hub.dispatch(update("activity.seats_left", format!("activity:{activity}"), vec![]));
        hub.dispatch(update("invitation.sent", format!("activity:{activity}"), vec![]));
        hub.dispatch(update("activity.seats_left", format!("activity:{}", Uuid::now_v7()), vec![]));
        let kinds: Vec<String> =
            std::iter::from_fn(|| reg.frames.try_recv().ok()).map(|o| o.update.kind.clone()).collect();
        assert_eq!(kinds, ["booking.confirmed", "activity.seats_left"]);
    }

    #[test]
    fn a_resume_replays_what_was_missed_and_an_unknown_point_resets() {
        let hub = PushHub::new();
        let me = Uuid::now_v7();
        let mut first = hub.register(me, HashSet::new(), None);
        hub.dispatch(update("booking.confirmed", format!("member:{me}"), vec![me]));
        let seen = first.frames.try_recv().unwrap().id;
        hub.unregister(first.id);
        hub.dispatch(update("booking.cancelled", format!("member:{me}"), vec![me]));
        let again = hub.register(me, HashSet::new(), Some(&seen));
        assert!(!again.reset);
        assert_eq!(again.replay.iter().map(|o| o.update.kind.as_str()).collect::<Vec<_>>(), ["booking.cancelled"]);
        assert!(hub.register(me, HashSet::new(), Some("other-boot:1")).reset);
        assert!(hub.register(me, HashSet::new(), Some(&format!("{}:99", hub.boot_id()))).reset);
    }

    #[test]
    fn a_client_that_stops_reading_is_closed_with_a_reason_and_the_others_keep_receiving() {
        let hub = PushHub::new();
        let me = Uuid::now_v7();
        let slow = hub.register(me, HashSet::new(), None);
        let mut fast = hub.register(me, HashSet::new(), None);
        for _ in 0..CLIENT_BUFFER + 5 {
            hub.dispatch(update("booking.confirmed", format!("member:{me}"), vec![me]));
            while fast.frames.try_recv().is_ok() {}
        }
        assert!(slow.closed.get().is_some_and(|r| r.contains("too slow")));
        assert_eq!(hub.clients(), 1);
        hub.dispatch(update("booking.confirmed", format!("member:{me}"), vec![me]));
        assert!(fast.frames.try_recv().is_ok());
    }

    #[test]
    fn a_redelivered_update_is_pushed_once() {
        let hub = PushHub::new();
        let me = Uuid::now_v7();
        let mut reg = hub.register(me, HashSet::new(), None);
        let u = update("booking.confirmed", format!("member:{me}"), vec![me]);
        hub.dispatch(u.clone());
        hub.dispatch(u);
        assert!(reg.frames.try_recv().is_ok());
        assert!(reg.frames.try_recv().is_err());
    }
}
