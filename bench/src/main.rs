//! `gather-bench`: the event store on this machine's Postgres, side by side with raw
//! INSERTs into a table of the same shape (the physical limit), and the read side
//! (issue 9) against its floors.
//!
//! Run: `cargo run --release -p gather-bench -- [--seconds 3] [--writers 1,4,16,64]
//! [--only SECTION,…] [--scale 0.1] [--rate 200]` (`GATHER_BENCH_PG` overrides
//! `postgres://postgres@127.0.0.1:5432`). Sections: `appends`, `read`, `bookings`,
//! `snapshot`, `catchup` (the write side, on one log), `rebuild`, `ryw`, `search` (the
//! read side, each on databases of its own), `login` (a login flood), `series`
//! (materializing 1,000 published series), `push` (POST booking → WebSocket frame over
//! RabbitMQ), `relay` (outbox → RabbitMQ throughput) and `http` (the release `gather`
//! binary as a child process loaded by `wrk` at 64 connections: a GET, a search and
//! bookings, against a bare axum + sqlx handler and the store's append rate; needs `wrk`
//! and `cargo build --release -p gather-api --bin gather`); all by default. It creates and
//! drops its own databases and prints Markdown tables with the ratios. `push` and
//! `relay` use the RabbitMQ vhost `gather-bench` (created with `rabbitmqctl` if missing,
//! its queues deleted first; `GATHER_BENCH_AMQP` overrides
//! `amqp://guest:guest@127.0.0.1:5672`).

use anyhow::Context as _;
use futures::TryStreamExt;
use gather_commands::store::postgres::PostgresStore;
use gather_commands::store::{
    AppendMeta, Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, Snapshot, StreamAppend,
};
use gather_commands::{CommandHandler, Db};
use gather_domain::Aggregate;
use gather_domain::member::{Member, MemberEvent};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

mod app;
mod bookings;
mod distribution;
mod http;
mod login_flood;
mod postgres_es;
mod read_rebuild;
mod rebuild;
mod ryw;
mod search;
mod seed;
mod series;

/// Every section, in the order they run.
const SECTIONS: &[&str] = &[
    "appends", "read", "bookings", "snapshot", "catchup", "rebuild", "ryw", "search", "login", "series", "push",
    "relay", "http", "sealing",
];

/// One measured cell.
pub struct Cell {
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "BenchEvent".into(),
        schema_version: 1,
        data: json!({"n": n, "note": "a small payload of a typical size"}),
    }
}

/// Runs `writers` tasks for `secs`, each calling `op(writer, i)` (which appends `batch`
/// events) in a loop; returns throughput and latency.
pub(crate) async fn run<F, Fut>(writers: usize, secs: f64, batch: usize, op: F) -> Cell
where
    F: Fn(usize, i64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0i64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    op(w, i).await.expect("append");
                    lat.push(t.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    Cell {
        events_per_s: (all.len() * batch) as f64 / elapsed,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
    }
}

async fn ours(store: Arc<dyn EventStore>, writers: usize, secs: f64, batch: usize) -> Cell {
    let streams: Arc<Vec<String>> = Arc::new((0..writers).map(|_| format!("bench-{}", Uuid::now_v7())).collect());
    run(writers, secs, batch, move |w, i| {
        let (store, streams) = (store.clone(), streams.clone());
        async move {
            let expected =
                if i == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(i * batch as i64 - 1) };
            let events = (0..batch as i64).map(|k| event(i * batch as i64 + k)).collect();
            let append = StreamAppend { stream: streams[w].clone(), expected, events };
            store.append(&AppendMeta::new(Uuid::now_v7(), None), vec![append]).await?;
            Ok(())
        }
    })
    .await
}

/// Single-event appends of a member event with personal fields (`ChildAdded`: name and
/// birth date), each writer on its own member stream: sealed by the vault (warm key
/// cache, as in a running server) or plain.
async fn member_appends(
    store: Arc<dyn EventStore>,
    vault: Option<Arc<gather_commands::store::Vault>>,
    writers: usize,
    secs: f64,
) -> Cell {
    let members: Arc<Vec<Uuid>> = Arc::new((0..writers).map(|_| Uuid::now_v7()).collect());
    run(writers, secs, 1, move |w, i| {
        let (store, members, vault) = (store.clone(), members.clone(), vault.clone());
        async move {
            let member = members[w];
            let event = MemberEvent::ChildAdded {
                child_id: Uuid::now_v7(),
                name: gather_domain::values::ChildName::parse(&format!("Child number {i}"))?.into(),
                birth_date: chrono::NaiveDate::from_ymd_opt(2018, 4, 2).unwrap_or_default().into(),
            };
            let mut new = gather_commands::codec::encode(&event)?;
            if let Some(vault) = &vault {
                vault.seal(member, &event, &mut new).await?;
            }
            let expected = if i == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(i - 1) };
            let append = StreamAppend { stream: format!("member-{member}"), expected, events: vec![new] };
            store.append(&AppendMeta::new(Uuid::now_v7(), None), vec![append]).await?;
            Ok(())
        }
    })
    .await
}

/// The cost of sealing personal fields on the append path (issue 13): plain and sealed
/// single-event member appends at 16 writers, alternated twice in one run.
async fn sealing(store: &Arc<dyn EventStore>, url: &str, secs: f64) -> anyhow::Result<()> {
    let db = Db::connect(url).await?;
    let kek = gather_commands::store::Kek::from_bytes([7; 32]);
    let vault = gather_commands::store::Vault::open(db, &kek, b"bench-lookup-key-bench-lookup-key-0123").await?;
    println!("\n## Sealing personal fields on the append path (ChildAdded, 1 event per append), {secs} s per cell\n");
    println!(
        "| writers | round | plain (events/s, p50 / p99 ms) | sealed | sealed / plain |\n|---:|---:|---:|---:|---:|"
    );
    let (mut plain_total, mut sealed_total) = (0.0, 0.0);
    for round in 1..=2 {
        let plain = member_appends(store.clone(), None, 16, secs).await;
        let sealed = member_appends(store.clone(), Some(vault.clone()), 16, secs).await;
        let fmt = |c: &Cell| format!("{:.0} ({:.2} / {:.2})", c.events_per_s, c.p50_ms, c.p99_ms);
        println!(
            "| 16 | {round} | {} | {} | {:.2}× |",
            fmt(&plain),
            fmt(&sealed),
            sealed.events_per_s / plain.events_per_s
        );
        plain_total += plain.events_per_s;
        sealed_total += sealed.events_per_s;
    }
    println!(
        "| 16 | both | {:.0} | {:.0} | **{:.2}×** |",
        plain_total / 2.0,
        sealed_total / 2.0,
        sealed_total / plain_total
    );

    // Reading that log (half of it sealed) through the vault against reading it raw.
    let sealed_store: Arc<dyn EventStore> = Arc::new(gather_commands::store::Sealed::new(store.clone(), vault.clone()));
    let count = |s: Arc<dyn EventStore>| async move {
        let t = Instant::now();
        let n = s
            .read_log(Checkpoint::START, LogFilter::categories(&["member"]))
            .try_fold(0usize, |n, _| async move { Ok(n + 1) })
            .await?;
        anyhow::Ok((n, n as f64 / t.elapsed().as_secs_f64()))
    };
    let (mut raw_rate, mut opened_rate, mut n) = (0.0, 0.0, 0);
    for _ in 0..2 {
        let (k, r) = count(store.clone()).await?;
        let (_, o) = count(sealed_store.clone()).await?;
        (raw_rate, opened_rate, n) = (raw_rate + r / 2.0, opened_rate + o / 2.0, k);
    }
    println!(
        "\n| global read of those {n} member events | raw | opened by the vault | opened / raw |\n|---|---:|---:|---:|"
    );
    println!("| events/s (mean of 2) | {raw_rate:.0} | {opened_rate:.0} | {:.2}× |", opened_rate / raw_rate);
    Ok(())
}

async fn raw(pool: PgPool, writers: usize, secs: f64, batch: usize) -> Cell {
    let streams: Arc<Vec<String>> = Arc::new((0..writers).map(|_| format!("bench-{}", Uuid::now_v7())).collect());
    run(writers, secs, batch, move |w, i| {
        let (pool, streams) = (pool.clone(), streams.clone());
        async move {
            let versions: Vec<i64> = (0..batch as i64).map(|k| i * batch as i64 + k).collect();
            let ids: Vec<Uuid> = (0..batch).map(|_| Uuid::now_v7()).collect();
            let datas: Vec<serde_json::Value> = versions.iter().map(|n| json!({"n": n, "note": "a small payload of a typical size"})).collect();
            sqlx::query(
                "INSERT INTO raw_events (stream, category, version, event_id, event_type, schema_version, data, \
                 command_id, correlation_id) \
                 SELECT $1, 'bench', v, id, 'BenchEvent', 1, d, $4, $4 FROM unnest($2::bigint[], $3::uuid[], $5::jsonb[]) AS t(v, id, d)",
            )
            .bind(&streams[w])
            .bind(&versions)
            .bind(&ids)
            .bind(Uuid::now_v7())
            .bind(&datas)
            .execute(&pool)
            .await?;
            Ok(())
        }
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let secs: f64 = arg("--seconds").map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let scale: f64 = arg("--scale").map(|s| s.parse()).transpose()?.unwrap_or(0.1);
    let rate: f64 = arg("--rate").map(|s| s.parse()).transpose()?.unwrap_or(200.0);
    anyhow::ensure!(scale > 0.0 && rate > 0.0 && secs > 0.0, "--seconds, --scale and --rate must be positive");
    let writer_counts: Vec<usize> = arg("--writers")
        .unwrap_or_else(|| "1,4,16,64".into())
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let only: Vec<String> = match arg("--only") {
        Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        None => SECTIONS.iter().map(|s| s.to_string()).collect(),
    };
    if let Some(bad) = only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        anyhow::bail!("unknown section {bad:?} (expected some of {})", SECTIONS.join(","));
    }
    let on = |s: &str| only.iter().any(|o| o == s);
    let base = std::env::var("GATHER_BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{base}/postgres"))
        .await
        .context("connect to Postgres")?;
    let name = format!("gather_bench_{}", Uuid::new_v4().simple());
    let mut dbs = Vec::new();
    let mut create = async |suffix: &str| -> anyhow::Result<String> {
        let db = format!("{name}{suffix}");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin).await?;
        dbs.push(db.clone());
        Ok(format!("{base}/{db}"))
    };
    let result = async {
        if ["appends", "read", "bookings", "snapshot", "catchup", "sealing"].iter().any(|s| on(s)) {
            let (url, es_url) = (create("").await?, create("_es").await?);
            bench(&url, &es_url, secs, &writer_counts, &on).await?;
        }
        if on("rebuild") {
            read_rebuild::run(&create("_rebuild").await?, scale).await?;
        }
        if on("ryw") {
            ryw::run(&create("_ryw").await?, secs, rate).await?;
        }
        if on("search") {
            search::run(&create("_search").await?, scale, secs).await?;
        }
        if on("login") {
            login_flood::run(secs, 50).await?;
        }
        if on("series") {
            series::run(&create("_series").await?, 1000).await?;
        }
        if on("push") {
            distribution::push(&create("_push").await?, secs, rate).await?;
        }
        if on("relay") {
            distribution::relay(&create("_relay").await?).await?;
        }
        if on("http") {
            http::run(&create("_http").await?, &create("_http_appends").await?, secs).await?;
        }
        anyhow::Ok(())
    }
    .await;
    for db in dbs {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db} WITH (FORCE)"))).execute(&admin).await;
    }
    result
}

async fn bench(
    url: &str,
    es_url: &str,
    secs: f64,
    writer_counts: &[usize],
    on: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    Db::connect(url).await?.migrate().await?;
    let max = writer_counts.iter().copied().max().unwrap_or(1) as u32 + 4;
    let pool = PgPoolOptions::new().max_connections(max).connect(url).await?;
    sqlx::query("CREATE TABLE raw_events (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY)").execute(&pool).await?;
    sqlx::query("ALTER TABLE raw_events ADD PRIMARY KEY (position)").execute(&pool).await?;
    let store: Arc<dyn EventStore> = Arc::new(PostgresStore::new(pool.clone()));

    if on("appends") {
        appends(&store, &pool, es_url, secs, writer_counts).await?;
    }
    if on("sealing") {
        sealing(&store, url, secs).await?;
    }
    if on("read") {
        global_read(&store, &pool).await?;
    }
    // Loaded before the bookings, printed after them (as in earlier runs).
    let snapshot = if on("snapshot") { Some(snapshot_load(&store).await?) } else { None };
    if on("bookings") {
        booking_commands(&store, secs).await?;
    }
    if let Some((without, with)) = snapshot {
        println!("\n## Loading a 10,000-event stream\n");
        println!("| without snapshot | with snapshot | speed-up |\n|---:|---:|---:|");
        println!("| {:.2} ms | {:.2} ms | {:.1}× |", without * 1000.0, with * 1000.0, without / with);
    }
    if on("catchup") {
        rebuild::run(url, store.clone()).await?;
    }
    Ok(())
}

async fn appends(
    store: &Arc<dyn EventStore>,
    pool: &PgPool,
    es_url: &str,
    secs: f64,
    writer_counts: &[usize],
) -> anyhow::Result<()> {
    println!("\n## Appends (events/s, p50 / p99 ms per append call), {secs} s per cell\n");
    println!(
        "| writers | ours 1-event (group commit) | raw 1-row INSERT | ratio | postgres-es 1-event command | ours / postgres-es | ours 10-event | raw 10-row INSERT | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &w in writer_counts {
        let o1 = ours(store.clone(), w, secs, 1).await;
        let r1 = raw(pool.clone(), w, secs, 1).await;
        let es = postgres_es::run(es_url, w, secs).await?;
        let o10 = ours(store.clone(), w, secs, 10).await;
        let r10 = raw(pool.clone(), w, secs, 10).await;
        let fmt = |c: &Cell| format!("{:.0} ({:.2} / {:.2})", c.events_per_s, c.p50_ms, c.p99_ms);
        println!(
            "| {w} | {} | {} | {:.2}× | {} | {:.2}× | {} | {} | {:.2}× |",
            fmt(&o1),
            fmt(&r1),
            o1.events_per_s / r1.events_per_s,
            fmt(&es),
            o1.events_per_s / es.events_per_s,
            fmt(&o10),
            fmt(&r10),
            o10.events_per_s / r10.events_per_s
        );
    }
    Ok(())
}

async fn global_read(store: &Arc<dyn EventStore>, pool: &PgPool) -> anyhow::Result<()> {
    // Global read from the start against a raw ordered scan of the same rows.
    let t = Instant::now();
    let n =
        store.read_log(Checkpoint::START, LogFilter::all()).try_fold(0usize, |n, _| async move { Ok(n + 1) }).await?;
    let ours_read = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rows = sqlx::query(
        "SELECT position, commit_id, stream, version, event_id, event_type, schema_version, data, command_id, \
         correlation_id, causation_id, actor, recorded_at FROM events ORDER BY position",
    )
    .fetch(pool)
    .try_fold(0usize, |n, row| async move {
        // decode every column, as any client that uses the rows must
        use sqlx::Row;
        let _: (i64, i64, String, i64, Uuid, String, i32) = (
            row.try_get("position")?,
            row.try_get("commit_id")?,
            row.try_get("stream")?,
            row.try_get("version")?,
            row.try_get("event_id")?,
            row.try_get("event_type")?,
            row.try_get("schema_version")?,
        );
        let _: (serde_json::Value, Uuid, Uuid, Option<Uuid>, Option<Uuid>) = (
            row.try_get("data")?,
            row.try_get("command_id")?,
            row.try_get("correlation_id")?,
            row.try_get("causation_id")?,
            row.try_get("actor")?,
        );
        let _: sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc> = row.try_get("recorded_at")?;
        Ok(n + 1)
    })
    .await?;
    let raw_read = rows as f64 / t.elapsed().as_secs_f64();
    println!("\n## Global read from the start ({n} events)\n");
    println!("| ours (paged, gap-free, decoded) | raw SELECT … ORDER BY (decoded) | ratio |\n|---:|---:|---:|");
    println!("| {ours_read:.0} ev/s | {raw_read:.0} ev/s | {:.2}× |", ours_read / raw_read);
    Ok(())
}

/// Loading a 10,000-event stream without and with a snapshot (seconds per load).
async fn snapshot_load(store: &Arc<dyn EventStore>) -> anyhow::Result<(f64, f64)> {
    // Loading a 10,000-event stream with and without a snapshot.
    let handler = CommandHandler::new(store.clone()).with_snapshot_every(0);
    let id = Uuid::now_v7();
    let stream = format!("member-{id}");
    let mut events = vec![gather_commands::codec::encode(&MemberEvent::MemberRegistered {
        member_id: id,
        email: (gather_domain::values::Email::parse("bench@example.com")?).into(),
        display_name: (gather_domain::values::DisplayName::parse("Bench")?).into(),
    })?];
    for i in 1..10_000 {
        let name = gather_domain::values::DisplayName::parse(&format!("Name {i}"))?;
        events.push(gather_commands::codec::encode(&MemberEvent::ProfileUpdated { display_name: name.into() })?);
    }
    for (k, chunk) in events.chunks(1000).enumerate() {
        let expected = if k == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(k as i64 * 1000 - 1) };
        store
            .append(
                &AppendMeta::new(Uuid::now_v7(), None),
                vec![StreamAppend { stream: stream.clone(), expected, events: chunk.to_vec() }],
            )
            .await?;
    }
    let runs = 5;
    let t = Instant::now();
    for _ in 0..runs {
        handler.load::<Member>(id).await?;
    }
    let without = t.elapsed().as_secs_f64() / runs as f64;
    let state = handler.load::<Member>(id).await?.state;
    store
        .save_snapshot(
            &stream,
            &Snapshot {
                version: 9_999,
                state_version: Member::STATE_VERSION as i32,
                state: serde_json::to_value(&state)?,
            },
        )
        .await?;
    let t = Instant::now();
    for _ in 0..runs {
        handler.load::<Member>(id).await?;
    }
    let with = t.elapsed().as_secs_f64() / runs as f64;
    Ok((without, with))
}

async fn booking_commands(store: &Arc<dyn EventStore>, secs: f64) -> anyhow::Result<()> {
    println!("\n## Booking commands through the handler, 16 clients\n");
    println!("| | bookings/s | p50 ms | p99 ms | conflicts retried |\n|---|---:|---:|---:|---:|");
    let booking_handler = CommandHandler::new(store.clone());
    let (hot, hot_conflicts) = bookings::run(booking_handler.clone(), secs, true).await?;
    let (spread, spread_conflicts) = bookings::run(booking_handler, secs, false).await?;
    println!(
        "| one hot activity | {:.0} | {:.2} | {:.2} | {hot_conflicts} |",
        hot.events_per_s, hot.p50_ms, hot.p99_ms
    );
    println!(
        "| 16 activities | {:.0} | {:.2} | {:.2} | {spread_conflicts} |",
        spread.events_per_s, spread.p50_ms, spread.p99_ms
    );
    println!("| hot / spread | {:.2}× | | | |", hot.events_per_s / spread.events_per_s);
    Ok(())
}
