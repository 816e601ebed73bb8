//! Search at 16 concurrent clients over published activities, on Postgres and on
//! SQLite (the embedded profile): `GET /v1/activities?…` through the HTTP endpoint
//! against `gather_projections::search::search` called directly on the same database
//! (the exact SQL the endpoint runs, without HTTP, JSON or the checkpoint read).
//!
//! The corpus is appended straight through the event store, then the `search`
//! projection is rebuilt over it; the process runs the `api` role only (no projector,
//! notifier or scheduler working through the seeded log while queries run).

use crate::app::{self, Running};
use crate::seed;
use gather_commands::Db;
use gather_commands::store::EventStore;
use gather_projections::Projection;
use gather_projections::rebuild::Rebuild;
use gather_projections::search::{SearchProjection, SearchQuery, Sort, search};
use std::sync::Arc;
use std::time::Instant;

/// One query of the mix, as both the URL and the parsed query.
struct Spec {
    q: Option<&'static str>,
    category: Option<&'static str>,
    free: Option<bool>,
    near: Option<(f64, f64, f64)>,
    popular: bool,
}

const fn spec(q: Option<&'static str>, category: Option<&'static str>, free: Option<bool>) -> Spec {
    Spec { q, category, free, near: None, popular: false }
}

/// Text, text + filters, category + free, near, near + popular, popular, and a typo
/// (no full-text hit: the trigram fallback runs).
const MIX: &[Spec] = &[
    spec(Some("pottery"), None, None),
    spec(Some("evening yoga"), None, None),
    spec(Some("\"board games\" amsterdam"), None, None),
    spec(None, Some("workshop"), Some(true)),
    Spec { popular: true, ..spec(None, Some("sports"), Some(false)) },
    Spec { near: Some((52.37, 4.89, 10.0)), ..spec(None, None, None) },
    Spec { near: Some((48.85, 2.35, 25.0)), popular: true, ..spec(None, None, None) },
    spec(Some("kids"), Some("workshop"), Some(true)),
    Spec { popular: true, ..spec(None, None, None) },
    spec(Some("photografy"), None, None),
];

impl Spec {
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Some(q) = self.q {
            p.push(("q", q.to_owned()));
        }
        if let Some(c) = self.category {
            p.push(("category", c.to_owned()));
        }
        if let Some(f) = self.free {
            p.push(("free", f.to_string()));
        }
        if let Some((lat, lng, r)) = self.near {
            p.push(("near", format!("{lat},{lng}")));
            p.push(("radius_km", r.to_string()));
        }
        if self.popular {
            p.push(("sort", "popular".to_owned()));
        }
        p
    }

    fn query(&self) -> SearchQuery {
        let sort = match (self.popular, self.q.is_some()) {
            (true, _) => Sort::Popular,
            (false, true) => Sort::Relevance,
            (false, false) => Sort::Soonest,
        };
        SearchQuery {
            q: self.q.map(str::to_owned),
            category: self.category.map(str::to_owned),
            from: None,
            to: None,
            age: None,
            free: self.free,
            online: None,
            near: self.near,
            seats: None,
            sort,
            after: None,
            limit: 20,
        }
    }
}

async fn http_query(app: &Running, k: usize) -> anyhow::Result<usize> {
    let res = app.http.get(app.url("/v1/activities")).query(&MIX[k % MIX.len()].params()).send().await?;
    anyhow::ensure!(res.status().as_u16() == 200, "search answered {}", res.status());
    let body: serde_json::Value = res.json().await?;
    Ok(body["items"].as_array().map_or(0, Vec::len))
}

async fn direct_query(db: &Db, k: usize) -> anyhow::Result<usize> {
    Ok(search(db, &MIX[k % MIX.len()].query()).await?.items.len())
}

/// Seeds, rebuilds `search`, checks both paths agree, and measures both.
async fn backend(label: &str, app: Arc<Running>, activities: usize, secs: f64) -> anyhow::Result<String> {
    let store: Arc<dyn EventStore> = app.state.store.clone();
    let db = app.state.db.clone();
    let (calls, events) = seed::search_corpus(activities, 17)?;
    let members = (activities / 20).clamp(50, 5_000);
    let seeded = seed::append_all(store.clone(), calls, seed::member_call_count(members)).await?;
    let t = Instant::now();
    let projections: Vec<Arc<dyn Projection>> = vec![Arc::new(SearchProjection)];
    Rebuild::claim(&db, store, &projections, "search").await?.run().await?;
    let indexed = t.elapsed().as_secs_f64();
    match &db {
        Db::Postgres(p) => {
            sqlx::query("ANALYZE activity_search").execute(p).await?;
        }
        Db::Sqlite { writer, .. } => {
            sqlx::query("ANALYZE").execute(writer).await?;
        }
    }
    let mut hits = Vec::new();
    for k in 0..MIX.len() {
        let (h, d) = (http_query(&app, k).await?, direct_query(&db, k).await?);
        anyhow::ensure!(h == d, "{label}: query {k} found {h} items over HTTP and {d} directly");
        hits.push(h);
    }
    eprintln!(
        "{label}: {events} events seeded at {seeded:.0} ev/s, search rebuilt in {indexed:.1} s \
         ({:.0} ev/s); items per query of the mix: {hits:?}",
        events as f64 / indexed
    );
    let a = app.clone();
    let over_http = crate::run(16, secs, 1, move |w, i| {
        let a = a.clone();
        async move {
            http_query(&a, w + i as usize).await?;
            Ok(())
        }
    })
    .await;
    let d = db.clone();
    let direct = crate::run(16, secs, 1, move |w, i| {
        let d = d.clone();
        async move {
            direct_query(&d, w + i as usize).await?;
            Ok(())
        }
    })
    .await;
    let cell = |c: &crate::Cell| format!("{:.0} q/s (p50 {:.2} / p99 {:.2} ms)", c.events_per_s, c.p50_ms, c.p99_ms);
    Ok(format!(
        "| {label} | {} | {} | {:.2}× | {:.2}× |",
        cell(&over_http),
        cell(&direct),
        over_http.events_per_s / direct.events_per_s,
        direct.p99_ms / over_http.p99_ms
    ))
}

pub(crate) async fn run(pg_url: &str, scale: f64, secs: f64) -> anyhow::Result<()> {
    let activities = ((100_000.0 * scale).round() as usize).max(100);
    let mut rows = Vec::new();
    for (label, url) in [("Postgres", Some(pg_url)), ("SQLite", None)] {
        let app = Arc::new(app::start(url, &["api"], false).await?);
        let result = backend(label, app.clone(), activities, secs).await;
        app.stop().await;
        let _ = std::fs::remove_dir_all(&app.data_dir);
        rows.push(result?);
    }
    println!(
        "\n## Search, 16 clients, {activities} published activities, {secs} s per cell (mix of {} queries)\n",
        MIX.len()
    );
    println!(
        "| backend | HTTP `GET /v1/activities` | direct `search::search` (same SQL) | q/s ratio | p99 ratio (direct / HTTP) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
