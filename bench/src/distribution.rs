//! Distribution (issue 10), against its floors, on Postgres and RabbitMQ (the bench's
//! own vhost, `gather-bench`, emptied of queues first).
//!
//! - `push`: a real Gather (every role, `GATHER_AMQP_URL` set) on a fresh database;
//!   one WebSocket per member (`GET /v1/stream`), registered before timing; bookings
//!   (`POST /v1/activities/{id}/bookings`) sent on a fixed schedule; the time from just
//!   before each POST to its member's `booking.confirmed` frame. The floor, in the same
//!   run: a bare `pg_notify` → `PgListener` round trip plus a bare lapin publish →
//!   consumer round trip on the same vhost (the two hops of the path that are not
//!   Gather's work: the projector wake-up and the broker). Where the time goes: each
//!   booking is also stamped when the in-process `updates` projector commits its outbox
//!   rows (its progress) and when the relay's message reaches a tap queue of the
//!   bench's own bound to `booking.confirmed`.
//! - `relay`: outbox rows inserted with SQL before the relay starts, then the time the
//!   relay takes to publish (persistent, mandatory, confirmed) and delete them all.
//!   The baseline: a bare lapin publisher with confirms, in batches of the relay's size.

use crate::app::Running;
use crate::percentile;
use crate::ryw::member;
use anyhow::Context as _;
use futures::{SinkExt, StreamExt, TryStreamExt};
use gather_api::state::AppState;
use gather_commands::Db;
use gather_domain::Role;
use gather_projections::bus::{Broker, EXCHANGE, NOTIFY_QUEUE, Update, declare_push_queue, declare_topology};
use gather_projections::relay::{BATCH, Relay, Sink};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Value, json};
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// The bench's RabbitMQ vhost.
const VHOST: &str = "gather-bench";
/// WebSocket clients (members) in `push`.
const MEMBERS: usize = 400;
/// Members that warm the path up before timing (not measured).
const WARM: usize = 10;
/// Samples of each floor.
const FLOOR_SAMPLES: usize = 1000;
/// Samples of the confirm reference.
const CONFIRM_SAMPLES: usize = 300;
/// Outbox rows the relay publishes in `relay`.
const RELAY_MESSAGES: usize = 50_000;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The bench vhost's URL (`GATHER_BENCH_AMQP` overrides the server).
fn amqp_url() -> String {
    let base = std::env::var("GATHER_BENCH_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".into());
    format!("{}/{VHOST}", base.trim_end_matches('/'))
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("rabbitmqctl").args(args).output().context("run rabbitmqctl")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success() || text.contains("already exists"), "rabbitmqctl {args:?}: {text}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn connect(url: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(url, ConnectionProperties::default()).await
}

/// Creates the bench vhost if missing, deletes every queue in it (stale messages and
/// earlier runs' push queues bound to `#`), and declares the topology; returns its URL.
async fn reset_vhost() -> anyhow::Result<String> {
    let url = amqp_url();
    let connection = match connect(&url).await {
        Ok(c) => c,
        Err(_) => {
            rabbitmqctl(&["add_vhost", VHOST])?;
            rabbitmqctl(&["set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"])?;
            connect(&url).await.context("connect to RabbitMQ (127.0.0.1:5672, guest) in the bench vhost")?
        }
    };
    let listed = rabbitmqctl(&["list_queues", "-q", "--no-table-headers", "-p", VHOST, "name"])?;
    let channel = connection.create_channel().await?;
    for queue in listed.lines().map(str::trim).filter(|q| !q.is_empty()) {
        channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
    }
    declare_topology(&channel).await?;
    let _ = connection.close(200, "reset".into()).await;
    Ok(url)
}

async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
    let mut req = http.post(url).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

/// A public activity with room for every booking, created, submitted and approved.
async fn published(app: &Running, organiser: &str, moderator: &str) -> anyhow::Result<Uuid> {
    let start = chrono::Utc::now() + chrono::Duration::days(30);
    let body = json!({
        "title": "Distribution meetup", "description": "Benchmark", "category": "meetup", "tags": ["bench"],
        "starts_at": start, "ends_at": start + chrono::Duration::hours(2), "capacity": 10_000,
        "price": {"amount": 0, "currency": "EUR"}, "visibility": "public",
        "location": {"kind": "venue", "name": "Hall", "address": "1 Main St", "lat": 52.37, "lng": 4.89},
        "waitlist": false
    });
    let created = post(&app.http, app.url("/v1/activities"), Some(organiser), body).await?;
    let id: Uuid = created["id"].as_str().unwrap_or_default().parse()?;
    post(&app.http, app.url(&format!("/v1/activities/{id}/submit")), Some(organiser), json!({})).await?;
    post(&app.http, app.url(&format!("/v1/activities/{id}/approve")), Some(moderator), json!({})).await?;
    Ok(id)
}

async fn next_json(socket: &mut Ws) -> anyhow::Result<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .context("no WebSocket frame within 20 s")?
            .context("the WebSocket closed")??;
        if let Message::Text(t) = m {
            return Ok(serde_json::from_str(&t)?);
        }
    }
}

/// A WebSocket client, registered with the server before it returns: any request is
/// answered (with an error) only once the server has registered the client.
async fn socket(app: &Running, token: &str) -> anyhow::Result<Ws> {
    let url = format!("ws://{}/v1/stream?access_token={token}", app.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    socket.send(Message::Text("{}".into())).await?;
    while !next_json(&mut socket).await?["error"].is_string() {}
    Ok(socket)
}

/// The `updates` projector's commits: (when, up to which position), in order.
type Commits = Arc<Mutex<Vec<(Instant, i64)>>>;

/// When each (member, activity) `booking.confirmed` frame arrived.
type Arrivals = Arc<Mutex<HashMap<(usize, Uuid), Instant>>>;

/// Reads a member's socket until it closes, stamping its `booking.confirmed` frames.
async fn read_frames(mut socket: Ws, member: usize, arrivals: Arrivals) {
    while let Some(Ok(m)) = socket.next().await {
        let at = Instant::now();
        let Message::Text(t) = m else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
        if v["type"] != "booking.confirmed" {
            continue;
        }
        if let Some(activity) = v["data"]["activity_id"].as_str().and_then(|a| a.parse::<Uuid>().ok()) {
            arrivals.lock().expect("arrivals").entry((member, activity)).or_insert(at);
        }
    }
}

/// One booking sent.
struct Sent {
    member: usize,
    activity: Uuid,
    /// Just before the POST.
    at: Instant,
    /// POST → 201.
    answered: Duration,
    /// The position of its events.
    position: i64,
}

async fn book(app: Arc<Running>, token: Arc<String>, member: usize, activity: Uuid) -> anyhow::Result<Sent> {
    let at = Instant::now();
    let res = app
        .http
        .post(app.url(&format!("/v1/activities/{activity}/bookings")))
        .bearer_auth(&*token)
        .json(&json!({"seats": 1}))
        .send()
        .await?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let answered = at.elapsed();
    anyhow::ensure!(status.as_u16() == 201 && body["status"] == "confirmed", "booking answered {status}: {body}");
    let position = body["position"].as_i64().context("no position in the booking's answer")?;
    Ok(Sent { member, activity, at, answered, position })
}

/// Stamps each commit of the in-process `updates` projector (its batch transaction,
/// which writes the outbox rows): (when its progress moved, to which position).
fn tap_updates_projector(state: &AppState) -> anyhow::Result<Commits> {
    let names: Vec<&str> = state.projectors.progress().keys().copied().collect();
    let i = names.iter().position(|n| *n == "updates").context("no `updates` projector in this process")?;
    let mut rx = state.projectors.watchers().swap_remove(i);
    let commits: Commits = Arc::default();
    let out = commits.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let position = rx.borrow_and_update().checkpoint.position;
            out.lock().expect("commits").push((Instant::now(), position));
        }
    });
    Ok(commits)
}

/// Stamps every `booking.confirmed` the relay publishes, from a queue of the bench's own
/// (exclusive, no ack) bound to that key: (member, activity) → delivered at.
async fn tap_broker(amqp: &str, members: HashMap<Uuid, usize>) -> anyhow::Result<(Connection, Arrivals)> {
    let connection = connect(amqp).await?;
    let channel = connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            EXCHANGE.into(),
            "booking.confirmed".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    let seen: Arrivals = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let at = Instant::now();
            let Ok(u) = serde_json::from_slice::<Update>(&delivery.data) else { continue };
            let activity = u.data["activity_id"].as_str().and_then(|a| a.parse::<Uuid>().ok());
            if let (Some(m), Some(a)) = (u.recipients.first().and_then(|r| members.get(r)), activity) {
                out.lock().expect("tap").entry((*m, a)).or_insert(at);
            }
        }
    });
    Ok((connection, seen))
}

/// Waits until every key has arrived or `limit` passes; returns how many are missing.
async fn await_arrivals(arrivals: &Arrivals, keys: &[(usize, Uuid)], limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let missing = {
            let map = arrivals.lock().expect("arrivals");
            keys.iter().filter(|k| !map.contains_key(k)).count()
        };
        if missing == 0 || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn cell(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// A `booking.confirmed` update as the outbox writes it (the size of a real message).
fn booking_update(member: Uuid, activity: Uuid, position: i64) -> Update {
    let start = chrono::Utc::now() + chrono::Duration::days(30);
    Update {
        id: Uuid::now_v7(),
        topic: format!("member:{member}"),
        kind: "booking.confirmed".into(),
        position,
        correlation_id: Uuid::now_v7(),
        recipients: vec![member],
        email: None,
        data: json!({
            "activity_id": activity, "title": "Distribution meetup", "starts_at": start,
            "ends_at": start + chrono::Duration::hours(2), "booking_id": Uuid::now_v7(), "seats": 1
        }),
    }
}

/// `activity.seats_left`, the most frequent update.
fn seats_update(activity: Uuid, position: i64, seats_left: i64) -> Update {
    let start = chrono::Utc::now() + chrono::Duration::days(30);
    Update {
        id: Uuid::now_v7(),
        topic: format!("activity:{activity}"),
        kind: "activity.seats_left".into(),
        position,
        correlation_id: Uuid::now_v7(),
        recipients: Vec::new(),
        email: None,
        data: json!({
            "activity_id": activity, "title": "Evening pottery for beginners", "starts_at": start,
            "ends_at": start + chrono::Duration::hours(2), "seats_left": seats_left
        }),
    }
}

fn persistent(id: Uuid) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(id.to_string().into())
        .with_content_type("application/json".into())
}

/// Floor (a): a committed `pg_notify` received by a `PgListener`, one at a time at `rate`.
async fn notify_floor(url: &str, rate: f64) -> anyhow::Result<Vec<Duration>> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let mut listener = PgListener::connect(url).await?;
    listener.listen("gather_bench_floor").await?;
    let mut samples = Vec::with_capacity(FLOOR_SAMPLES);
    let start = Instant::now();
    for k in 0..FLOOR_SAMPLES + 10 {
        tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / rate)).into()).await;
        let t = Instant::now();
        sqlx::query("SELECT pg_notify('gather_bench_floor', $1)").bind(k.to_string()).execute(&pool).await?;
        let note = listener.recv().await?;
        anyhow::ensure!(note.payload() == k.to_string(), "unexpected notification {}", note.payload());
        if k >= 10 {
            samples.push(t.elapsed());
        }
    }
    pool.close().await;
    Ok(samples)
}

/// Floor (b): a persistent, mandatory publish on a confirming channel (as the relay's)
/// → delivered to a consumer on an exclusive queue (manual ack, as the push consumer's);
/// timed to the delivery, the confirm awaited after it (untimed). One at a time at `rate`.
async fn broker_floor(amqp: &str, rate: f64) -> anyhow::Result<Vec<Duration>> {
    let (publisher, subscriber) = (connect(amqp).await?, connect(amqp).await?);
    let out = publisher.create_channel().await?;
    out.confirm_select(ConfirmSelectOptions::default()).await?;
    let inbox = subscriber.create_channel().await?;
    let queue = inbox
        .queue_declare(
            "".into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;
    let key = format!("bench.floor.{}", Uuid::now_v7().simple());
    inbox
        .queue_bind(
            queue.name().clone(),
            EXCHANGE.into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    inbox.basic_qos(256, BasicQosOptions::default()).await?;
    let mut consumer = inbox
        .basic_consume(queue.name().clone(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let mut samples = Vec::with_capacity(FLOOR_SAMPLES);
    let start = Instant::now();
    for k in 0..FLOOR_SAMPLES + 10 {
        tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / rate)).into()).await;
        let update = booking_update(Uuid::now_v7(), Uuid::now_v7(), k as i64);
        let body = serde_json::to_vec(&update)?;
        let t = Instant::now();
        let confirm = out
            .basic_publish(
                EXCHANGE.into(),
                key.as_str().into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &body,
                persistent(update.id),
            )
            .await?;
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .context("no delivery within 10 s")?
            .context("the consumer stopped")??;
        let took = t.elapsed();
        anyhow::ensure!(delivery.data == body, "an unexpected delivery");
        delivery.acker.ack(BasicAckOptions::default()).await?;
        let confirmed = confirm.await?;
        anyhow::ensure!(confirmed.is_ack() && confirmed.take_message().is_none(), "the floor message was not taken");
        if k >= 10 {
            samples.push(took);
        }
    }
    let _ = publisher.close(200, "done".into()).await;
    let _ = subscriber.close(200, "done".into()).await;
    Ok(samples)
}

/// For reference (not in the floor): publish → confirm of a persistent message routed
/// as `booking.confirmed` is in production, to the quorum notification queue and a
/// durable push queue: what the relay waits for on each batch. One at a time at `rate`.
async fn confirm_reference(amqp: &str, rate: f64) -> anyhow::Result<Vec<Duration>> {
    let connection = connect(amqp).await?;
    let channel = connection.create_channel().await?;
    declare_topology(&channel).await?;
    let push_queue = declare_push_queue(&channel, Uuid::now_v7()).await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut samples = Vec::with_capacity(CONFIRM_SAMPLES);
    let start = Instant::now();
    for k in 0..CONFIRM_SAMPLES + 10 {
        tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / rate)).into()).await;
        let update = booking_update(Uuid::now_v7(), Uuid::now_v7(), k as i64);
        let body = serde_json::to_vec(&update)?;
        let t = Instant::now();
        let confirmed = channel
            .basic_publish(
                EXCHANGE.into(),
                "booking.confirmed".into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &body,
                persistent(update.id),
            )
            .await?
            .await?;
        anyhow::ensure!(confirmed.is_ack() && confirmed.take_message().is_none(), "a reference message was not taken");
        if k >= 10 {
            samples.push(t.elapsed());
        }
    }
    channel.queue_delete(push_queue.as_str().into(), QueueDeleteOptions::default()).await?;
    channel.queue_purge(NOTIFY_QUEUE.into(), QueuePurgeOptions::default()).await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(samples)
}

/// `push`: POST booking → WebSocket frame, against NOTIFY + broker round trips.
pub(crate) async fn push(url: &str, secs: f64, rate: f64) -> anyhow::Result<()> {
    let amqp = reset_vhost().await?;
    let app = Arc::new(crate::app::start_with(Some(url), &[], true, Some(&amqp)).await?);
    let state = app.state.clone();
    let (_, organiser) = member(&state, &[Role::Member, Role::Organiser]).await?;
    let moderator = post(
        &app.http,
        app.url("/v1/auth/login"),
        None,
        json!({"email": crate::app::MODERATOR.0, "password": crate::app::MODERATOR.1}),
    )
    .await?["token"]
        .as_str()
        .map(str::to_owned)
        .context("no moderator token")?;
    let n = ((secs * rate).round() as usize).max(20);
    // Booking k: member k % MEMBERS, round k / MEMBERS, on activity (member + round) %
    // A: consecutive bookings go to different activities (no single hot stream) and no
    // member books an activity twice.
    let rounds = n.div_ceil(MEMBERS);
    let activities = {
        let mut v = Vec::new();
        for _ in 0..rounds.max(8) {
            v.push(published(&app, &organiser, &moderator).await?);
        }
        v
    };
    let members: Vec<(Uuid, Arc<String>)> = futures::stream::iter(0..MEMBERS + WARM)
        .map(|_| {
            let state = state.clone();
            async move { member(&state, &[Role::Member]).await.map(|(id, t)| (id, Arc::new(t))) }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let arrivals: Arrivals = Arc::default();
    let mut readers = Vec::new();
    for (m, (_, token)) in members.iter().enumerate() {
        let ws = socket(&app, token).await?;
        readers.push(tokio::spawn(read_frames(ws, m, arrivals.clone())));
    }
    anyhow::ensure!(state.push.clients() >= MEMBERS + WARM, "only {} clients registered", state.push.clients());
    let commits = tap_updates_projector(&state)?;
    let by_id = members.iter().enumerate().map(|(m, (id, _))| (*id, m)).collect();
    let (tap_connection, tapped) = tap_broker(&amqp, by_id).await?;

    // Warm up the path (HTTP connections, projectors, relay, push consumer), one at a time.
    for w in 0..WARM {
        let m = MEMBERS + w;
        book(app.clone(), members[m].1.clone(), m, activities[0]).await?;
        let missing = await_arrivals(&arrivals, &[(m, activities[0])], Duration::from_secs(20)).await;
        anyhow::ensure!(missing == 0, "a warm-up booking's frame never arrived");
    }
    // Let the backlog (registrations, approvals, their emails) drain before timing.
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    for _ in 0..500 {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for k in 0..n {
        tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / rate)).into()).await;
        let (m, round) = (k % MEMBERS, k / MEMBERS);
        let activity = activities[(m + round) % activities.len()];
        tasks.push(tokio::spawn(book(app.clone(), members[m].1.clone(), m, activity)));
    }
    let mut sent = Vec::with_capacity(n);
    for t in tasks {
        sent.push(t.await??);
    }
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    let keys: Vec<(usize, Uuid)> = sent.iter().map(|s| (s.member, s.activity)).collect();
    let missing = await_arrivals(&arrivals, &keys, Duration::from_secs(30)).await;
    // Per booking: sent, answered, outbox rows committed, at the broker, framed.
    let mut stages: [Vec<Duration>; 4] = Default::default();
    let mut segments: [Vec<Duration>; 4] = Default::default();
    {
        let (framed, tapped, commits) =
            (arrivals.lock().expect("arrivals"), tapped.lock().expect("tap"), commits.lock().expect("commits"));
        for s in &sent {
            let key = (s.member, s.activity);
            let i = commits.partition_point(|(_, p)| *p < s.position);
            let (Some(frame), Some(broker), Some((committed, _))) =
                (framed.get(&key), tapped.get(&key), commits.get(i))
            else {
                continue;
            };
            let answered = s.at + s.answered;
            let since = |t: &Instant| t.saturating_duration_since(s.at);
            for (v, d) in stages.iter_mut().zip([s.answered, since(committed), since(broker), since(frame)]) {
                v.push(d);
            }
            let seg = [
                s.answered,
                committed.saturating_duration_since(answered),
                broker.saturating_duration_since(*committed),
                frame.saturating_duration_since(*broker),
            ];
            for (v, d) in segments.iter_mut().zip(seg) {
                v.push(d);
            }
        }
    }
    let outbox_left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await?;
    pool.close().await;
    let _ = tap_connection.close(200, "done".into()).await;
    let clients = state.push.clients();
    drop(state);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&app.data_dir);
    for r in readers {
        r.abort();
    }
    anyhow::ensure!(missing == 0, "{missing} of {n} booking.confirmed frames never arrived ({clients} clients)");
    anyhow::ensure!(stages[3].len() == n, "only {} of {n} bookings were seen at every stage", stages[3].len());

    // The floors, with the app stopped and its push queue gone.
    let amqp = reset_vhost().await?;
    let notify = notify_floor(url, rate).await?;
    let broker = broker_floor(&amqp, rate).await?;
    let (c50, c99) = cell(confirm_reference(&amqp, rate).await?);

    let [answered, committed, at_broker, framed] = stages.map(cell);
    let (p50, p99) = framed;
    let (n50, n99) = cell(notify);
    let (b50, b99) = cell(broker);
    let (f50, f99) = (n50 + b50, n99 + b99);
    println!(
        "\n## Push: POST booking → WebSocket `booking.confirmed` frame (Postgres + RabbitMQ, every role), \
         {n} bookings at {achieved:.0}/s, {MEMBERS} sockets\n"
    );
    println!("| | p50 ms | p99 ms | p50 / floor p50 | p99 / floor p99 |\n|---|---:|---:|---:|---:|");
    println!("| **POST → frame received** | {p50:.2} | {p99:.2} | {:.1}× | {:.1}× |", p50 / f50, p99 / f99);
    println!("| floor (a): `pg_notify` committed → `PgListener` | {n50:.2} | {n99:.2} | | |");
    println!("| floor (b): lapin publish (persistent, mandatory, confirms on) → consumer | {b50:.2} | {b99:.2} | | |");
    println!("| floor (a) + (b) | {f50:.2} | {f99:.2} | 1.0× | 1.0× |");
    println!(
        "| for reference (not in the floor): publish → confirm, routed as `booking.confirmed` \
         (quorum `gather.notifications` + a durable push queue) | {c50:.2} | {c99:.2} | | |"
    );
    println!("\n| where a booking is, since just before its POST | p50 ms | p99 ms |\n|---|---:|---:|");
    let rows = [
        ("201 received", answered),
        ("`updates` projector committed its outbox rows", committed),
        ("relayed: delivered to a tap queue on `gather.updates`", at_broker),
        ("WebSocket frame received", framed),
    ];
    for (what, (a, b)) in rows {
        println!("| {what} | {a:.2} | {b:.2} |");
    }
    println!("\n| segment (per booking) | p50 ms | p99 ms |\n|---|---:|---:|");
    let names = [
        "POST → 201 (the command)",
        "201 → outbox rows committed (projector wake-up and batch)",
        "committed → at the broker (relay wake-up, read, publish)",
        "at the broker → frame (push queue, consumer, hub, WebSocket)",
    ];
    for (what, v) in names.into_iter().zip(segments) {
        let (a, b) = cell(v);
        println!("| {what} | {a:.2} | {b:.2} |");
    }
    println!(
        "\n(outbox rows left when the last frame arrived: {outbox_left}; floors: {FLOOR_SAMPLES} samples each, \
         the confirm reference {CONFIRM_SAMPLES}, one at a time at {rate:.0}/s)"
    );
    Ok(())
}

/// A durable classic queue bound to everything on `gather.updates` (what a push queue
/// is, without its length bound): every message is routable and stored.
async fn sink_queue(channel: &Channel) -> anyhow::Result<String> {
    let name = "gather-bench.sink".to_owned();
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
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

async fn queued(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let q = channel
        .queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
        .await?;
    Ok(q.message_count())
}

/// `relay`: outbox → RabbitMQ throughput, against a bare confirming publisher.
pub(crate) async fn relay(url: &str) -> anyhow::Result<()> {
    let m = RELAY_MESSAGES;
    let amqp = reset_vhost().await?;
    let db = Db::connect(url).await?;
    db.migrate().await?;
    let Db::Postgres(pool) = db.clone() else { anyhow::bail!("expected Postgres") };

    // 1,000 activities' seats counting down; each activity's updates share its partition.
    let activities: Vec<Uuid> = (0..1000).map(|_| Uuid::now_v7()).collect();
    let rows: Vec<(Uuid, i32, String)> = (0..m)
        .map(|i| {
            let activity = activities[i % activities.len()];
            let update = seats_update(activity, i as i64 + 1, 10_000 - (i / activities.len()) as i64);
            let partition = gather_projections::outbox::partition_of(&format!("activity-{activity}"));
            (update.id, partition, serde_json::to_string(&update).expect("an update serializes"))
        })
        .collect();
    let body_bytes = rows.iter().map(|r| r.2.len()).sum::<usize>() / m;
    for chunk in rows.chunks(5000) {
        let ids: Vec<Uuid> = chunk.iter().map(|r| r.0).collect();
        let partitions: Vec<i32> = chunk.iter().map(|r| r.1).collect();
        let messages: Vec<String> = chunk.iter().map(|r| r.2.clone()).collect();
        sqlx::query(
            "INSERT INTO outbox (id, partition, exchange, routing_key, message, created_at) \
             SELECT id, p, 'gather.updates', 'activity.seats_left', msg, now() \
             FROM unnest($1::uuid[], $2::int[], $3::text[]) AS t(id, p, msg)",
        )
        .bind(&ids)
        .bind(&partitions)
        .bind(&messages)
        .execute(&pool)
        .await?;
    }
    sqlx::query("ANALYZE outbox").execute(&pool).await?;

    let control = connect(&amqp).await?;
    let channel = control.create_channel().await?;
    let queue = sink_queue(&channel).await?;

    // The relay, from start-up (broker connection, topology, partition locks) to empty.
    let broker = Broker::start(&amqp, Duration::from_secs(10)).await?;
    let relay = Relay::new(db.clone(), Sink::Broker(broker));
    let stats = relay.stats();
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let running = tokio::spawn(relay.run(shutdown_rx));
    // The relay counts a row once it is confirmed and deleted: watching the counter
    // (every 5 ms) costs Postgres nothing; the outbox is checked empty after.
    let published = || stats.published.load(std::sync::atomic::Ordering::Relaxed);
    let mut first_batch = None;
    while published() < m as u64 {
        if first_batch.is_none() && published() > 0 {
            first_batch = Some(t.elapsed().as_secs_f64());
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "the relay published {} of {m} in 600 s", published());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relay_secs = t.elapsed().as_secs_f64();
    let first_batch = first_batch.unwrap_or(relay_secs);
    let _ = shutdown.send(true);
    let _ = running.await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await?;
    anyhow::ensure!(left == 0, "the relay left {left} outbox rows");
    anyhow::ensure!(published() == m as u64, "the relay published {} of {m}", published());
    let failures = stats.failures.load(std::sync::atomic::Ordering::Relaxed);
    let in_queue = queued(&channel, &queue).await?;
    anyhow::ensure!(in_queue as usize == m, "the sink queue holds {in_queue} of {m}");
    channel.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()).await?;

    // The baseline: the same messages, same exchange and key, persistent and mandatory,
    // BATCH at a time, every confirm awaited before the next batch.
    let publisher = connect(&amqp).await?;
    let out = publisher.create_channel().await?;
    out.confirm_select(ConfirmSelectOptions::default()).await?;
    let t = Instant::now();
    for chunk in rows.chunks(BATCH as usize) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for (id, _, message) in chunk {
            confirms.push(
                out.basic_publish(
                    EXCHANGE.into(),
                    "activity.seats_left".into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    message.as_bytes(),
                    persistent(*id),
                )
                .await?,
            );
        }
        for confirmed in futures::future::join_all(confirms).await {
            let confirmed = confirmed?;
            anyhow::ensure!(
                confirmed.is_ack() && confirmed.take_message().is_none(),
                "a baseline message was not taken"
            );
        }
    }
    let base_secs = t.elapsed().as_secs_f64();
    let _ = publisher.close(200, "done".into()).await;
    let in_queue = queued(&channel, &queue).await?;
    anyhow::ensure!(in_queue as usize == m, "the sink queue holds {in_queue} of {m} after the baseline");
    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await?;
    let _ = control.close(200, "done".into()).await;
    drop(db);
    pool.close().await;

    let (ours, base) = (m as f64 / relay_secs, m as f64 / base_secs);
    println!(
        "\n## Relay: {m} outbox rows → RabbitMQ (`activity.seats_left`, {body_bytes} B bodies, 8 partitions, \
         batches of {BATCH}, persistent + mandatory + confirms)\n"
    );
    println!(
        "| relay (read, publish, confirm, delete) | bare lapin publisher, same batches | ratio |\n|---:|---:|---:|"
    );
    println!(
        "| {ours:.0} msg/s ({relay_secs:.2} s, {failures} failed rounds) | {base:.0} msg/s ({base_secs:.2} s) | {:.2}× |",
        ours / base
    );
    println!(
        "\n(the relay's time includes its start-up: connection, topology, partition locks; its first batch was \
         confirmed and deleted {:.0} ms after it started)",
        first_batch * 1000.0
    );
    Ok(())
}
