//! Postgres: the three holes a review found in the log, each driven through real
//! sessions — a logical restore into a cluster with lower transaction ids, a batch that
//! waits on a stream lock and then appends with an older id, and group commits that
//! touch the same streams in opposite orders.

use crate::support::{fresh_postgres, pg_base};
use futures::TryStreamExt;
use gather_store::postgres::{BatchMember, PostgresStore, append_batch, rebase};
use gather_store::{AppendMeta, Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, StreamAppend, subscribe};
use gather_store::{Db, RecordedEvent};
use rand::Rng;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn event(n: i64) -> NewEvent {
    NewEvent { event_id: Uuid::now_v7(), event_type: "E".into(), schema_version: 1, data: json!({"n": n}) }
}

fn member(stream: &str, expected: ExpectedVersion, n: i64) -> BatchMember {
    BatchMember {
        meta: AppendMeta::new(Uuid::now_v7(), None),
        appends: vec![StreamAppend { stream: stream.into(), expected, events: vec![event(n)] }],
    }
}

/// Every event of the log, read straight from the table in the log's order.
async fn whole_log(url: &str) -> Vec<(String, i64)> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_as("SELECT stream, version FROM events ORDER BY commit_id, position")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Panics unless every stream's events appear in the log in version order, without gaps.
fn assert_streams_in_version_order(log: &[(String, i64)]) {
    let mut next: HashMap<&str, i64> = HashMap::new();
    for (stream, version) in log {
        let want = next.entry(stream.as_str()).or_insert(0);
        assert_eq!(*version, *want, "{stream} v{version} appears in the log where v{want} should: {log:?}");
        *want += 1;
    }
}

/// Waits until the session `pid` is blocked on a lock, or (with `or_idle`) has finished its statement.
async fn wait_blocked(url: &str, pid: i32, or_idle: bool) -> bool {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let wait = async {
        loop {
            let row: Option<(Option<String>, Option<String>)> =
                sqlx::query_as("SELECT state, wait_event_type FROM pg_stat_activity WHERE pid = $1")
                    .bind(pid)
                    .fetch_optional(&mut conn)
                    .await
                    .unwrap();
            let Some((state, wait)) = row else { return false };
            if wait.as_deref() == Some("Lock") {
                return true;
            }
            if or_idle && state.as_deref().is_some_and(|s| s.starts_with("idle")) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("the session blocks or finishes within 10 s")
}

async fn session(url: &str) -> (PgConnection, i32) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut conn).await.unwrap();
    (conn, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_waits_on_a_stream_never_appends_behind_a_younger_transaction() {
    let (_db, store, url) = fresh_postgres().await;
    let (t, s) = (format!("t-{}", Uuid::now_v7()), format!("s-{}", Uuid::now_v7()));
    for stream in [&t, &s] {
        store
            .append(
                &AppendMeta::new(Uuid::now_v7(), None),
                vec![StreamAppend {
                    stream: stream.clone(),
                    expected: ExpectedVersion::NoStream,
                    events: vec![event(0)],
                }],
            )
            .await
            .unwrap();
    }
    // Z holds stream T open.
    let (mut z, _) = session(&url).await;
    sqlx::query("BEGIN").execute(&mut z).await.unwrap();
    append_batch(&mut z, &[member(&t, ExpectedVersion::Any, 1)]).await.unwrap().pop().unwrap().unwrap();
    // Batch A = [T exists, S any] blocks on T.
    let (mut a, a_pid) = session(&url).await;
    let batch_a = tokio::spawn({
        let (t, s) = (t.clone(), s.clone());
        async move {
            append_batch(&mut a, &[member(&t, ExpectedVersion::StreamExists, 2), member(&s, ExpectedVersion::Any, 2)])
                .await
        }
    });
    // Not `or_idle`: A is idle until its task has sent the batch, and it must block.
    // (Awaiting A here would hang: Z holds T until the COMMIT below.)
    if !wait_blocked(&url, a_pid, false).await {
        panic!("batch A did not wait for stream T");
    }
    // B appends to S on its own (it may finish, or wait behind A: either is correct).
    let (mut b, b_pid) = session(&url).await;
    let batch_b = tokio::spawn({
        let s = s.clone();
        async move { append_batch(&mut b, &[member(&s, ExpectedVersion::Any, 3)]).await }
    });
    wait_blocked(&url, b_pid, true).await;
    sqlx::query("COMMIT").execute(&mut z).await.unwrap();
    for r in batch_a.await.unwrap().unwrap().into_iter().chain(batch_b.await.unwrap().unwrap()) {
        r.unwrap();
    }
    let log = whole_log(&url).await;
    assert_eq!(log.len(), 6);
    assert_streams_in_version_order(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commits_over_hot_streams_in_any_order_never_deadlock() {
    const COMMITTERS: usize = 4;
    const BATCHES: usize = 100;
    let (_db, store, url) = fresh_postgres().await;
    // A deadlock costs deadlock_timeout before Postgres breaks it: keep that short here.
    let db_name = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = PgConnection::connect(&format!("{}/postgres", pg_base())).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {db_name} SET deadlock_timeout = '20ms'")))
        .execute(&mut admin)
        .await
        .unwrap();
    let hot: Arc<Vec<String>> = Arc::new((0..4).map(|k| format!("hot{k}-{}", Uuid::now_v7())).collect());
    for stream in hot.iter() {
        store
            .append(
                &AppendMeta::new(Uuid::now_v7(), None),
                vec![StreamAppend {
                    stream: stream.clone(),
                    expected: ExpectedVersion::NoStream,
                    events: vec![event(0)],
                }],
            )
            .await
            .unwrap();
    }
    let committers: Vec<_> = (0..COMMITTERS)
        .map(|_| {
            let (url, hot) = (url.clone(), hot.clone());
            tokio::spawn(async move {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                let (mut deadlocks, mut appended) = (0usize, 0usize);
                for _ in 0..BATCHES {
                    let batch: Vec<BatchMember> = {
                        let mut rng = rand::rng();
                        let size = rng.random_range(2..=8);
                        (0..size)
                            .map(|_| {
                                let expected = if rng.random_bool(0.5) {
                                    ExpectedVersion::Any
                                } else {
                                    ExpectedVersion::StreamExists
                                };
                                member(&hot[rng.random_range(0..hot.len())], expected, 1)
                            })
                            .collect()
                    };
                    match append_batch(&mut conn, &batch).await {
                        Ok(results) => {
                            for r in results {
                                r.unwrap();
                                appended += 1;
                            }
                        }
                        Err(gather_store::StoreError::Database(sqlx::Error::Database(e)))
                            if e.code().as_deref() == Some("40P01") =>
                        {
                            deadlocks += 1
                        }
                        Err(e) => panic!("batch failed: {e:?}"),
                    }
                }
                (deadlocks, appended)
            })
        })
        .collect();
    let (mut deadlocks, mut appended) = (0, 0);
    for c in committers {
        let (d, a) = c.await.unwrap();
        deadlocks += d;
        appended += a;
    }
    assert_eq!(deadlocks, 0, "{deadlocks} of {} batches deadlocked", COMMITTERS * BATCHES);
    let log = whole_log(&url).await;
    assert_eq!(log.len(), appended + hot.len());
    assert_streams_in_version_order(&log);
}

/// Copies the database at `from` into a new database with `pg_dump | psql`, as an
/// operator moving a store to another cluster would.
async fn dump_and_restore(from: &str) -> String {
    let name = format!("gather_it_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&format!("{}/postgres", pg_base())).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let to = format!("{}/{name}", pg_base());
    let cmd = format!("pg_dump --no-owner '{from}' | psql -q -v ON_ERROR_STOP=1 '{to}'");
    let out = tokio::process::Command::new("sh").arg("-c").arg(&cmd).output().await.expect("pg_dump and psql run");
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    to
}

async fn ns(store: &Arc<dyn EventStore>, after: Checkpoint) -> Vec<i64> {
    let events: Vec<RecordedEvent> = store.read_log(after, LogFilter::all()).try_collect().await.unwrap();
    events.iter().map(|e| e.data["n"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moved_to_a_cluster_with_lower_transaction_ids_is_rebased_and_loses_nothing() {
    let (old_db, old_store, old_url) = fresh_postgres().await;
    let stream = format!("moved-{}", Uuid::now_v7());
    for n in 0..3 {
        let expected = if n == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(n - 1) };
        old_store
            .append(
                &AppendMeta::new(Uuid::now_v7(), None),
                vec![StreamAppend { stream: stream.clone(), expected, events: vec![event(n)] }],
            )
            .await
            .unwrap();
    }
    // The old cluster had seen millions more transactions than the new one has.
    let Db::Postgres(old_pool) = &old_db else { unreachable!() };
    let mut conn = old_pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica").execute(&mut *conn).await.unwrap();
    sqlx::query("UPDATE events SET commit_id = commit_id + 50000000").execute(&mut *conn).await.unwrap();
    drop(conn);
    drop(old_store);
    // A projector had read everything: its checkpoint is the last event's.
    let checkpoint: (i64, i64) =
        sqlx::query_as("SELECT commit_id, position FROM events ORDER BY commit_id DESC, position DESC LIMIT 1")
            .fetch_one(old_pool)
            .await
            .unwrap();
    let checkpoint = Checkpoint { commit_id: checkpoint.0, position: checkpoint.1 };

    let new_url = dump_and_restore(&old_url).await;
    let new_db = Db::connect(&new_url).await.unwrap();
    new_db.migrate().await.unwrap();
    let Db::Postgres(pool) = &new_db else { unreachable!() };
    let moved = rebase(pool).await.unwrap();
    let store: Arc<dyn EventStore> = Arc::new(PostgresStore::new(pool.clone()));
    // The restored history is readable from the start…
    tokio::time::timeout(Duration::from_secs(10), async {
        while ns(&store, Checkpoint::START).await.len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the restored history becomes readable");
    // …and a new event comes after the projector's checkpoint, not before it.
    let r = store
        .append(
            &AppendMeta::new(Uuid::now_v7(), None),
            vec![StreamAppend { stream: stream.clone(), expected: ExpectedVersion::Exact(2), events: vec![event(3)] }],
        )
        .await
        .unwrap();
    let mut sub = subscribe(store.clone(), checkpoint, LogFilter::all());
    let next = tokio::time::timeout(Duration::from_secs(10), sub.next_batch(10))
        .await
        .expect("the new event reaches a subscriber resuming from its checkpoint")
        .unwrap();
    assert_eq!(next.iter().map(|e| e.data["n"].as_i64().unwrap()).collect::<Vec<_>>(), vec![3]);
    assert_eq!(next[0].position, r.last_position());
    assert_eq!(ns(&store, Checkpoint::START).await, vec![0, 1, 2, 3]);
    assert!(moved.new_offset > moved.old_offset, "{moved:?}");
    // Rebasing again changes nothing that readers see.
    rebase(pool).await.unwrap();
    assert_eq!(ns(&store, Checkpoint::START).await, vec![0, 1, 2, 3]);
    // The store owns commit_id: an explicit value is refused.
    let explicit = sqlx::query(
        "INSERT INTO events (commit_id, stream, category, version, event_id, event_type, schema_version, data, \
         command_id, correlation_id) VALUES (1, 'x-1', 'x', 0, gen_random_uuid(), 'E', 1, '{}', gen_random_uuid(), \
         gen_random_uuid())",
    )
    .execute(pool)
    .await;
    assert!(explicit.is_err(), "an explicit commit_id was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_names_the_oldest_writing_transaction_of_the_cluster() {
    let (db, _store, url) = fresh_postgres().await;
    let Db::Postgres(pool) = &db else { unreachable!() };
    // Another application's transaction, in another database, takes an id and stays open.
    let app = format!("fence-{}", Uuid::now_v7().simple());
    let mut other = PgConnection::connect(&format!("{}/postgres?application_name={app}", pg_base())).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut other).await.unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut other).await.unwrap();
    // Other tests' transactions come and go; ours becomes the oldest.
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(f) = gather_store::postgres::fence(pool).await.unwrap()
                && f.pid == pid
            {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the open transaction is reported as the fence");
    assert_eq!(found.application_name, app);
    assert_eq!(found.database.as_deref(), Some("postgres"));
    assert_eq!(found.state.as_deref(), Some("idle in transaction"));
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let after = gather_store::postgres::fence(pool).await.unwrap();
    assert!(after.as_ref().is_none_or(|f| f.pid != pid), "a finished transaction is still reported: {after:?}");
    let _ = url;
}
