//! Postgres: the global log never skips and never duplicates, proven with
//! deterministic interleavings of open, late-committing and rolled-back
//! transactions, and a stress test of concurrent writers with a live subscriber.

use crate::support::fresh_postgres;
use gather_store::postgres::{BatchMember, append_batch};
use gather_store::{AppendMeta, Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, StreamAppend, subscribe};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// Appends inside an open transaction of `conn`, returning the position it took.
async fn append_in(conn: &mut PgConnection, stream: &str, n: i64) -> i64 {
    let e = NewEvent { event_id: Uuid::now_v7(), event_type: "E".into(), schema_version: 1, data: json!({"n": n}) };
    let member = BatchMember {
        meta: AppendMeta::new(Uuid::now_v7(), None),
        appends: vec![StreamAppend { stream: stream.into(), expected: ExpectedVersion::Any, events: vec![e] }],
    };
    let r = append_batch(conn, &[member]).await.unwrap().pop().unwrap().unwrap();
    r.streams[0].first_position
}

async fn append(store: &Arc<dyn EventStore>, stream: &str, n: i64) -> i64 {
    let e = NewEvent { event_id: Uuid::now_v7(), event_type: "E".into(), schema_version: 1, data: json!({"n": n}) };
    let r = store
        .append(
            &AppendMeta::new(Uuid::now_v7(), None),
            vec![StreamAppend { stream: stream.into(), expected: ExpectedVersion::Any, events: vec![e] }],
        )
        .await
        .unwrap();
    r.streams[0].first_position
}

fn ns(events: &[gather_store::RecordedEvent]) -> Vec<i64> {
    events.iter().map(|e| e.data["n"].as_i64().unwrap()).collect()
}

/// Waits (bounded) until `want.len()` events arrived and checks them. Positive reads
/// wait because any transaction of the cluster (other tests) briefly holds back xmin;
/// negative reads ("nothing yet") poll, which such delays cannot make pass wrongly.
async fn expect(sub: &mut gather_store::Subscription, want: &[i64]) {
    let mut got = Vec::new();
    let wait = async {
        while got.len() < want.len() {
            got.extend(sub.next_batch(want.len() - got.len()).await.unwrap());
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait).await.expect("events within 10 s");
    assert_eq!(ns(&got), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_never_skipped_and_a_rollback_leaves_no_trace() {
    let (_db, store, url) = fresh_postgres().await;
    // Different streams: one stream's writers queue on its version row by design.
    let s = || format!("il-{}", Uuid::now_v7());
    append(&store, &s(), 0).await;
    let mut sub = subscribe(store.clone(), Checkpoint::START, LogFilter::all());
    expect(&mut sub, &[0]).await;

    // A takes its position first and stays open.
    let mut a = PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut a).await.unwrap();
    let pos_a = append_in(&mut a, &s(), 1).await;
    // B takes a later position and commits first.
    let pos_b = append(&store, &s(), 2).await;
    assert!(pos_b > pos_a);
    // C appends and rolls back.
    let mut c = PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut c).await.unwrap();
    append_in(&mut c, &s(), 99).await;
    sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();

    // While A is open, B must not be handed out (that is how readers skip A).
    assert!(sub.poll_batch(100).await.unwrap().is_empty(), "nothing past an open transaction");
    assert!(store.checkpoint_of(pos_b).await.unwrap().is_none());

    // An unrelated transaction with an id, opened before A commits.
    let mut u = PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut u).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut u).await.unwrap();

    sqlx::query("COMMIT").execute(&mut a).await.unwrap();
    // Now A and B are readable, A first (it began first), exactly once.
    expect(&mut sub, &[1, 2]).await;
    let after_b = sub.checkpoint();

    // D commits while U is still open: held back, not lost.
    append(&store, &s(), 3).await;
    assert!(sub.poll_batch(100).await.unwrap().is_empty(), "held back behind the unrelated transaction");
    sqlx::query("ROLLBACK").execute(&mut u).await.unwrap();
    expect(&mut sub, &[3]).await;
    assert!(sub.poll_batch(100).await.unwrap().is_empty());

    // A restart from a checkpoint resumes without loss or repeat.
    let mut restarted = subscribe(store.clone(), after_b, LogFilter::all());
    expect(&mut restarted, &[3]).await;
    let mut from_start = subscribe(store.clone(), Checkpoint::START, LogFilter::all());
    expect(&mut from_start, &[0, 1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_subscriber_wakes_when_the_blocking_transaction_commits() {
    let (_db, store, url) = fresh_postgres().await;
    let mut a = PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut a).await.unwrap();
    append_in(&mut a, &format!("il-{}", Uuid::now_v7()), 1).await;
    append(&store, &format!("il-{}", Uuid::now_v7()), 2).await;
    let mut sub = subscribe(store.clone(), Checkpoint::START, LogFilter::all());
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.extend(sub.next_batch(10).await.unwrap());
        }
        seen
    });
    sqlx::query("COMMIT").execute(&mut a).await.unwrap();
    let seen = reader.await.unwrap();
    assert_eq!(ns(&seen), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_writers_and_a_live_subscriber_see_every_event_once_in_order() {
    const WRITERS: usize = 8;
    const EACH: i64 = 2_000;
    let (_db, store, _) = fresh_postgres().await;
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut sub = subscribe(store, Checkpoint::START, LogFilter::all());
            let mut seen = Vec::with_capacity(WRITERS * EACH as usize);
            while seen.len() < WRITERS * EACH as usize {
                seen.extend(sub.next_batch(1_000).await.unwrap());
            }
            // nothing more than what was written
            assert!(sub.poll_batch(10).await.unwrap().is_empty());
            seen
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let s = format!("stress-{}", Uuid::now_v7());
                for n in 0..EACH {
                    let expected = if n == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(n - 1) };
                    let e = NewEvent {
                        event_id: Uuid::now_v7(),
                        event_type: "E".into(),
                        schema_version: 1,
                        data: json!({"w": w, "n": n}),
                    };
                    store
                        .append(
                            &AppendMeta::new(Uuid::now_v7(), None),
                            vec![StreamAppend { stream: s.clone(), expected, events: vec![e] }],
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let seen = reader.await.unwrap();
    assert_eq!(seen.len(), WRITERS * EACH as usize);
    let ids: HashSet<_> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), seen.len(), "no duplicates");
    assert!(seen.windows(2).all(|w| w[0].checkpoint() < w[1].checkpoint()), "strictly in global order");
    let mut next: HashMap<&str, i64> = HashMap::new();
    for e in &seen {
        let v = next.entry(e.stream.as_str()).or_insert(0);
        assert_eq!(e.version, *v, "each stream in version order without gaps");
        *v += 1;
    }
    assert_eq!(next.len(), WRITERS);
    assert!(next.values().all(|v| *v == EACH));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn category_reads_without_a_category_index_return_that_category_in_global_order() {
    let (db, store, _) = fresh_postgres().await;
    let mut last = 0;
    for c in 0..20 {
        let events = (0..200)
            .map(|n| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "E".into(),
                schema_version: 1,
                data: json!({"n": n}),
            })
            .collect();
        last = store
            .append(
                &AppendMeta::new(Uuid::now_v7(), None),
                vec![StreamAppend {
                    stream: format!("cat{c}-{}", Uuid::now_v7()),
                    expected: ExpectedVersion::NoStream,
                    events,
                }],
            )
            .await
            .unwrap()
            .last_position();
    }
    let gather_store::Db::Postgres(pool) = &db else { unreachable!() };
    let indexes: Vec<String> = sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE tablename = 'events'")
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(!indexes.iter().any(|i| i == "events_category_order"), "{indexes:?}");
    // Other tests' transactions may briefly hold the readable head back.
    let wait = async {
        while store.checkpoint_of(last).await.unwrap().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait).await.unwrap();
    use futures::TryStreamExt;
    let seven: Vec<_> =
        store.read_log(Checkpoint::START, LogFilter::categories(&["cat7"])).try_collect().await.unwrap();
    assert_eq!(seven.len(), 200);
    assert!(seven.iter().all(|e| e.category() == "cat7"));
    assert!(seven.windows(2).all(|w| w[0].checkpoint() < w[1].checkpoint()));
    assert_eq!(ns(&seven), (0..200).collect::<Vec<i64>>());
}
