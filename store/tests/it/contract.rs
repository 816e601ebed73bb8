//! The contract every event store backend passes.

use crate::support::{every_backend, settle};
use futures::TryStreamExt;
use gather_commands::{CommandHandler, CommandMeta};
use gather_domain::member::{Member, MemberCommand, MemberEvent};
use gather_domain::values::{DisplayName, Email};
use gather_domain::{Actor, Aggregate, Role};
use gather_store::Db;
use gather_store::codec::{Upcasters, decode};
use gather_store::{
    AppendMeta, Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, Snapshot, StoreError, StreamAppend,
    subscribe,
};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

every_backend!(
    a_new_stream_then_exact_versions_append_in_order,
    a_wrong_expected_version_is_a_conflict_carrying_the_actual_version,
    any_and_stream_exists_expectations_behave,
    a_multi_stream_append_is_all_or_nothing,
    the_same_command_id_appends_once_and_returns_the_first_result,
    the_same_event_id_twice_is_refused,
    streams_read_forward_from_a_version_and_backward_from_the_end,
    the_global_log_filters_by_category_and_event_type,
    a_subscription_catches_up_then_follows_live_appends,
    snapshots_speed_loading_and_a_stale_shape_is_ignored,
    old_event_versions_are_upcast_on_read,
    an_undecodable_event_is_a_typed_error_naming_stream_and_version,
    the_events_table_refuses_update_and_delete,
    bad_stream_names_and_empty_appends_are_refused,
    concurrent_appends_each_get_their_own_result,
    two_handlers_see_each_others_appends_through_their_caches,
    a_chain_stops_at_its_first_member_not_appended,
    a_chain_member_is_refused_even_where_a_foreign_writer_made_its_version_true,
    commands_queued_on_one_stream_are_decided_in_order_on_each_others_state,
);

fn ev(kind: &str, n: i64) -> NewEvent {
    NewEvent { event_id: Uuid::now_v7(), event_type: kind.into(), schema_version: 1, data: json!({"n": n}) }
}

fn one(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Vec<StreamAppend> {
    vec![StreamAppend { stream: stream.into(), expected, events }]
}

fn meta() -> AppendMeta {
    AppendMeta::new(Uuid::now_v7(), Some(Uuid::now_v7()))
}

fn stream(cat: &str) -> String {
    format!("{cat}-{}", Uuid::now_v7())
}

pub(crate) async fn a_new_stream_then_exact_versions_append_in_order(_db: Db, store: Arc<dyn EventStore>) {
    let s = stream("thing");
    let r = store.append(&meta(), one(&s, ExpectedVersion::NoStream, vec![ev("A", 0), ev("B", 1)])).await.unwrap();
    assert!(!r.duplicate);
    assert_eq!(r.streams[0].version, 1);
    assert_eq!(r.streams[0].last_position - r.streams[0].first_position, 1);
    let r2 = store.append(&meta(), one(&s, ExpectedVersion::Exact(1), vec![ev("C", 2)])).await.unwrap();
    assert_eq!(r2.streams[0].version, 2);
    assert!(r2.streams[0].first_position > r.streams[0].last_position);
    let all: Vec<_> = store.read_stream(&s, 0).try_collect().await.unwrap();
    assert_eq!(all.iter().map(|e| e.version).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(all.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), vec!["A", "B", "C"]);
    assert_eq!(store.stream_version(&s).await.unwrap(), Some(2));
    // metadata on every event
    let m = meta();
    store.append(&m, one(&s, ExpectedVersion::Exact(2), vec![ev("D", 3)])).await.unwrap();
    let last = store.read_stream_backward(&s).try_next().await.unwrap().unwrap();
    assert_eq!(last.command_id, m.command_id);
    assert_eq!(last.correlation_id, m.correlation_id);
    assert_eq!(last.actor, m.actor);
    assert_eq!(last.schema_version, 1);
    assert_eq!(last.category(), "thing");
}

pub(crate) async fn a_wrong_expected_version_is_a_conflict_carrying_the_actual_version(
    _db: Db,
    store: Arc<dyn EventStore>,
) {
    let s = stream("thing");
    store.append(&meta(), one(&s, ExpectedVersion::NoStream, vec![ev("A", 0)])).await.unwrap();
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(5), ExpectedVersion::Exact(-1)] {
        match store.append(&meta(), one(&s, expected, vec![ev("X", 9)])).await {
            Err(StoreError::Conflict { stream, actual, .. }) => {
                assert_eq!(stream, s);
                assert_eq!(actual, Some(0));
            }
            other => panic!("expected a conflict for {expected:?}, got {other:?}"),
        }
    }
    let missing = stream("thing");
    match store.append(&meta(), one(&missing, ExpectedVersion::Exact(0), vec![ev("X", 9)])).await {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, None),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), Some(0));
    assert_eq!(store.stream_version(&missing).await.unwrap(), None);
}

pub(crate) async fn any_and_stream_exists_expectations_behave(_db: Db, store: Arc<dyn EventStore>) {
    let s = stream("thing");
    assert!(matches!(
        store.append(&meta(), one(&s, ExpectedVersion::StreamExists, vec![ev("A", 0)])).await,
        Err(StoreError::Conflict { actual: None, .. })
    ));
    store.append(&meta(), one(&s, ExpectedVersion::Any, vec![ev("A", 0)])).await.unwrap();
    store.append(&meta(), one(&s, ExpectedVersion::Any, vec![ev("B", 1)])).await.unwrap();
    let r = store.append(&meta(), one(&s, ExpectedVersion::StreamExists, vec![ev("C", 2)])).await.unwrap();
    assert_eq!(r.streams[0].version, 2);
}

pub(crate) async fn a_multi_stream_append_is_all_or_nothing(_db: Db, store: Arc<dyn EventStore>) {
    assert!(store.capabilities().multi_stream_append);
    let (a, b) = (stream("alpha"), stream("beta"));
    let first = store.append(&meta(), one(&b, ExpectedVersion::NoStream, vec![ev("B", 0)])).await.unwrap();
    settle(&store, first.last_position()).await;
    let head = store.head().await.unwrap();
    let both = vec![
        StreamAppend { stream: a.clone(), expected: ExpectedVersion::NoStream, events: vec![ev("A", 0)] },
        StreamAppend { stream: b.clone(), expected: ExpectedVersion::NoStream, events: vec![ev("B", 1)] },
    ];
    match store.append(&meta(), both).await {
        Err(StoreError::Conflict { stream, .. }) => assert_eq!(stream, b),
        other => panic!("expected a conflict on {b}, got {other:?}"),
    }
    assert_eq!(store.stream_version(&a).await.unwrap(), None, "nothing of a failed append is written");
    assert_eq!(store.head().await.unwrap(), head);
    let ok = vec![
        StreamAppend { stream: a.clone(), expected: ExpectedVersion::NoStream, events: vec![ev("A", 0)] },
        StreamAppend { stream: b.clone(), expected: ExpectedVersion::Exact(0), events: vec![ev("B", 1)] },
    ];
    let r = store.append(&meta(), ok).await.unwrap();
    assert_eq!(r.streams.len(), 2);
    assert_eq!(store.stream_version(&b).await.unwrap(), Some(1));
}

pub(crate) async fn the_same_command_id_appends_once_and_returns_the_first_result(_db: Db, store: Arc<dyn EventStore>) {
    let s = stream("thing");
    let m = meta();
    let first = store.append(&m, one(&s, ExpectedVersion::NoStream, vec![ev("A", 0)])).await.unwrap();
    // The repeat carries fresh event ids and a stale expectation: still the first result.
    let again = store.append(&m, one(&s, ExpectedVersion::NoStream, vec![ev("A", 0)])).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.streams, first.streams);
    assert_eq!(store.stream_version(&s).await.unwrap(), Some(0));
    // Concurrent repeats of one command id also write once.
    let s2 = stream("thing");
    let m2 = meta();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, m2, s2) = (store.clone(), m2.clone(), s2.clone());
            tokio::spawn(async move { store.append(&m2, one(&s2, ExpectedVersion::Any, vec![ev("A", 0)])).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 1);
    assert!(results.iter().all(|r| r.streams == results[0].streams));
    assert_eq!(store.stream_version(&s2).await.unwrap(), Some(0));
}

pub(crate) async fn the_same_event_id_twice_is_refused(_db: Db, store: Arc<dyn EventStore>) {
    let e = ev("A", 0);
    store.append(&meta(), one(&stream("thing"), ExpectedVersion::Any, vec![e.clone()])).await.unwrap();
    let r = store.append(&meta(), one(&stream("thing"), ExpectedVersion::Any, vec![e])).await;
    assert!(matches!(r, Err(StoreError::DuplicateEvent)), "{r:?}");
}

pub(crate) async fn streams_read_forward_from_a_version_and_backward_from_the_end(_db: Db, store: Arc<dyn EventStore>) {
    let s = stream("long");
    // more than one page (500) to exercise paging
    let events: Vec<_> = (0..1203).map(|n| ev("N", n)).collect();
    store.append(&meta(), one(&s, ExpectedVersion::NoStream, events)).await.unwrap();
    let from: Vec<_> = store.read_stream(&s, 700).try_collect().await.unwrap();
    assert_eq!(from.len(), 503);
    assert!(from.iter().enumerate().all(|(i, e)| e.version == 700 + i as i64 && e.data["n"] == json!(700 + i)));
    let back: Vec<_> = store.read_stream_backward(&s).try_collect().await.unwrap();
    assert_eq!(back.len(), 1203);
    assert!(back.windows(2).all(|w| w[0].version == w[1].version + 1));
    assert_eq!(back[0].version, 1202);
    let none: Vec<_> = store.read_stream(&stream("long"), 0).try_collect().await.unwrap();
    assert!(none.is_empty());
}

pub(crate) async fn the_global_log_filters_by_category_and_event_type(_db: Db, store: Arc<dyn EventStore>) {
    let mut last = 0;
    for i in 0..30 {
        let cat = ["red", "green", "blue"][i % 3];
        let kind = if i % 2 == 0 { "Even" } else { "Odd" };
        let r = store.append(&meta(), one(&stream(cat), ExpectedVersion::NoStream, vec![ev(kind, i as i64)])).await;
        last = r.unwrap().last_position();
    }
    settle(&store, last).await;
    let all: Vec<_> = store.read_log(Checkpoint::START, LogFilter::all()).try_collect().await.unwrap();
    assert_eq!(all.len(), 30);
    assert!(all.windows(2).all(|w| w[0].checkpoint() < w[1].checkpoint()));
    let red: Vec<_> = store.read_log(Checkpoint::START, LogFilter::categories(&["red"])).try_collect().await.unwrap();
    assert_eq!(red.len(), 10);
    assert!(red.iter().all(|e| e.category() == "red"));
    let rg: Vec<_> =
        store.read_log(Checkpoint::START, LogFilter::categories(&["red", "green"])).try_collect().await.unwrap();
    assert_eq!(rg.len(), 20);
    let odd_blue = LogFilter { categories: vec!["blue".into()], event_types: vec!["Odd".into()] };
    let ob: Vec<_> = store.read_log(Checkpoint::START, odd_blue).try_collect().await.unwrap();
    assert_eq!(ob.len(), 5);
    assert!(ob.iter().all(|e| e.event_type == "Odd" && e.category() == "blue"));
    // after a checkpoint
    let rest: Vec<_> = store.read_log(all[9].checkpoint(), LogFilter::all()).try_collect().await.unwrap();
    assert_eq!(rest.len(), 20);
    assert_eq!(rest[0].event_id, all[10].event_id);
    assert_eq!(store.head().await.unwrap(), all[29].checkpoint());
    assert_eq!(store.checkpoint_of(all[5].position).await.unwrap(), Some(all[5].checkpoint()));
    assert_eq!(store.checkpoint_of(all[29].position + 1000).await.unwrap(), None);
}

pub(crate) async fn a_subscription_catches_up_then_follows_live_appends(_db: Db, store: Arc<dyn EventStore>) {
    for n in 0..5 {
        store.append(&meta(), one(&stream("sub"), ExpectedVersion::Any, vec![ev("A", n)])).await.unwrap();
    }
    let mut sub = subscribe(store.clone(), Checkpoint::START, LogFilter::all()).with_page_size(2);
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.extend(sub.next_batch(10).await.unwrap());
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 5..10 {
                store.append(&meta(), one(&stream("sub"), ExpectedVersion::Any, vec![ev("A", n)])).await.unwrap();
            }
        })
    };
    while seen.len() < 10 {
        seen.extend(sub.next_batch(10).await.unwrap());
    }
    writer.await.unwrap();
    let ns: Vec<_> = seen.iter().map(|e| e.data["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (0..10).collect::<Vec<_>>());
    assert_eq!(sub.checkpoint(), seen[9].checkpoint());
    // resume from a checkpoint
    let mut again = subscribe(store.clone(), seen[6].checkpoint(), LogFilter::all());
    let mut rest = Vec::new();
    while rest.len() < 3 {
        rest.extend(again.next_batch(100).await.unwrap());
    }
    assert_eq!(
        rest.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        seen[7..].iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
}

fn register(id: Uuid) -> MemberCommand {
    MemberCommand::Register {
        member_id: id,
        email: Email::parse("snap@example.com").unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        display_name: DisplayName::parse("Snap").unwrap(),
    }
}

pub(crate) async fn snapshots_speed_loading_and_a_stale_shape_is_ignored(_db: Db, store: Arc<dyn EventStore>) {
    let handler = CommandHandler::new(store.clone()).with_snapshot_every(5);
    let id = Uuid::now_v7();
    let me = Actor::new(id, [Role::Member]);
    handler.handle::<Member>(id, register(id), &CommandMeta::new(me.clone())).await.unwrap();
    for i in 0..6 {
        let name = DisplayName::parse(&format!("Name {i}")).unwrap();
        handler
            .handle::<Member>(id, MemberCommand::UpdateProfile { display_name: name }, &CommandMeta::new(me.clone()))
            .await
            .unwrap();
    }
    let stream = format!("member-{id}");
    // the snapshot is written off the append path: wait for it
    let mut snap = None;
    for _ in 0..200 {
        snap = store.load_snapshot(&stream).await.unwrap();
        if snap.is_some() {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let snap = snap.expect("a snapshot after 5+ events");
    assert!(snap.version >= 4);
    let loaded = handler.load::<Member>(id).await.unwrap();
    assert_eq!(loaded.version, Some(7));
    assert_eq!(loaded.state.display_name.as_ref().map(|d| d.as_str().to_string()), Some("Name 5".into()));
    // a snapshot of another state shape is ignored, not misread
    store
        .save_snapshot(&stream, &Snapshot { version: 7, state_version: 999, state: json!({"garbage": true}) })
        .await
        .unwrap();
    let loaded = handler.load::<Member>(id).await.unwrap();
    assert_eq!(loaded.version, Some(7));
    assert_eq!(loaded.state.display_name.as_ref().map(|d| d.as_str().to_string()), Some("Name 5".into()));
    // a snapshot that claims the current shape but is unreadable is ignored too
    store
        .save_snapshot(&stream, &Snapshot { version: 7, state_version: Member::STATE_VERSION as i32, state: json!(42) })
        .await
        .unwrap();
    assert_eq!(handler.load::<Member>(id).await.unwrap().version, Some(7));
}

pub(crate) async fn old_event_versions_are_upcast_on_read(_db: Db, store: Arc<dyn EventStore>) {
    // Version 0 of ProfileUpdated called the field `name`.
    let id = Uuid::now_v7();
    let s = format!("member-{id}");
    let old = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "ProfileUpdated".into(),
        schema_version: 0,
        data: json!({"name": "Old Shape"}),
    };
    store.append(&meta(), one(&s, ExpectedVersion::NoStream, vec![old])).await.unwrap();
    let recorded = store.read_stream(&s, 0).try_next().await.unwrap().unwrap();
    assert!(decode::<MemberEvent>(&recorded, &Upcasters::new()).is_err(), "without the upcaster it does not read");
    let upcasters = Upcasters::new().register("ProfileUpdated", 0, |mut v| {
        if let Some(o) = v.as_object_mut()
            && let Some(n) = o.remove("name")
        {
            o.insert("display_name".into(), n);
        }
        v
    });
    let event: MemberEvent = decode(&recorded, &upcasters).unwrap();
    assert_eq!(event, MemberEvent::ProfileUpdated { display_name: (DisplayName::parse("Old Shape").unwrap()).into() });
    // the stored row is unchanged
    let again = store.read_stream(&s, 0).try_next().await.unwrap().unwrap();
    assert_eq!(again.schema_version, 0);
    assert_eq!(again.data, json!({"name": "Old Shape"}));
}

pub(crate) async fn an_undecodable_event_is_a_typed_error_naming_stream_and_version(
    _db: Db,
    store: Arc<dyn EventStore>,
) {
    let handler = CommandHandler::new(store.clone());
    let id = Uuid::now_v7();
    handler.handle::<Member>(id, register(id), &CommandMeta::new(Actor::new(id, [Role::Member]))).await.unwrap();
    let s = format!("member-{id}");
    store.append(&meta(), one(&s, ExpectedVersion::Exact(1), vec![ev("NoSuchEvent", 1)])).await.unwrap();
    match handler.load::<Member>(id).await {
        Err(StoreError::Decode { stream, version, event_type, .. }) => {
            assert_eq!(stream, s);
            assert_eq!(version, 2);
            assert_eq!(event_type, "NoSuchEvent");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

pub(crate) async fn the_events_table_refuses_update_and_delete(db: Db, store: Arc<dyn EventStore>) {
    let r = store.append(&meta(), one(&stream("thing"), ExpectedVersion::NoStream, vec![ev("A", 0)])).await.unwrap();
    settle(&store, r.last_position()).await;
    let update =
        gather_store::on_db!(&db, p => sqlx::query("UPDATE events SET event_type = 'X'").execute(p).await.map(|_| ()));
    assert!(update.is_err(), "UPDATE must be refused");
    assert!(format!("{:?}", update.unwrap_err()).contains("append-only"));
    let delete = gather_store::on_db!(&db, p => sqlx::query("DELETE FROM events").execute(p).await.map(|_| ()));
    assert!(delete.is_err(), "DELETE must be refused");
    assert_eq!(store.head().await.unwrap().position, 1);
}

pub(crate) async fn bad_stream_names_and_empty_appends_are_refused(_db: Db, store: Arc<dyn EventStore>) {
    assert!(matches!(store.append(&meta(), vec![]).await, Err(StoreError::Invalid(_))));
    assert!(matches!(
        store.append(&meta(), one("nodash", ExpectedVersion::Any, vec![ev("A", 0)])).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.append(&meta(), one(&stream("x"), ExpectedVersion::Any, vec![])).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.head().await.unwrap(), Checkpoint::START);
}

pub(crate) async fn concurrent_appends_each_get_their_own_result(_db: Db, store: Arc<dyn EventStore>) {
    // On Postgres these share group commits: a conflict must fail alone.
    let contended = stream("hot");
    store.append(&meta(), one(&contended, ExpectedVersion::NoStream, vec![ev("A", 0)])).await.unwrap();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            let target = if i % 2 == 0 { contended.clone() } else { stream("cold") };
            let expected = if i % 2 == 0 { ExpectedVersion::Exact(0) } else { ExpectedVersion::NoStream };
            tokio::spawn(async move { (i, store.append(&meta(), one(&target, expected, vec![ev("B", i)])).await) })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match (i % 2, r) {
            (0, Ok(_)) => winners += 1,
            (0, Err(StoreError::Conflict { actual, .. })) => assert_eq!(actual, Some(1)),
            (1, Ok(r)) => assert_eq!(r.streams[0].version, 0),
            (_, other) => panic!("append {i}: unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one append at version 0 wins");
    assert_eq!(store.stream_version(&contended).await.unwrap(), Some(1));
}

pub(crate) async fn two_handlers_see_each_others_appends_through_their_caches(_db: Db, store: Arc<dyn EventStore>) {
    // Two processes' handlers: each keeps the state after its own appends in memory.
    let (h1, h2) = (CommandHandler::new(store.clone()), CommandHandler::new(store.clone()));
    let id = Uuid::now_v7();
    let me = || CommandMeta::new(Actor::new(id, [Role::Member]));
    h1.handle::<Member>(id, register(id), &me()).await.unwrap();
    let rename = |n: &str| MemberCommand::UpdateProfile { display_name: DisplayName::parse(n).unwrap() };
    let a = h2.handle::<Member>(id, rename("From two"), &me()).await.unwrap();
    assert_eq!(a.version, 2);
    // h1's cached state is at version 1: it must read h2's event, not conflict or miss it
    let b = h1.handle::<Member>(id, rename("From one"), &me()).await.unwrap();
    assert_eq!(b.version, 3);
    assert!(!b.events.is_empty());
    // renaming to the current name decides nothing: both see the latest name
    let same = h2.handle::<Member>(id, rename("From one"), &me()).await.unwrap();
    let loaded = h2.load::<Member>(id).await.unwrap();
    assert_eq!(loaded.state.display_name.as_ref().map(|d| d.as_str().to_string()), Some("From one".into()));
    assert!(same.version >= 3);
}

/// A chain: each member appended on the versions the ones before it leave; once one
/// is not appended (a conflict, a repeat), the rest are refused without being tried.
pub(crate) async fn a_chain_stops_at_its_first_member_not_appended(_db: Db, store: Arc<dyn EventStore>) {
    let s = stream("chain");
    let repeat = meta();
    store.append(&repeat, one(&stream("other"), ExpectedVersion::NoStream, vec![ev("X", 0)])).await.unwrap();
    let chain = vec![
        (meta(), one(&s, ExpectedVersion::NoStream, vec![ev("A", 0), ev("B", 1)])),
        (meta(), one(&s, ExpectedVersion::Exact(1), vec![ev("C", 2)])),
        (repeat.clone(), one(&s, ExpectedVersion::Exact(2), vec![ev("D", 3)])),
        (meta(), one(&s, ExpectedVersion::Exact(3), vec![ev("E", 4)])),
    ];
    let results = store.append_chain(chain).await;
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().unwrap().streams[0].version, 1);
    assert_eq!(results[1].as_ref().unwrap().streams[0].version, 2);
    assert!(results[2].as_ref().unwrap().duplicate, "a repeat answers its first result: {:?}", results[2]);
    assert!(matches!(&results[3], Err(StoreError::Conflict { .. })), "{:?}", results[3]);
    let kinds: Vec<String> = store.read_stream(&s, 0).map_ok(|e| e.event_type).try_collect().await.unwrap();
    assert_eq!(kinds, ["A", "B", "C"], "nothing after the repeat");
    // A conflict at the head of a chain refuses all of it.
    let chain = vec![
        (meta(), one(&s, ExpectedVersion::Exact(0), vec![ev("F", 5)])),
        (meta(), one(&s, ExpectedVersion::Exact(3), vec![ev("G", 6)])),
    ];
    let results = store.append_chain(chain).await;
    assert!(results.iter().all(|r| matches!(r, Err(StoreError::Conflict { .. }))), "{results:?}");
    assert_eq!(store.read_stream(&s, 0).try_collect::<Vec<_>>().await.unwrap().len(), 3);
}

/// The phantom version: member 2 of a chain expects the version member 1 would have
/// left; a foreign writer got there first with as many events, so member 1 conflicts,
/// and member 2's expected version is now true of the stream. It is still refused: it
/// was decided on member 1's events, which were never appended.
pub(crate) async fn a_chain_member_is_refused_even_where_a_foreign_writer_made_its_version_true(
    _db: Db,
    store: Arc<dyn EventStore>,
) {
    let s = stream("phantom");
    store.append(&meta(), one(&s, ExpectedVersion::NoStream, vec![ev("A", 0)])).await.unwrap();
    // Foreign: one event on top of version 0, as member 1 would have added.
    store.append(&meta(), one(&s, ExpectedVersion::Exact(0), vec![ev("Foreign", 1)])).await.unwrap();
    let chain = vec![
        (meta(), one(&s, ExpectedVersion::Exact(0), vec![ev("Mine", 1)])),
        (meta(), one(&s, ExpectedVersion::Exact(1), vec![ev("OnMine", 2)])),
    ];
    let results = store.append_chain(chain).await;
    assert!(matches!(&results[0], Err(StoreError::Conflict { .. })), "{:?}", results[0]);
    assert!(matches!(&results[1], Err(StoreError::Conflict { .. })), "{:?}", results[1]);
    let kinds: Vec<String> = store.read_stream(&s, 0).map_ok(|e| e.event_type).try_collect().await.unwrap();
    assert_eq!(kinds, ["A", "Foreign"]);
}

/// Many commands on one stream at once: each is decided on the state the ones before
/// it leave (the handler chains them), so every distinct favourite is appended once,
/// at its own version, and a repeated one decides nothing, answered after the chain.
pub(crate) async fn commands_queued_on_one_stream_are_decided_in_order_on_each_others_state(
    _db: Db,
    store: Arc<dyn EventStore>,
) {
    let handler = CommandHandler::new(store.clone());
    let id = Uuid::now_v7();
    let me = || CommandMeta::new(Actor::new(id, [Role::Member]));
    handler.handle::<Member>(id, register(id), &me()).await.unwrap();
    let activities: Vec<Uuid> = (0..24).map(|_| Uuid::now_v7()).collect();
    let mut tasks = Vec::new();
    // Every activity twice: one of each pair has nothing left to do.
    for a in activities.iter().chain(activities.iter()) {
        let (handler, meta, a) = (handler.clone(), me(), *a);
        tasks.push(tokio::spawn(async move {
            handler.handle::<Member>(id, MemberCommand::FavouriteActivity { activity_id: a }, &meta).await
        }));
    }
    let mut versions = Vec::new();
    let mut noops = 0;
    for t in tasks {
        let outcome = t.await.unwrap().unwrap();
        if outcome.events.is_empty() {
            noops += 1;
        } else {
            versions.push(outcome.version);
        }
    }
    versions.sort();
    assert_eq!(noops, 24, "one of each pair decides nothing");
    let loaded = handler.load::<Member>(id).await.unwrap();
    let last = loaded.version.unwrap();
    assert_eq!(versions.len(), 24);
    versions.dedup();
    assert_eq!(versions.len(), 24, "each at its own version");
    assert_eq!(*versions.last().unwrap(), last);
    assert_eq!(versions[0], last - 23, "right after the registration");
    let favourites: Vec<MemberEvent> = store
        .read_stream(&format!("member-{id}"), 0)
        .map_ok(|e| decode::<MemberEvent>(&e, &Upcasters::standard()).unwrap())
        .try_collect()
        .await
        .unwrap();
    let added = favourites.iter().filter(|e| matches!(e, MemberEvent::ActivityFavourited { .. })).count();
    assert_eq!(added, 24, "each activity favourited once");
}

/// A command pinned to the stream's committed version (`If-Match`), first in its
/// stream's queue, is decided in its turn: the commands queued after it are not
/// appended first to make it stale. The queue is made by holding the stream's append
/// lock from another session while one command is being appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_command_first_in_its_queue_is_decided_on_committed_state() {
    let (db, store, _) = crate::support::fresh_postgres().await;
    let Db::Postgres(pool) = &db else { unreachable!() };
    let handler = CommandHandler::new(store.clone());
    let id = Uuid::now_v7();
    let me = || CommandMeta::new(Actor::new(id, [Role::Member]));
    let registered = handler.handle::<Member>(id, register(id), &me()).await.unwrap();
    // Another session holds the lock every append of the stream takes first.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(1195463752, hashtext($1))")
        .bind(format!("member-{id}"))
        .execute(&mut *holder)
        .await
        .unwrap();
    let favourite = || MemberCommand::FavouriteActivity { activity_id: Uuid::now_v7() };
    let blocked = {
        let (handler, meta, command) = (handler.clone(), me(), favourite());
        tokio::spawn(async move { handler.handle::<Member>(id, command, &meta).await })
    };
    // Wait until that append waits on the lock: the stream's queue then builds up.
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 1195463752)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::task::yield_now().await;
    }
    let pinned = CommandMeta { if_match: Some(registered.version + 1), ..me() };
    let rename = MemberCommand::UpdateProfile { display_name: DisplayName::parse("Pinned").unwrap() };
    let metas: Vec<CommandMeta> = (0..12).map(|_| me()).collect();
    let mut calls = vec![handler.handle::<Member>(id, rename, &pinned)];
    for meta in &metas {
        calls.push(handler.handle::<Member>(id, favourite(), meta));
    }
    // The first poll of `join_all` queues all of them (behind the held stream lock)
    // before the other branch lets the blocked append go.
    let (results, ()) = tokio::join!(futures::future::join_all(calls), async {
        holder.commit().await.unwrap();
    });
    assert_eq!(blocked.await.unwrap().unwrap().version, registered.version + 1);
    let first = results[0].as_ref().expect("the pinned command, first in the queue, goes through");
    assert_eq!(first.version, registered.version + 2, "{first:?}");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}
