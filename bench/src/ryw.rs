//! Command → read model visible, through the real HTTP API on Postgres: favourites
//! (`PUT /v1/activities/{id}/favourite`) sent at a fixed rate, each followed by
//! `GET /v1/activities/{id}` with `Gather-Min-Position` set to the command's position;
//! the time from sending the command to the GET's 200. The floor, in the same run: a
//! bare LISTEN/NOTIFY round trip (a committed `pg_notify` on one connection, received
//! by a `PgListener`), the mechanism that wakes waiting reads.

use crate::app::{self, Running};
use crate::percentile;
use gather_api::state::AppState;
use gather_commands::CommandMeta;
use gather_commands::uniqueness::reserve_email;
use gather_domain::member::{Member, MemberCommand};
use gather_domain::values::{DisplayName, Email};
use gather_domain::{Actor, Role};
use serde_json::{Value, json};
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Registers a member straight through the command handler (no argon2) and mints a token.
pub(crate) async fn member(state: &AppState, roles: &[Role]) -> anyhow::Result<(Uuid, String)> {
    let id = Uuid::now_v7();
    let email = Email::parse(&format!("m{}@example.com", id.simple()))?;
    let norm = email.normalized();
    let cmd = MemberCommand::Register {
        member_id: id,
        email,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        display_name: DisplayName::parse("Bench")?,
    };
    let meta = CommandMeta::new(Actor::new(id, [Role::Member]));
    state.commands.handle_with::<Member>(id, cmd, &meta, |_| vec![reserve_email(&state.lookup, &norm, id)]).await?;
    let token = state.jwt.issue(id, roles).map_err(|e| anyhow::anyhow!("token: {e:?}"))?;
    Ok((id, token))
}

async fn post(http: &reqwest::Client, url: String, token: &str, body: Value) -> anyhow::Result<Value> {
    let res = http.post(url).bearer_auth(token).json(&body).send().await?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

/// A public activity created, submitted and approved through HTTP.
pub(crate) async fn published(app: &Running, organiser: &str, moderator: &str) -> anyhow::Result<Uuid> {
    let start = chrono::Utc::now() + chrono::Duration::days(30);
    let body = json!({
        "title": "Read-your-writes meetup", "description": "Benchmark", "category": "meetup", "tags": ["bench"],
        "starts_at": start, "ends_at": start + chrono::Duration::hours(2), "capacity": 1000,
        "price": {"amount": 0, "currency": "EUR"}, "visibility": "public",
        "location": {"kind": "venue", "name": "Hall", "address": "1 Main St", "lat": 52.37, "lng": 4.89},
        "waitlist": false
    });
    let created = post(&app.http, app.url("/v1/activities"), organiser, body).await?;
    let id: Uuid = created["id"].as_str().unwrap_or_default().parse()?;
    post(&app.http, app.url(&format!("/v1/activities/{id}/submit")), organiser, json!({})).await?;
    post(&app.http, app.url(&format!("/v1/activities/{id}/approve")), moderator, json!({})).await?;
    Ok(id)
}

/// One favourite, then the GET that must see it: (command ms, visible-after-answer ms, total ms).
async fn one(app: Arc<Running>, token: Arc<String>, activity: Uuid) -> anyhow::Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let res =
        app.http.put(app.url(&format!("/v1/activities/{activity}/favourite"))).bearer_auth(&*token).send().await?;
    anyhow::ensure!(res.status().as_u16() == 202, "favourite answered {}", res.status());
    let position = res
        .headers()
        .get("gather-position")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no Gather-Position"))?;
    res.bytes().await?;
    let t1 = Instant::now();
    let res = app
        .http
        .get(app.url(&format!("/v1/activities/{activity}")))
        .header("Gather-Min-Position", position)
        .send()
        .await?;
    anyhow::ensure!(res.status().as_u16() == 200, "GET answered {}", res.status());
    res.bytes().await?;
    Ok((t1 - t0, t1.elapsed()))
}

fn cell(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

pub(crate) async fn run(url: &str, secs: f64, rate: f64) -> anyhow::Result<()> {
    let app = Arc::new(app::start(Some(url), &[], true).await?);
    let state = app.state.clone();
    let (_, organiser) = member(&state, &[Role::Member, Role::Organiser]).await?;
    let moderator = app::login_moderator(&app).await?;
    let n = ((secs * rate).round() as usize).max(20);
    let activities: Vec<Uuid> = {
        let mut v = Vec::new();
        for _ in 0..10 {
            v.push(published(&app, &organiser, &moderator).await?);
        }
        v
    };
    // Each (member, activity) pair favourites once: every command appends an event.
    let mut tokens = Vec::new();
    for _ in 0..n.div_ceil(activities.len()) + 1 {
        tokens.push(Arc::new(member(&state, &[Role::Member]).await?.1));
    }
    // Warm up the connections and the projectors.
    for k in 0..10 {
        one(app.clone(), tokens[tokens.len() - 1].clone(), activities[k % activities.len()]).await?;
    }

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for k in 0..n {
        tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / rate)).into()).await;
        let (app, token, activity) =
            (app.clone(), tokens[k / activities.len()].clone(), activities[k % activities.len()]);
        tasks.push(tokio::spawn(one(app, token, activity)));
    }
    let (mut cmd, mut after, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for t in tasks {
        let (c, a) = t.await??;
        cmd.push(c);
        after.push(a);
        total.push(c + a);
    }
    let sent = n as f64 / start.elapsed().as_secs_f64();
    app.stop().await;
    let _ = std::fs::remove_dir_all(&app.data_dir);

    // The floor: a committed NOTIFY to a listener, at the same rate, one at a time.
    let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
    let mut listener = PgListener::connect(url).await?;
    listener.listen("gather_bench_floor").await?;
    let mut floor = Vec::with_capacity(n);
    let start = Instant::now();
    for k in 0..n + 10 {
        tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / rate)).into()).await;
        let t = Instant::now();
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_notify('gather_bench_floor', $1)").bind(k.to_string()).execute(&mut *tx).await?;
        tx.commit().await?;
        let note = listener.recv().await?;
        anyhow::ensure!(note.payload() == k.to_string(), "unexpected notification {}", note.payload());
        if k >= 10 {
            floor.push(t.elapsed());
        }
    }
    pool.close().await;

    let (c50, c99) = cell(cmd);
    let (a50, a99) = cell(after);
    let (t50, t99) = cell(total);
    let (f50, f99) = cell(floor);
    println!("\n## Command → read model visible (Postgres, HTTP), {n} favourites at {sent:.0}/s\n");
    println!("| | p50 ms | p99 ms | p99 / floor p99 |\n|---|---:|---:|---:|");
    println!("| PUT favourite → 202 | {c50:.2} | {c99:.2} | |");
    println!("| 202 → GET with Gather-Min-Position answers 200 | {a50:.2} | {a99:.2} | |");
    println!("| **command sent → visible (total)** | {t50:.2} | {t99:.2} | {:.1}× |", t99 / f99);
    println!("| floor: NOTIFY committed → listener received | {f50:.2} | {f99:.2} | 1.0× |");
    Ok(())
}
