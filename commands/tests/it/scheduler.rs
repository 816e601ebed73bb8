//! Durable timers on both backends: fired once with two schedulers, after a crash
//! between claim and command, at once when already due, moved and cancelled.

use crate::support::every_backend;
use chrono::{Duration, Utc};
use gather_commands::scheduler::{Scheduler, cancel, schedule};
use gather_commands::{CommandHandler, Db, EventStore};
use gather_domain::process::Scheduled;
use std::sync::Arc;
use uuid::Uuid;

every_backend!(
    a_timer_fires_once_with_two_schedulers,
    a_scheduler_killed_between_claim_and_command_leaves_a_timer_that_fires_later,
    timers_move_when_rescheduled_and_vanish_when_cancelled,
);

async fn add(db: &Db, key: &str, due: chrono::DateTime<Utc>, room: Uuid) {
    let mut tx = db.begin().await.unwrap();
    let cmd = Scheduled::OpenActivityRoom { activity_id: room, organiser_id: Uuid::now_v7() };
    schedule(&mut tx, key, due, &cmd, Uuid::now_v7(), Uuid::now_v7()).await.unwrap();
    tx.commit().await.unwrap();
}

async fn room_events(store: &Arc<dyn EventStore>, room: Uuid) -> Option<i64> {
    store.stream_version(&format!("chat-{room}")).await.unwrap()
}

async fn a_timer_fires_once_with_two_schedulers(db: Db, store: Arc<dyn EventStore>) {
    let room = Uuid::now_v7();
    add(&db, "k1", Utc::now() - Duration::minutes(1), room).await;
    let a = Scheduler::new(db.clone(), CommandHandler::new(store.clone()));
    let b = Scheduler::new(db.clone(), CommandHandler::new(store.clone()));
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    assert_eq!(ra.unwrap() + rb.unwrap(), 1, "one claim between two schedulers");
    let version = room_events(&store, room).await;
    assert!(version.is_some(), "the room was opened");
    // nothing is due any more
    assert_eq!(a.tick().await.unwrap() + b.tick().await.unwrap(), 0);
    assert_eq!(room_events(&store, room).await, version);
}

async fn a_scheduler_killed_between_claim_and_command_leaves_a_timer_that_fires_later(
    db: Db,
    store: Arc<dyn EventStore>,
) {
    let room = Uuid::now_v7();
    add(&db, "k2", Utc::now() - Duration::seconds(1), room).await;
    let dead = Scheduler::new(db.clone(), CommandHandler::new(store.clone()));
    let claimed = dead.claim(10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // ...and it dies here, before firing. Within the lease nobody else takes it:
    let other = Scheduler::new(db.clone(), CommandHandler::new(store.clone()));
    assert_eq!(other.tick().await.unwrap(), 0);
    assert_eq!(room_events(&store, room).await, None);
    // after the lease a restarted scheduler fires it
    let later: gather_commands::handler::Clock = Arc::new(|| Utc::now() + Duration::seconds(31));
    let restarted = Scheduler::new(db.clone(), CommandHandler::new(store.clone())).with_clock(later);
    assert_eq!(restarted.tick().await.unwrap(), 1);
    let version = room_events(&store, room).await;
    assert!(version.is_some());
    // had the dead one woken up and fired too, the store would append nothing more
    dead.fire(&claimed[0]).await.unwrap();
    assert_eq!(room_events(&store, room).await, version);
}

async fn timers_move_when_rescheduled_and_vanish_when_cancelled(db: Db, store: Arc<dyn EventStore>) {
    let s = Scheduler::new(db.clone(), CommandHandler::new(store.clone()));
    let room = Uuid::now_v7();
    add(&db, "k3", Utc::now() + Duration::hours(1), room).await;
    assert_eq!(s.tick().await.unwrap(), 0, "not due yet");
    add(&db, "k3", Utc::now() - Duration::minutes(5), room).await;
    assert_eq!(s.tick().await.unwrap(), 1, "moved into the past: fires at once");
    assert!(room_events(&store, room).await.is_some());
    let gone = Uuid::now_v7();
    add(&db, "k4", Utc::now() - Duration::minutes(5), gone).await;
    let mut tx = db.begin().await.unwrap();
    cancel(&mut tx, "k4").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.tick().await.unwrap(), 0);
    assert_eq!(room_events(&store, gone).await, None);
}

every_backend!(the_clean_up_drops_old_fired_timers_and_expired_idempotency_keys);

async fn the_clean_up_drops_old_fired_timers_and_expired_idempotency_keys(db: Db, store: Arc<dyn EventStore>) {
    let s = Scheduler::new(db.clone(), CommandHandler::new(store.clone()));
    add(&db, "old", Utc::now() - Duration::minutes(1), Uuid::now_v7()).await;
    assert_eq!(s.tick().await.unwrap(), 1);
    let count = |sql: &'static str| {
        let db = db.clone();
        async move { gather_commands::on_db!(&db, p => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await).unwrap() }
    };
    gather_commands::on_db!(&db, p => sqlx::query(
        "INSERT INTO idempotency_keys (scope, request_hash, status, headers, body, created_at) VALUES ('a', 'h', 201, $1, $2, $3), ('b', 'h', 201, $1, $2, $4)",
    ).bind(sqlx::types::Json(serde_json::json!({}))).bind(vec![1u8]).bind(Utc::now() - Duration::hours(25)).bind(Utc::now())
     .execute(p).await.map(|_| ())).unwrap();
    s.clean_up(Utc::now()).await;
    assert_eq!(count("SELECT count(*) FROM due_commands").await, 1, "a timer fired just now stays");
    assert_eq!(count("SELECT count(*) FROM idempotency_keys").await, 1, "only the expired key goes");
    s.clean_up(Utc::now() + Duration::days(8)).await;
    assert_eq!(count("SELECT count(*) FROM due_commands").await, 0, "a week after firing it goes");
}
