//! Distribution (issue 10): projection updates → outbox → RabbitMQ (or the in-process
//! bus) → the notification worker (a real SMTP server here) and the push clients
//! (WebSocket and SSE), against the real RabbitMQ in a vhost of the test's own.

use crate::harness::*;
use futures::{SinkExt, StreamExt};
use gather_api::settings::ProcessRole;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client, registered with the server before it returns.
async fn ws(app: &TestApp, token: &str) -> Ws {
    let url = format!("ws://{}/v1/stream?access_token={token}", app.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket upgrade");
    // Any request is answered once the server has registered the client (updates
    // dispatched before the answer are older ones: skipped).
    frames_until_reply(&mut socket).await;
    socket
}

async fn next_json(socket: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// The next frame of type `kind` (others are skipped).
async fn ws_frame(socket: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(socket).await;
        if v["type"] == json!(kind) {
            return v;
        }
    }
}

/// An SSE client reading `event: …`/`id: …`/`data: …` blocks.
struct Sse {
    body: reqwest::Response,
    buf: String,
}

#[derive(Debug, Clone)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: Value,
}

async fn sse(app: &TestApp, token: &str, query: &str, last_event_id: Option<&str>) -> Sse {
    let mut req =
        app.http.get(app.url(&format!("/v1/stream?{query}"))).bearer_auth(token).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Sse { body: res, buf: String::new() }
}

impl Sse {
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a heartbeat comment
                }
                return SseEvent { id, event, data: serde_json::from_str(&data).unwrap() };
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.chunk())
                .await
                .expect("an SSE event within 20 s")
                .unwrap()
                .expect("the stream is open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn update(&mut self, kind: &str) -> SseEvent {
        loop {
            let e = self.next().await;
            if e.event == "update" && e.data["type"] == json!(kind) {
                return e;
            }
        }
    }
}

/// Where a test reads the emails of its app.
enum Mailbox {
    Smtp(TestSmtp),
    Files,
}

impl Mailbox {
    fn to(&self, app: &TestApp, address: &str) -> Vec<String> {
        match self {
            Mailbox::Smtp(s) => s.to(address),
            Mailbox::Files => mail_files_to(app, address),
        }
    }
}

async fn wait_for_mail(mailbox: &Mailbox, app: &TestApp, address: &str, subject: &str) -> String {
    let mut found = Vec::new();
    for _ in 0..800 {
        found = mailbox.to(app, address).into_iter().filter(|m| m.contains(&format!("Subject: {subject}"))).collect();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(found.len(), 1, "exactly one {subject:?} email to {address} in {:?}", mailbox.to(app, address));
    found.remove(0)
}

async fn token_of(app: &TestApp, email: &str) -> (String, String) {
    app.register(email).await
}

/// A booking and a moderation decision, each by email, WebSocket frame and SSE event.
async fn booking_and_moderation_reach_their_member(app: TestApp, mailbox: Mailbox) {
    let org_email = format!("org{}@example.com", uuid::Uuid::now_v7().simple());
    let org = app.organiser(&org_email).await;
    let mut org_ws = ws(&app, &org).await;
    let mut org_sse = sse(&app, &org, "", None).await;

    let id = published_activity(&app, &org, 5, false).await;
    let approved = ws_frame(&mut org_ws, "activity.approved").await;
    assert_eq!(approved["topic"].as_str().unwrap(), format!("member:{}", approved_member(&app, &org)));
    assert_eq!(approved["data"]["activity_id"], json!(id));
    assert!(approved["position"].as_i64().unwrap() > 0);
    assert!(approved.get("recipients").is_none(), "frames carry topic, type, position and data only");
    let e = org_sse.update("activity.approved").await;
    assert!(e.id.is_some());
    assert_eq!(e.data["data"]["title"], json!("Kids pottery"));
    let mail = wait_for_mail(&mailbox, &app, &org_email, "Approved: Kids pottery").await;
    assert!(mail.contains("2030-05-01 14:00 UTC"), "{mail}");

    let member_email = format!("m{}@example.com", uuid::Uuid::now_v7().simple());
    let (_, member) = token_of(&app, &member_email).await;
    let (_, other) = quick_member(&app).await;
    let mut member_ws = ws(&app, &member).await;
    let mut other_ws = ws(&app, &other).await;
    let mut member_sse = sse(&app, &member, &format!("subscribe=activity:{id}"), None).await;
    let a = app.post(&format!("/v1/activities/{id}/bookings"), Some(&member), json!({"seats": 2})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let frame = ws_frame(&mut member_ws, "booking.confirmed").await;
    assert_eq!(frame["data"]["seats"], json!(2));
    assert_eq!(frame["data"]["activity_id"], json!(id));
    let e = member_sse.update("booking.confirmed").await;
    assert_eq!(e.data["data"]["booking_id"], frame["data"]["booking_id"]);
    // The SSE client watches the activity: it sees the seats left too.
    let seats = member_sse.update("activity.seats_left").await;
    assert_eq!(seats.data["data"]["seats_left"], json!(3));
    let mail = wait_for_mail(&mailbox, &app, &member_email, "Booking confirmed: Kids pottery").await;
    assert!(mail.contains("Hello Ada,") && mail.contains("2 seat(s)"), "{mail}");
    assert!(mail.contains("text/html"), "plain text and HTML: {mail}");
    // Another member got none of it (only its own updates, if any).
    let theirs = frames_until_reply(&mut other_ws).await;
    assert!(theirs.iter().all(|f| f["type"] == json!("member.registered")), "{theirs:?}");
}

/// The frames before the reply to a request sent now (the reply proves every earlier
/// dispatch reached this client's buffer).
async fn frames_until_reply(socket: &mut Ws) -> Vec<Value> {
    socket.send(Message::Text("{}".into())).await.unwrap();
    let mut frames = Vec::new();
    loop {
        let v = next_json(socket).await;
        if v["error"].is_string() {
            return frames;
        }
        frames.push(v);
    }
}

fn approved_member(app: &TestApp, token: &str) -> String {
    app.app_state.jwt.verify(token).unwrap().id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_and_a_moderation_decision_reach_their_member_on_postgres_rabbitmq_and_smtp() {
    let smtp = TestSmtp::start();
    let app = spawn_mailing(&smtp).await;
    booking_and_moderation_reach_their_member(app, Mailbox::Smtp(smtp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_and_a_moderation_decision_reach_their_member_embedded() {
    let app = spawn_app(Profile::Sqlite).await;
    booking_and_moderation_reach_their_member(app, Mailbox::Files).await;
}

async fn a_chat_message_reaches_every_connected_member_of_the_chat_and_no_one_else(app: TestApp) {
    let (a, ta) = quick_member(&app).await;
    let (b, tb) = quick_member(&app).await;
    let (_, tc) = quick_member(&app).await;
    let chat = app.post("/v1/chats", Some(&ta), json!({"title": "Clay", "member_ids": [b]})).await;
    assert_eq!(chat.status, 201, "{:?}", chat.body);
    let chat_id = chat.body["id"].as_str().unwrap().to_string();
    let (mut wa, mut wb, mut wc) = (ws(&app, &ta).await, ws(&app, &tb).await, ws(&app, &tc).await);
    let a_msg = app.post(&format!("/v1/chats/{chat_id}/messages"), Some(&ta), json!({"text": "hello clay"})).await;
    assert_eq!(a_msg.status, 201, "{:?}", a_msg.body);
    for socket in [&mut wa, &mut wb] {
        let f = ws_frame(socket, "chat.message_posted").await;
        assert_eq!(f["topic"], json!(format!("chat:{chat_id}")));
        assert_eq!(f["data"]["text"], json!("hello clay"));
        assert_eq!(f["data"]["sender_id"], json!(a));
    }
    // c is no member of the chat.
    let theirs = frames_until_reply(&mut wc).await;
    assert!(theirs.iter().all(|f| f["type"] == json!("member.registered")), "{theirs:?}");
}

both_profiles!(a_chat_message_reaches_every_connected_member_of_the_chat_and_no_one_else);

/// Forgetting a member blanks their updates in every push history: a client resuming
/// from before their message does not get its text, only what came after.
async fn a_forgotten_members_messages_leave_the_push_history(app: TestApp) {
    let (_, ta) = quick_member(&app).await;
    let (b, tb) = quick_member(&app).await;
    let chat = app.post("/v1/chats", Some(&ta), json!({"title": "Kiln", "member_ids": [b]})).await;
    assert_eq!(chat.status, 201, "{:?}", chat.body);
    let chat_id = chat.body["id"].as_str().unwrap().to_string();
    let mut first = sse(&app, &tb, "", None).await;
    let post = |token: String, text: &'static str| {
        let (app, chat_id) = (&app, chat_id.clone());
        async move {
            let a = app.post(&format!("/v1/chats/{chat_id}/messages"), Some(&token), json!({"text": text})).await;
            assert_eq!(a.status, 201, "{:?}", a.body);
        }
    };
    post(tb.clone(), "before anything").await;
    let mark = first.update("chat.message_posted").await;
    assert_eq!(mark.data["data"]["text"], json!("before anything"));
    post(ta.clone(), "a secret only they wrote").await;
    let secret = first.update("chat.message_posted").await;
    assert_eq!(secret.data["data"]["text"], json!("a secret only they wrote"), "delivered live before the forget");
    drop(first);
    let gone = app.send(app.http.delete(app.url("/v1/me")).bearer_auth(&ta)).await;
    assert_eq!(gone.status, 202, "{:?}", gone.body);
    eventually("the forget reaches the push hub", || async { app.app_state.push.forgets() >= 1 }).await;
    post(tb.clone(), "after the forget").await;
    let mut again = sse(&app, &tb, "", mark.id.as_deref()).await;
    let next = again.update("chat.message_posted").await;
    assert_eq!(next.data["data"]["text"], json!("after the forget"), "the secret is not replayed: {next:?}");
}

both_profiles!(a_forgotten_members_messages_leave_the_push_history);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_each_deliver_the_updates_of_their_own_clients() {
    let first = spawn_app(Profile::Postgres).await;
    let second = spawn_with_roles(&first, &[ProcessRole::Api]).await;
    let org = first.organiser(&format!("o{}@example.com", uuid::Uuid::now_v7().simple())).await;
    let id = published_activity(&first, &org, 10, false).await;
    let (_, on_first) = quick_member(&first).await;
    let (_, on_second) = quick_member(&first).await;
    let mut w1 = ws(&first, &on_first).await;
    let mut w2 = ws(&second, &on_second).await;
    for token in [&on_first, &on_second] {
        let a = first.post(&format!("/v1/activities/{id}/bookings"), Some(token), json!({"seats": 1})).await;
        assert_eq!(a.status, 201, "{:?}", a.body);
    }
    let f1 = ws_frame(&mut w1, "booking.confirmed").await;
    let f2 = ws_frame(&mut w2, "booking.confirmed").await;
    assert_ne!(f1["data"]["booking_id"], f2["data"]["booking_id"], "each client got its own booking");
    assert_ne!(first.app_state.push.boot_id(), second.app_state.push.boot_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_that_resumes_with_last_event_id_gets_exactly_what_it_missed() {
    let app = spawn_app(Profile::Postgres).await;
    let org = app.organiser(&format!("o{}@example.com", uuid::Uuid::now_v7().simple())).await;
    let id = published_activity(&app, &org, 10, false).await;
    let (_, member) = quick_member(&app).await;
    let mut first = sse(&app, &member, "", None).await;
    let a = app.post(&format!("/v1/activities/{id}/bookings"), Some(&member), json!({"seats": 1})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let seen = first.update("booking.confirmed").await;
    let booking = seen.data["data"]["booking_id"].as_str().unwrap().to_owned();
    drop(first);
    // Missed while away: the cancellation and a second booking.
    let c = app
        .send(app.http.delete(app.url(&format!("/v1/activities/{id}/bookings/{booking}"))).bearer_auth(&member))
        .await;
    assert_eq!(c.status, 202, "{:?}", c.body);
    let a = app.post(&format!("/v1/activities/{id}/bookings"), Some(&member), json!({"seats": 3})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    eventually("the missed updates reach this process", || async {
        app.app_state.push.dispatched() >= seen_seq(&seen) + 2
    })
    .await;
    let mut again = sse(&app, &member, "", seen.id.as_deref()).await;
    let missed_1 = again.next().await;
    let missed_2 = again.next().await;
    assert_eq!(missed_1.data["type"], json!("booking.cancelled"), "{missed_1:?}");
    assert_eq!(missed_2.data["type"], json!("booking.confirmed"), "{missed_2:?}");
    assert_eq!(missed_2.data["data"]["seats"], json!(3));
    // Exactly those: the next event is a new one, not a repeat.
    let second = missed_2.data["data"]["booking_id"].as_str().unwrap();
    let c = app
        .send(app.http.delete(app.url(&format!("/v1/activities/{id}/bookings/{second}"))).bearer_auth(&member))
        .await;
    assert_eq!(c.status, 202, "{:?}", c.body);
    let next = again.update("booking.cancelled").await;
    assert_eq!(next.data["data"]["seats"], json!(3));
    // A resume point this process does not know is an explicit reset.
    let mut lost = sse(&app, &member, "", Some("0190aaaa-0000-7000-8000-000000000000:5")).await;
    assert_eq!(lost.next().await.event, "reset");
}

fn seen_seq(e: &SseEvent) -> u64 {
    e.id.as_deref().and_then(|id| id.rsplit_once(':')).and_then(|(_, s)| s.parse().ok()).unwrap()
}

async fn a_bad_token_is_refused_before_the_upgrade(app: TestApp) {
    let res = app
        .http
        .get(app.url("/v1/stream?access_token=nope"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let url = format!("ws://{}/v1/stream", app.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401 before the upgrade, got {other:?}"),
    }
    let (_, member) = quick_member(&app).await;
    // Watching an activity the member may not see is refused (an unknown one here).
    let res = app
        .http
        .get(app.url(&format!("/v1/stream?subscribe=activity:{}", uuid::Uuid::now_v7())))
        .bearer_auth(&member)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

both_profiles!(a_bad_token_is_refused_before_the_upgrade);

/// Publishes a raw message to `gather.updates` on the app's vhost.
async fn publish_raw(app: &TestApp, key: &str, body: &[u8]) {
    let url = &app.vhost.as_ref().unwrap().url;
    let c = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await.unwrap();
    let ch = c.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let confirm = ch
        .basic_publish(
            gather_projections::bus::EXCHANGE.into(),
            key.into(),
            Default::default(),
            body,
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let _ = c.close(200, "done".into()).await;
}

/// The messages waiting in the dead-letter queue (taken off it).
async fn dead_letters(app: &TestApp) -> Vec<(Vec<u8>, Option<String>)> {
    let url = &app.vhost.as_ref().unwrap().url;
    let c = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await.unwrap();
    let ch = c.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(gather_projections::bus::DEAD_QUEUE.into(), lapin::options::BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let error =
            m.delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-error").cloned()).map(|v| match v {
                lapin::types::AMQPValue::LongString(s) => s.to_string(),
                other => format!("{other:?}"),
            });
        out.push((m.delivery.data.clone(), error));
    }
    let _ = c.close(200, "done".into()).await;
    out
}

/// Waits (≤ 10 s) until the dead-letter queue holds something; returns what it held.
async fn wait_for_dead_letters(app: &TestApp) -> Vec<(Vec<u8>, Option<String>)> {
    let mut dead = Vec::new();
    for _ in 0..400 {
        dead.extend(dead_letters(app).await);
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    dead
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_dead_lettered_and_the_worker_keeps_running() {
    let smtp = TestSmtp::start();
    let app = spawn_mailing(&smtp).await;
    publish_raw(&app, "member.registered", b"{not json").await;
    let dead = wait_for_dead_letters(&app).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, b"{not json");
    let email = format!("m{}@example.com", uuid::Uuid::now_v7().simple());
    app.register(&email).await;
    wait_for_mail(&Mailbox::Smtp(smtp), &app, &email, "Welcome to Gather").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_mail_is_retried_until_delivered_and_a_permanent_failure_is_dead_lettered_alone() {
    let smtp = TestSmtp::start();
    let app = spawn_mailing(&smtp).await;
    eventually("the bootstrap accounts' welcome emails", || async { smtp.to("@gather.test").len() == 2 }).await;
    smtp.refuse(true);
    let email = format!("m{}@example.com", uuid::Uuid::now_v7().simple());
    app.register(&email).await;
    eventually("the server refuses it", || async { smtp.state.lock().unwrap().refused >= 1 }).await;
    assert!(smtp.to(&email).is_empty());
    smtp.refuse(false);
    let mailbox = Mailbox::Smtp(smtp.clone());
    wait_for_mail(&mailbox, &app, &email, "Welcome to Gather").await;
    // An address the server rejects for good ends in the dead-letter queue; the next
    // member's email still goes through.
    let bounce = format!("bounce{}@example.com", uuid::Uuid::now_v7().simple());
    app.register(&bounce).await;
    let after = format!("m{}@example.com", uuid::Uuid::now_v7().simple());
    app.register(&after).await;
    wait_for_mail(&mailbox, &app, &after, "Welcome to Gather").await;
    let dead = wait_for_dead_letters(&app).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let update: Value = serde_json::from_slice(&dead[0].0).unwrap();
    assert_eq!(update["type"], json!("member.registered"));
    assert!(dead[0].1.as_deref().is_some_and(|e| e.contains("550")), "{:?}", dead[0].1);
    assert!(smtp.to(&bounce).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_broker_connections_mid_stream_loses_and_repeats_nothing() {
    updates_survive_the_broker(|vhost, _| {
        rabbitmqctl(&["close_all_connections", "-p", vhost, "test: the broker drops every connection"]);
    })
    .await;
}

/// Stops and starts the whole RabbitMQ application: every vhost notices, so it runs
/// alone, after the suite (scripts/test), and always starts the broker again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the RabbitMQ application for every vhost: scripts/test runs it alone after the suite"]
async fn a_broker_restart_mid_stream_loses_and_repeats_nothing() {
    struct StartAgain;
    impl Drop for StartAgain {
        fn drop(&mut self) {
            let _ = std::process::Command::new("rabbitmqctl").arg("start_app").output();
        }
    }
    let _restore = StartAgain;
    updates_survive_the_broker(|_, i| {
        if i == 1 {
            rabbitmqctl(&["stop_app"]);
            rabbitmqctl(&["start_app"]);
        }
    })
    .await;
}

/// 1,000 updates flow while `drop_broker(vhost, n)` breaks the broker twice (n = 0, 1):
/// afterwards every welcome email was sent exactly once, every update reached the push
/// consumer once, and the outbox is empty.
async fn updates_survive_the_broker(drop_broker: impl Fn(&str, usize)) {
    let smtp = TestSmtp::start();
    let app = spawn_mailing(&smtp).await;
    eventually("the bootstrap accounts' welcome emails", || async { smtp.to("@gather.test").len() == 2 }).await;
    let before = app.app_state.push.dispatched();
    let vhost = app.vhost.as_ref().unwrap().name.clone();
    const N: usize = 1000;
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        ids.push(quick_member(&app).await.0);
        if i == N / 3 || i == 2 * N / 3 {
            drop_broker(&vhost, usize::from(i == 2 * N / 3));
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let outbox = || async {
        gather_commands::on_db_read!(&app.app_state.db, p =>
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox").fetch_one(p).await)
        .unwrap()
    };
    loop {
        let sent = smtp.state.lock().unwrap().received.len();
        let pushed = app.app_state.push.dispatched() - before;
        if sent >= N + 2 && pushed >= N as u64 && outbox().await == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sent {sent}, pushed {pushed}, outbox {}", outbox().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        let to = format!("m{}@example.com", id.simple());
        assert_eq!(smtp.to(&to).len(), 1, "exactly one welcome email to {to}");
    }
    assert_eq!(app.app_state.push.dispatched() - before, N as u64, "every update pushed, each once");
    assert_eq!(outbox().await, 0);
}

/// With the audit exchange on and no queue bound to it yet, its messages come back
/// unroutable (`mandatory`): they stay in the outbox while the updates lanes go on, and
/// reach the first queue bound to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_audit_exchange_on_every_event_reaches_gather_audit_and_an_unroutable_one_waits() {
    let smtp = TestSmtp::start();
    let app = spawn_mailing_with(&smtp, |s| s.audit_exchange = true).await;
    let email = format!("m{}@example.com", uuid::Uuid::now_v7().simple());
    let (member, _) = app.register(&email).await;
    wait_for_mail(&Mailbox::Smtp(smtp.clone()), &app, &email, "Welcome to Gather").await;
    let waiting = || async {
        gather_commands::on_db_read!(&app.app_state.db, p => sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbox WHERE exchange = 'gather.audit'").fetch_one(p).await)
        .unwrap()
    };
    eventually("the audit projection has written its rows", || async { waiting().await > 0 }).await;
    assert!(app.app_state.relay_failures() > 0, "the broker returned them");

    let url = app.vhost.as_ref().unwrap().url.clone();
    let c = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await.unwrap();
    let ch = c.create_channel().await.unwrap();
    ch.queue_declare("gather.test.audit".into(), Default::default(), Default::default()).await.unwrap();
    ch.queue_bind(
        "gather.test.audit".into(),
        gather_projections::bus::AUDIT_EXCHANGE.into(),
        "member.#".into(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let mut found = None;
    for _ in 0..800 {
        if let Some(m) =
            ch.basic_get("gather.test.audit".into(), lapin::options::BasicGetOptions { no_ack: true }).await.unwrap()
        {
            let v: Value = serde_json::from_slice(&m.delivery.data).unwrap();
            if v["data"]["stream"] == json!(format!("member-{member}"))
                && v["data"]["type"] == json!("MemberRegistered")
            {
                found = Some((m.delivery.routing_key.to_string(), v));
                break;
            }
            continue;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (key, v) = found.expect("the member's registration reaches gather.audit once a queue is bound");
    assert_eq!(key, "member.MemberRegistered");
    assert!(v["data"]["metadata"]["event_id"].is_string() && v["data"]["metadata"]["recorded_at"].is_string());
    let _ = c.close(200, "done".into()).await;
}

async fn invitations_carry_their_links_and_a_suspended_member_gets_nothing(app: TestApp) {
    let org = app.organiser(&format!("o{}@example.com", uuid::Uuid::now_v7().simple())).await;
    let id = published_activity(&app, &org, 10, false).await;
    let mut body = activity_body();
    body["visibility"] = json!("invite_only");
    let private = app.post("/v1/activities", Some(&org), body).await.body["id"].as_str().unwrap().to_string();
    let a = app.post(&format!("/v1/activities/{private}/publish"), Some(&org), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let guest = format!("guest{}@example.com", uuid::Uuid::now_v7().simple());
    let a = app.post(&format!("/v1/activities/{private}/invitations"), Some(&org), json!({"emails": [guest]})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let invitation = a.body["invitations"][0]["id"].as_str().unwrap().to_string();
    let mail = wait_for_mail(&Mailbox::Files, &app, &guest, "You are invited: Kids pottery").await;
    let base = &app.app_state.settings.public_base_url;
    assert!(mail.contains(&format!("Accept: {base}/v1/invitations/{invitation}/accept")), "{mail}");
    assert!(mail.contains(&format!("Decline: {base}/v1/invitations/{invitation}/decline")), "{mail}");
    // A suspended member's booking cancellation sends nothing; another's does.
    let moderator = app.login(MODERATOR.0, MODERATOR.1).await.body["token"].as_str().unwrap().to_string();
    let (suspended, s_token) = quick_member(&app).await;
    let (other, o_token) = quick_member(&app).await;
    for token in [&s_token, &o_token] {
        let a = app.post(&format!("/v1/activities/{id}/bookings"), Some(token), json!({"seats": 1})).await;
        assert_eq!(a.status, 201, "{:?}", a.body);
    }
    let to_suspended = format!("m{}@example.com", suspended.simple());
    wait_for_mail(&Mailbox::Files, &app, &to_suspended, "Booking confirmed: Kids pottery").await;
    let a = app.post(&format!("/v1/members/{suspended}/suspend"), Some(&moderator), json!({"reason": "spam"})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let members_at = a.position();
    app.get("/v1/me", Some(&o_token), Some(members_at)).await;
    let a = app.post(&format!("/v1/activities/{id}/cancel"), Some(&org), json!({"reason": "the kiln broke"})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let to_other = format!("m{}@example.com", other.simple());
    wait_for_mail(&Mailbox::Files, &app, &to_other, "Cancelled: Kids pottery").await;
    // One message for both attendees: the other's email is out, so the suspended
    // member's was decided too.
    let got = mail_files_to(&app, &to_suspended);
    assert!(got.iter().all(|m| !m.contains("Cancelled:")), "a suspended member gets nothing: {got:?}");
}

both_profiles!(invitations_carry_their_links_and_a_suspended_member_gets_nothing);

async fn at_shutdown_every_stream_client_is_closed_with_a_reason(app: TestApp) {
    let (_, member) = quick_member(&app).await;
    let mut events = sse(&app, &member, "", None).await;
    let mut socket = ws(&app, &member).await;
    drop(app); // stops the server
    let close = loop {
        let e = events.next().await;
        if e.event == "close" {
            break e;
        }
    };
    assert!(close.data["reason"].as_str().unwrap().contains("shutting down"), "{close:?}");
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(20), socket.next()).await.expect("a close frame") {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame = frame.expect("a close frame with a reason");
    assert!(frame.reason.contains("shutting down"), "{frame:?}");
}

both_profiles!(at_shutdown_every_stream_client_is_closed_with_a_reason);
