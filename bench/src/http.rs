//! HTTP load on a real Gather: the release `gather` binary as a child process (production
//! profile: Postgres, in-process bus) on loopback, loaded by `wrk` (a separate process,
//! 2 threads, 64 connections) with:
//!
//! - `GET /v1/activities/{id}` of one published public activity, as a guest;
//! - a search, `GET /v1/activities?q=yoga&limit=20`;
//! - the baseline, in the same run: a bare axum + sqlx handler in this process, on another
//!   loopback port, reading the same row of the same `activities` read model (the query of
//!   `queries::activity`) from the same database with a pool of the same size (32) and
//!   answering it as JSON the way Gather's handler does; and, for the search, the same
//!   search (`search::search`, Gather's own SQL) called from a bare handler on that pool;
//! - `POST /v1/activities/{id}/bookings` spread over 1,000 published activities by 256
//!   members (each request a (member, activity) pair not booked before, with its own
//!   `Idempotency-Key`), against the store's append rate (1-event appends, 64 writers,
//!   each on its own stream; and raw 1-row INSERTs) measured in the same run;
//!
//! and the server's resident memory (`VmRSS` sampled every 50 ms while loaded, `VmHWM`,
//! and 5 s after the load). Nothing is installed: `wrk` must be on the `PATH`
//! (`GATHER_BENCH_WRK` overrides), and the server binary is found beside this one (or at
//! `GATHER_BENCH_SERVER`).

use crate::Cell;
use crate::seed::{CITIES, KINDS, Rng};
use anyhow::Context as _;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gather_commands::Db;
use gather_commands::store::EventStore;
use gather_commands::store::postgres::PostgresStore;
use gather_projections::search::{SearchQuery, Sort, search};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

const CONNECTIONS: usize = 64;
const THREADS: usize = 2;
const ACTIVITIES: usize = 1000;
const MEMBERS: usize = 256;
const WARMUP_SECS: u64 = 2;
const MODERATOR: (&str, &str) = ("mod@gather.bench", "moderator-password");
const PASSWORD: &str = "bench-password-123";
/// The search word (one kind of 16: ~60 of the 1,000 titles).
const WORD: &str = "yoga";

/// One `wrk` run, as its Lua `done` reports it.
#[derive(serde::Deserialize, Debug, Default, Clone)]
struct WrkResult {
    requests: u64,
    duration_us: u64,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeout: u64,
    p50_us: f64,
    p99_us: f64,
}

impl WrkResult {
    fn per_s(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }
    fn errors(&self) -> u64 {
        self.connect + self.read + self.write + self.status + self.timeout
    }
    fn ok(&self) -> u64 {
        self.requests.saturating_sub(self.status)
    }
}

/// Prints wrk's summary as one JSON line (latencies in µs).
const DONE_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\"requests\":%d,\"duration_us\":%d,\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d,\"p50_us\":%d,\"p99_us\":%d}\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

fn wrk_path() -> String {
    std::env::var("GATHER_BENCH_WRK").unwrap_or_else(|_| "wrk".into())
}

/// Fails with how to install it if `wrk` cannot be run.
async fn check_wrk() -> anyhow::Result<()> {
    let wrk = wrk_path();
    match tokio::process::Command::new(&wrk).arg("--version").output().await {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            anyhow::ensure!(text.contains("wrk"), "{wrk} --version printed {text:?}, not wrk's banner");
            println!("load generator: {}", text.lines().next().unwrap_or("wrk").trim());
            Ok(())
        }
        Err(e) => anyhow::bail!(
            "the http section needs the load generator wrk ({wrk}: {e}); install it (Debian/Ubuntu: \
             `apt-get install -y wrk`) or point GATHER_BENCH_WRK at it"
        ),
    }
}

/// The release `gather` binary: `GATHER_BENCH_SERVER`, else beside this binary.
fn server_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("GATHER_BENCH_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let beside = std::env::current_exe()?.with_file_name("gather");
    anyhow::ensure!(
        beside.exists(),
        "no Gather server binary at {}: build it with `cargo build --release -p gather-api --bin gather` \
         (same CARGO_TARGET_DIR as this bench) or set GATHER_BENCH_SERVER",
        beside.display()
    );
    Ok(beside)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// (VmRSS, VmHWM) of `pid` in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The Gather child process.
struct Server {
    child: tokio::process::Child,
    pid: u32,
    base: String,
    data_dir: PathBuf,
}

impl Server {
    async fn start(database_url: &str) -> anyhow::Result<Server> {
        let bin = server_binary()?;
        let port = free_port()?;
        let data_dir = std::env::temp_dir().join(format!("gather-bench-http-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir)?;
        let log = std::fs::File::create(data_dir.join("server.log"))?;
        let child = tokio::process::Command::new(&bin)
            .arg("serve")
            .env("GATHER_BIND", format!("127.0.0.1:{port}"))
            .env("GATHER_DATA_DIR", &data_dir)
            .env("GATHER_DATABASE_URL", database_url)
            .env("GATHER_JWT_SECRET", "bench-secret-bench-secret-bench-secret-0123")
            .env("GATHER_LOOKUP_KEY", "bench-lookup-key-bench-lookup-key-0123")
            .env("GATHER_KEK", "be4c".repeat(16))
            .env("GATHER_BOOTSTRAP_MODERATOR", format!("{}:{}", MODERATOR.0, MODERATOR.1))
            .env("GATHER_RATE_LIMIT_COMMANDS", "0")
            .env("GATHER_RATE_LIMIT_GUESTS", "0")
            .env("GATHER_RATE_LIMIT_AUTH", "0")
            .env_remove("GATHER_AMQP_URL")
            .env_remove("GATHER_ROLES")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let pid = child.id().context("server pid")?;
        println!("server: {} (pid {pid}), log {}", bin.display(), data_dir.join("server.log").display());
        let server = Server { child, pid, base: format!("http://127.0.0.1:{port}"), data_dir };
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = http.get(server.url("/health/ready")).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the server was not ready within 60 s (see {})", server.data_dir.join("server.log").display())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then up to 30 s for a graceful exit, then SIGKILL.
    async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// POST with an optional token, retrying 503/429 (busy password hashing) a few times.
async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: &Value) -> anyhow::Result<Value> {
    for attempt in 0.. {
        let mut req = http.post(url).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if (status.as_u16() == 503 || status.as_u16() == 429) && attempt < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        anyhow::ensure!(status.is_success(), "POST {url}: {status}: {body}");
        return Ok(body);
    }
    unreachable!()
}

fn token_of(body: &Value) -> anyhow::Result<String> {
    body["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no token in {body}"))
}

async fn register(server: &Server, http: &reqwest::Client, i: usize) -> anyhow::Result<String> {
    let body = json!({"email": format!("member{i}@gather.bench"), "password": PASSWORD, "display_name": format!("Member {i}")});
    token_of(&post(http, &server.url("/v1/auth/register"), None, &body).await?)
}

/// An organiser's token: registered, organiser profile created, logged in again once the
/// role shows.
async fn organiser(server: &Server, http: &reqwest::Client) -> anyhow::Result<String> {
    let token = register(server, http, 0).await?;
    post(http, &server.url("/v1/me/organiser"), Some(&token), &json!({"organisation_name": "Bench club"})).await?;
    for _ in 0..200 {
        let body = json!({"email": "member0@gather.bench", "password": PASSWORD});
        let res = post(http, &server.url("/v1/auth/login"), None, &body).await?;
        if res["roles"].as_array().is_some_and(|r| r.iter().any(|r| r == "organiser")) {
            return token_of(&res);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the organiser role never showed in a login")
}

/// One free public activity with room for every member: created, submitted, approved
/// (published). Returns (id, position of the approval).
async fn activity(
    server: &Server,
    http: &reqwest::Client,
    organiser: &str,
    moderator: &str,
    i: usize,
) -> anyhow::Result<(Uuid, i64)> {
    let mut rng = Rng::new(i as u64 + 1);
    let (kind, category, tags) = *rng.pick(KINDS);
    let (city, lat, lng) = *rng.pick(CITIES);
    let start = chrono::Utc::now() + chrono::Duration::days(7 + rng.below(300) as i64);
    let body = json!({
        "title": format!("{kind} in {city} #{i}"), "description": format!("Join us for {kind} in {city}."),
        "category": category, "tags": tags, "starts_at": start, "ends_at": start + chrono::Duration::hours(2),
        "capacity": 1000, "price": {"amount": 0, "currency": "EUR"}, "visibility": "public",
        "location": {"kind": "venue", "name": format!("{city} hall"), "address": "1 Main St", "lat": lat, "lng": lng},
        "waitlist": false
    });
    let created = post(http, &server.url("/v1/activities"), Some(organiser), &body).await?;
    let id: Uuid = created["id"].as_str().unwrap_or_default().parse()?;
    post(http, &server.url(&format!("/v1/activities/{id}/submit")), Some(organiser), &json!({})).await?;
    let approved =
        post(http, &server.url(&format!("/v1/activities/{id}/approve")), Some(moderator), &json!({})).await?;
    Ok((id, approved["position"].as_i64().unwrap_or(0)))
}

/// GET with `Gather-Min-Position`, retried while the read models catch up (503).
async fn get_at(http: &reqwest::Client, url: &str, position: i64) -> anyhow::Result<Value> {
    for _ in 0..60 {
        let res = http.get(url).header("Gather-Min-Position", position.to_string()).send().await?;
        if res.status().as_u16() == 503 {
            continue;
        }
        anyhow::ensure!(res.status().is_success(), "GET {url}: {}", res.status());
        return Ok(res.json().await?);
    }
    anyhow::bail!("GET {url}: the read models did not reach {position}")
}

/// The baseline: one axum route over a bare sqlx pool, reading the row Gather reads.
async fn bare_activity(State(pool): State<PgPool>, Path(id): Path<Uuid>) -> Result<Json<Value>, StatusCode> {
    type Row = (Uuid, Uuid, String, String, i64, i64, i64, sqlx::types::Json<Value>, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT activity_id, organiser_id, status, visibility, seats_left, favourites, confirmed, details, version \
         FROM activities WHERE activity_id = $1",
    )
    .bind(id)
    .fetch_optional(&pool)
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let (_, _, status, _, seats_left, favourites, confirmed, details, version) = row.ok_or(StatusCode::NOT_FOUND)?;
    let mut body = details.0;
    body["status"] = json!(status);
    body["seats_left"] = json!(seats_left);
    body["favourites"] = json!(favourites);
    body["confirmed_bookings"] = json!(confirmed);
    body["popularity"] = json!(favourites + confirmed);
    body["version"] = json!(version);
    Ok(Json(body))
}

/// The search baseline: the same search (`search::search`, Gather's SQL for `q` + relevance
/// + limit 20) called straight from a bare axum handler, answered as items + facets.
async fn bare_search(State(db): State<Arc<Db>>) -> Result<Json<Value>, StatusCode> {
    let query = SearchQuery {
        q: Some(WORD.to_owned()),
        category: None,
        from: None,
        to: None,
        age: None,
        free: None,
        online: None,
        near: None,
        seats: None,
        sort: Sort::Relevance,
        after: None,
        limit: 20,
    };
    let page = search(&db, &query).await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(json!({"items": page.items, "facets": page.facets})))
}

/// The baseline server: one pool of 32 connections (as Gather's), on a loopback port.
async fn start_baseline(database_url: &str) -> anyhow::Result<(String, Arc<Db>, tokio::task::JoinHandle<()>)> {
    let db = Arc::new(Db::connect(database_url).await?);
    let Db::Postgres(pool) = &*db else { anyhow::bail!("the baseline needs Postgres") };
    let router = axum::Router::new()
        .route("/v1/activities/{id}", axum::routing::get(bare_activity))
        .with_state(pool.clone())
        .merge(axum::Router::new().route("/v1/activities", axum::routing::get(bare_search)).with_state(db.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let join = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((format!("http://{addr}"), db, join))
}

/// Runs wrk for `secs` with `script` (which must define or get `done`).
async fn wrk(url: &str, script: &str, secs: u64, dir: &std::path::Path, name: &str) -> anyhow::Result<WrkResult> {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, format!("{script}\n{DONE_LUA}"))?;
    let out = tokio::process::Command::new(wrk_path())
        .args(["-t", &THREADS.to_string(), "-c", &CONNECTIONS.to_string(), "-d", &format!("{secs}s")])
        .args(["--timeout", "10s", "-s"])
        .arg(&path)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .context("run wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .ok_or_else(|| anyhow::anyhow!("no summary in wrk's output: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

/// A booking script: request k (thread t sends k = base + t, base + t + THREADS, …) books
/// activity k mod A for member (k + k div A) mod M. As gcd(A + 1, M) = 1, the pairs are
/// distinct for k < A·M: no request repeats a live booking.
fn booking_script(activities: &[Uuid], tokens: &[String], base: u64) -> String {
    let list = |v: Vec<String>| v.join(",\n");
    format!(
        r#"
local activities = {{
{}
}}
local tokens = {{
{}
}}
local A, M, T, base = {}, {}, {THREADS}, {base}
local body = '{{"seats":1,"child_ids":[]}}'
local next_tid = 0
setup = function(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
local n = 0
request = function()
  local k = base + tid + T * n
  n = n + 1
  local a = activities[(k % A) + 1]
  local t = tokens[((k + math.floor(k / A)) % M) + 1]
  return wrk.format("POST", "/v1/activities/" .. a .. "/bookings", {{
    ["Authorization"] = "Bearer " .. t,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("bench-%d", k),
  }}, body)
end
"#,
        list(activities.iter().map(|a| format!("\"{a}\"")).collect()),
        list(tokens.iter().map(|t| format!("\"{t}\"")).collect()),
        activities.len(),
        tokens.len(),
    )
}

pub(crate) async fn run(url: &str, appends_url: &str, secs: f64) -> anyhow::Result<()> {
    check_wrk().await?;
    let secs = secs.ceil().max(1.0) as u64;
    // The server migrates its database; the bench's own pool is for checks.
    let server = Server::start(url).await?;
    let result = load(&server, url, secs).await;
    server.stop().await;
    let (gets, memory) = result?;

    // The store's append rate, measured in the same run on a database of its own, with
    // the server stopped (the `appends` section's code: each writer on its own stream).
    Db::connect(appends_url).await?.migrate().await?;
    let pool = PgPoolOptions::new().max_connections(CONNECTIONS as u32 + 4).connect(appends_url).await?;
    sqlx::query("CREATE TABLE raw_events (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY)").execute(&pool).await?;
    sqlx::query("ALTER TABLE raw_events ADD PRIMARY KEY (position)").execute(&pool).await?;
    let store: Arc<dyn EventStore> = Arc::new(PostgresStore::new(pool.clone()));
    let ours = crate::ours(store, CONNECTIONS, secs as f64, 1).await;
    let raw = crate::raw(pool.clone(), CONNECTIONS, secs as f64, 1).await;
    pool.close().await;
    report(&gets, &memory, &ours, &raw, secs);
    Ok(())
}

struct Gets {
    gather: WrkResult,
    baseline: WrkResult,
    search: WrkResult,
    search_baseline: WrkResult,
    bookings: WrkResult,
    booked_events: i64,
    booked_expected: u64,
}

struct Memory {
    before: f64,
    peak: f64,
    hwm: f64,
    after: f64,
}

async fn load(server: &Server, url: &str, secs: u64) -> anyhow::Result<(Gets, Memory)> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    // Seeding, through the API.
    let t = std::time::Instant::now();
    let organiser = organiser(server, &http).await?;
    let body = json!({"email": MODERATOR.0, "password": MODERATOR.1});
    let moderator = token_of(&post(&http, &server.url("/v1/auth/login"), None, &body).await?)?;
    let created: Vec<anyhow::Result<(Uuid, i64)>> = {
        use futures::StreamExt;
        futures::stream::iter(0..ACTIVITIES)
            .map(|i| activity(server, &http, &organiser, &moderator, i))
            .buffer_unordered(8)
            .collect()
            .await
    };
    let mut activities = Vec::with_capacity(ACTIVITIES);
    let mut last = 0;
    for c in created {
        let (id, position) = c?;
        activities.push(id);
        last = last.max(position);
    }
    let tokens: Vec<String> = {
        use futures::StreamExt;
        let all: Vec<anyhow::Result<String>> =
            futures::stream::iter(1..=MEMBERS).map(|i| register(server, &http, i)).buffer_unordered(2).collect().await;
        all.into_iter().collect::<anyhow::Result<_>>()?
    };
    let one = activities[0];
    let get_one = format!("/v1/activities/{one}");
    let search = format!("/v1/activities?q={WORD}&limit=20");
    let found = get_at(&http, &server.url(&search), last).await?;
    let hits = found["items"].as_array().map_or(0, |a| a.len());
    anyhow::ensure!(hits > 0, "the search for {WORD:?} found nothing: {found}");
    let shown = get_at(&http, &server.url(&get_one), last).await?;
    anyhow::ensure!(shown["status"] == "published", "activity {one} is not published: {shown}");
    println!(
        "seeded through the API in {:.1} s: 1 organiser, {ACTIVITIES} published activities, {MEMBERS} members; \
         the search for {WORD:?} returns {hits} items",
        t.elapsed().as_secs_f64()
    );

    let (baseline_url, baseline_db, baseline_join) = start_baseline(url).await?;
    let bare = http.get(format!("{baseline_url}/v1/activities/{one}")).send().await?.json::<Value>().await?;
    anyhow::ensure!(bare["title"] == shown["title"], "the baseline reads another row: {bare}");
    let bare = http.get(format!("{baseline_url}{search}")).send().await?.json::<Value>().await?;
    anyhow::ensure!(bare["items"] == found["items"], "the search baseline finds other items: {bare}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = memory_mib(server.pid).0;
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, pid) = (done.clone(), server.pid);
        std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(memory_mib(pid).0);
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };

    let dir = server.data_dir.clone();
    let mut runs = Vec::new();
    for (name, base) in [
        ("gather", &server.base),
        ("baseline", &baseline_url),
        ("search", &server.base),
        ("search-baseline", &baseline_url),
    ] {
        let path = if name.starts_with("search") { &search } else { &get_one };
        let target = format!("{base}{path}");
        wrk(&target, "", WARMUP_SECS, &dir, name).await?;
        runs.push(wrk(&target, "", secs, &dir, name).await?);
    }
    let warm = wrk(&server.base, &booking_script(&activities, &tokens, 0), WARMUP_SECS, &dir, "book-warm").await?;
    // The measured run's pairs start after every pair the warm-up may have sent (answered
    // or still in flight when it stopped, on either thread).
    let base = THREADS as u64 * (warm.requests + CONNECTIONS as u64);
    let bookings = wrk(&server.base, &booking_script(&activities, &tokens, base), secs, &dir, "book").await?;
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().map_err(|_| anyhow::anyhow!("sampler"))?;
    let hwm = memory_mib(server.pid).1;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = memory_mib(server.pid).0;
    baseline_join.abort();
    if let Db::Postgres(pool) = &*baseline_db {
        pool.close().await;
    }

    // Every 2xx booking appended a BookingConfirmed (free activities, room for all).
    let check = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let (booked_events,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM events WHERE event_type = 'BookingConfirmed'").fetch_one(&check).await?;
    check.close().await;
    let booked_expected = warm.ok() + bookings.ok();
    let mut runs = runs.into_iter();
    let mut next = || runs.next().unwrap_or_default();
    let (gather, baseline, search, search_baseline) = (next(), next(), next(), next());
    Ok((
        Gets { gather, baseline, search, search_baseline, bookings, booked_events, booked_expected },
        Memory { before, peak, hwm, after },
    ))
}

fn report(g: &Gets, m: &Memory, ours: &Cell, raw: &Cell, secs: u64) {
    println!(
        "\n## HTTP load: wrk, {THREADS} threads, {CONNECTIONS} connections, {secs} s per run after a {WARMUP_SECS} s warm-up\n"
    );
    println!("| scenario | requests/s | p50 ms | p99 ms | requests | non-2xx | socket errors | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, r: &WrkResult, ratio: &str| {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {ratio} |",
            r.per_s(),
            r.p50_us / 1000.0,
            r.p99_us / 1000.0,
            r.requests,
            r.status,
            r.errors() - r.status
        );
    };
    let vs = |r: &WrkResult| format!("{:.2}× baseline", r.per_s() / g.baseline.per_s());
    row("baseline: bare axum + sqlx, same row", &g.baseline, "1.00×");
    row("Gather `GET /v1/activities/{id}`", &g.gather, &vs(&g.gather));
    row(&format!("Gather `GET /v1/activities?q={WORD}&limit=20`"), &g.search, &vs(&g.search));
    row(
        "search baseline: bare axum + `search::search`, same query",
        &g.search_baseline,
        &format!("{:.2}× baseline", g.search_baseline.per_s() / g.baseline.per_s()),
    );
    row(
        "Gather `POST /v1/activities/{id}/bookings` (1,000 activities)",
        &g.bookings,
        &format!("{:.2}× store appends", g.bookings.per_s() / ours.events_per_s),
    );
    println!(
        "| store 1-event appends, {CONNECTIONS} writers (in process) | {:.0} | {:.2} | {:.2} | | | | 1.00× |",
        ours.events_per_s, ours.p50_ms, ours.p99_ms
    );
    println!(
        "| raw 1-row INSERTs, {CONNECTIONS} writers (in process) | {:.0} | {:.2} | {:.2} | | | | {:.2}× store appends |",
        raw.events_per_s,
        raw.p50_ms,
        raw.p99_ms,
        raw.events_per_s / ours.events_per_s
    );
    let target = |r: &WrkResult, b: &WrkResult| if r.per_s() >= 0.6 * b.per_s() { "met" } else { "missed" };
    println!(
        "\nTarget ≥ 0.6× the bare row read: GET {} ({:.2}×), search {} ({:.2}×). Search against the same \
         search called from a bare handler: {} ({:.2}×; p99 {:.2} ms against {:.2} ms).",
        target(&g.gather, &g.baseline),
        g.gather.per_s() / g.baseline.per_s(),
        target(&g.search, &g.baseline),
        g.search.per_s() / g.baseline.per_s(),
        target(&g.search, &g.search_baseline),
        g.search.per_s() / g.search_baseline.per_s(),
        g.search.p99_us / 1000.0,
        g.search_baseline.p99_us / 1000.0
    );
    println!(
        "Bookings: {} answered 2xx (warm-up included), {} `BookingConfirmed` events in the log.",
        g.booked_expected, g.booked_events
    );
    println!("\n| server RSS after seeding | peak RSS under load (50 ms samples) | VmHWM | RSS 5 s after |");
    println!("|---:|---:|---:|---:|");
    println!("| {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB |", m.before, m.peak, m.hwm, m.after);
    let errors: u64 =
        [&g.gather, &g.baseline, &g.search, &g.search_baseline, &g.bookings].iter().map(|r| r.errors()).sum();
    if errors > 0 {
        println!("\n**FLAGGED: {errors} failed requests (non-2xx or socket errors) in the measured runs.**");
    } else {
        println!("\nNo failed requests (non-2xx or socket errors) in the measured runs.");
    }
}
