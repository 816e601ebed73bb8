//! One search suite for both backends (Postgres full text + trigrams, SQLite FTS5) over
//! a seeded catalogue of 300 activities: relevance order, every filter, every sort,
//! facets, paging without duplicates or holes, hostile text, and the index following
//! the lifecycle.

use crate::harness::{TestApp, quick_member};
use chrono::{DateTime, Duration, TimeZone, Utc};
use gather_domain::activity::{
    Activity, ActivityCommand, ActivityDetails, RawActivityDetails, RawLocation, Visibility,
};
use gather_domain::values::Reason;
use gather_domain::{Actor, Role};
use serde_json::{Value, json};
use std::collections::HashSet;
use uuid::Uuid;

both_profiles!(search_answers_every_filter_sort_and_page_over_a_seeded_catalogue);

const N: usize = 300;
const WORDS: [&str; 5] = ["Pottery", "Jazz", "Yoga", "Chess", "Photography"];
const CATEGORIES: [&str; 5] = ["workshop", "music", "sport", "games", "outdoor"];

/// The seed's i-th activity, as the test knows it.
struct Seed {
    id: Uuid,
    title: String,
    description: String,
    category: &'static str,
    starts_at: DateTime<Utc>,
    free: bool,
    online: bool,
    lat: f64,
    lng: f64,
    age: Option<(i64, i64)>,
    capacity: i64,
    listed: bool,
}

fn seed(i: usize) -> Seed {
    let word = WORDS[i % 5];
    Seed {
        id: Uuid::now_v7(),
        title: format!("{word} session number {i}"),
        description: if i.is_multiple_of(7) {
            format!("Bring clay: pottery basics included ({i}).")
        } else {
            format!("A friendly evening ({i}).")
        },
        category: CATEGORIES[(i / 5) % 5],
        starts_at: Utc.with_ymd_and_hms(2031, 1, 1, 9, 0, 0).unwrap() + Duration::hours(7 * i as i64),
        free: !i.is_multiple_of(4),
        online: i.is_multiple_of(6),
        lat: 52.0 + (i % 10) as f64 * 0.1,
        lng: 4.0 + (i % 9) as f64 * 0.1,
        age: i.is_multiple_of(3).then_some((6, 12)),
        capacity: 5 + (i % 20) as i64,
        listed: i % 10 != 9,
    }
}

fn details(s: &Seed) -> ActivityDetails {
    ActivityDetails::parse(RawActivityDetails {
        title: s.title.clone(),
        description: s.description.clone(),
        category: s.category.to_string(),
        tags: vec![if s.age.is_some() { "kids".into() } else { "adults".into() }],
        starts_at: s.starts_at,
        ends_at: s.starts_at + Duration::hours(2),
        capacity: s.capacity,
        price_amount: if s.free { 0 } else { 1500 },
        price_currency: "EUR".into(),
        visibility: Visibility::Public,
        location: if s.online {
            RawLocation::Online { url: "https://meet.example.com/x".into() }
        } else {
            RawLocation::Venue { name: "Hall".into(), address: "1 Main St".into(), lat: s.lat, lng: s.lng }
        },
        age_min: s.age.map(|a| a.0),
        age_max: s.age.map(|a| a.1),
        waitlist: false,
    })
    .expect("valid seed details")
}

fn km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2) = (a.0.to_radians(), b.0.to_radians());
    let (dla, dlo) = ((b.0 - a.0).to_radians(), (b.1 - a.1).to_radians());
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().asin()
}

async fn seed_catalogue(app: &TestApp) -> (Vec<Seed>, i64) {
    app.organiser("seed-org@example.com").await;
    let me = app.login("seed-org@example.com", "correct horse battery").await;
    let org_id: Uuid = me.body["member_id"].as_str().unwrap().parse().unwrap();
    let organiser = Actor::new(org_id, [Role::Member, Role::Organiser]);
    let moderator = Actor::new(Uuid::now_v7(), [Role::Member, Role::Moderator]);
    let seeds: Vec<Seed> = (0..N).map(seed).collect();
    let mut last = 0;
    for chunk in seeds.chunks(25) {
        let runs = chunk.iter().map(|s| {
            let (organiser, moderator) = (organiser.clone(), moderator.clone());
            async move {
                let h = &app.app_state.commands;
                let meta = gather_commands::CommandMeta::new(organiser.clone());
                let cmd = ActivityCommand::Create { activity_id: s.id, details: details(s) };
                let mut o = h.handle::<Activity>(s.id, cmd, &meta).await.expect("create").position;
                if s.listed {
                    let meta = gather_commands::CommandMeta::new(organiser);
                    h.handle::<Activity>(s.id, ActivityCommand::Submit, &meta).await.expect("submit");
                    let meta = gather_commands::CommandMeta::new(moderator);
                    o = h.handle::<Activity>(s.id, ActivityCommand::Approve, &meta).await.expect("approve").position;
                }
                o
            }
        });
        last = last.max(futures::future::join_all(runs).await.into_iter().max().unwrap_or(0));
    }
    (seeds, last)
}

/// Every page of a search, checking each answer on the way.
async fn walk(app: &TestApp, query: &str, limit: i64) -> Vec<Value> {
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("/v1/activities?{query}&limit={limit}&cursor={c}"),
            None => format!("/v1/activities?{query}&limit={limit}"),
        };
        let a = app.get(&url, None, None).await;
        assert_eq!(a.status, 200, "{url}: {:?}", a.body);
        items.extend(a.body["items"].as_array().unwrap().iter().cloned());
        match a.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(items.len() <= N, "{query}: paging does not end");
    }
    let ids: HashSet<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), items.len(), "{query}: no item twice across pages");
    items
}

fn ids(items: &[Value]) -> HashSet<String> {
    items.iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

fn expect(seeds: &[Seed], f: impl Fn(&Seed) -> bool) -> HashSet<String> {
    seeds.iter().filter(|s| s.listed && f(s)).map(|s| s.id.to_string()).collect()
}

async fn search_answers_every_filter_sort_and_page_over_a_seeded_catalogue(app: TestApp) {
    let (seeds, last) = seed_catalogue(&app).await;
    // Read-your-writes on the search projection, then everything by soonest, paged by 7.
    let first = app.get("/v1/activities?limit=5", None, Some(last)).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let all = walk(&app, "sort=soonest", 7).await;
    assert_eq!(ids(&all), expect(&seeds, |_| true), "every listed activity, no draft");
    let times: Vec<&str> = all.iter().map(|i| i["starts_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "soonest first");
    // Facets count the filtered set by category (ignoring the category filter itself).
    let f = app.get("/v1/activities?category=music&free=true", None, None).await;
    let facets = f.body["facets"]["category"].as_object().unwrap().clone();
    for c in CATEGORIES {
        let n = expect(&seeds, |s| s.category == c && s.free).len() as i64;
        assert_eq!(facets.get(c).and_then(Value::as_i64).unwrap_or(0), n, "facet {c}");
    }
    assert_eq!(
        ids(&walk(&app, "category=music&free=true", 10).await),
        expect(&seeds, |s| s.category == "music" && s.free)
    );
    // Each filter.
    assert_eq!(ids(&walk(&app, "free=false", 20).await), expect(&seeds, |s| !s.free));
    assert_eq!(ids(&walk(&app, "online=true", 20).await), expect(&seeds, |s| s.online));
    assert_eq!(ids(&walk(&app, "age=15", 50).await), expect(&seeds, |s| s.age.is_none()));
    assert_eq!(ids(&walk(&app, "age=8", 50).await), expect(&seeds, |_| true));
    assert_eq!(ids(&walk(&app, "seats=20", 20).await), expect(&seeds, |s| s.capacity >= 20));
    let (from, to) = (seeds[40].starts_at, seeds[80].starts_at);
    let q = format!("from={}&to={}", from.to_rfc3339().replace('+', "%2B"), to.to_rfc3339().replace('+', "%2B"));
    assert_eq!(ids(&walk(&app, &q, 20).await), expect(&seeds, |s| s.starts_at >= from && s.starts_at <= to));
    let centre = (52.0, 4.0);
    let near = walk(&app, "near=52.0,4.0&radius_km=20", 20).await;
    assert_eq!(
        ids(&near),
        expect(&seeds, |s| !s.online && km(centre, (s.lat, s.lng)) <= 20.0),
        "exact distance, not only the bounding box"
    );
    assert!(!near.is_empty());
    // Relevance: a title match ranks above a description-only match.
    let hits = walk(&app, "q=pottery", 9).await;
    assert_eq!(
        ids(&hits),
        expect(&seeds, |s| s.title.contains("Pottery") || s.description.contains("pottery")),
        "every match and only matches"
    );
    let in_title: Vec<bool> = hits.iter().map(|h| h["title"].as_str().unwrap().contains("Pottery")).collect();
    let first_desc_only = in_title.iter().position(|t| !t).unwrap_or(in_title.len());
    assert!(in_title[first_desc_only..].iter().all(|t| !t), "title matches first: {in_title:?}");
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "relevance order");
    let phrase = walk(&app, "q=%22pottery%20basics%22%20-jazz", 50).await;
    assert_eq!(ids(&phrase), expect(&seeds, |s| s.description.contains("pottery basics") && !s.title.contains("Jazz")));
    // Popular: favourites move an activity up.
    let star = seeds.iter().rfind(|s| s.listed).unwrap().id;
    let mut pos = 0;
    for _ in 0..3 {
        let (_, m) = quick_member(&app).await;
        let r = app.send(app.http.put(app.url(&format!("/v1/activities/{star}/favourite"))).bearer_auth(&m)).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        pos = r.position();
    }
    let popular = app.get("/v1/activities?sort=popular&limit=3", None, Some(pos)).await;
    assert_eq!(popular.body["items"][0]["id"], json!(star));
    assert_eq!(popular.body["items"][0]["popularity"], json!(3));
    for sort in ["popular", "newest"] {
        assert_eq!(ids(&walk(&app, &format!("sort={sort}"), 13).await).len(), expect(&seeds, |_| true).len(), "{sort}");
    }
    // A cursor of one sort is refused by another.
    let page = app.get("/v1/activities?sort=newest&limit=2", None, None).await;
    let c = page.body["next_cursor"].as_str().unwrap();
    app.get(&format!("/v1/activities?sort=soonest&cursor={c}"), None, None).await.assert_problem(400, None);
    // Hostile text answers 200 or 400, never 500.
    let long = "pottery ".repeat(1300);
    for q in [
        "\"",
        "'",
        "\"\"\"",
        "-",
        "OR",
        "AND NOT",
        "a & b | !c",
        "(",
        "*",
        "NEAR(",
        ":*",
        "pottery:*",
        "ñandú 🎉 日本語",
        "'; DROP TABLE activities; --",
        "\\",
        "%",
        "_",
        long.as_str(),
        "a\u{0}b",
        "\u{202e}pottery",
    ] {
        let url = format!("/v1/activities?q={}", urlencode(q));
        let a = app.get(&url, None, None).await;
        assert!(a.status == 200 || a.status == 400, "{q:?}: {} {:?}", a.status, a.body);
        if a.status == 400 {
            a.assert_problem(400, None);
        }
    }
    // Bad parameters are problems.
    for q in ["sort=best", "free=maybe", "near=91,0", "near=1", "radius_km=5", "age=30", "from=yesterday", "limit=0"] {
        app.get(&format!("/v1/activities?{q}"), None, None).await.assert_problem(400, None);
    }
    // Spec: a cancelled activity leaves the search index.
    let gone = seeds.iter().find(|s| s.listed && s.title.contains("Chess")).unwrap();
    let meta = gather_commands::CommandMeta::new(Actor::new(Uuid::now_v7(), [Role::Member, Role::Moderator]));
    let cmd = ActivityCommand::Cancel { reason: Reason::parse("venue closed").unwrap() };
    let out = app.app_state.commands.handle::<Activity>(gone.id, cmd, &meta).await.expect("cancel");
    let title = gone.title.replace(' ', "%20");
    let a = app.get(&format!("/v1/activities?q={title}&limit=100"), None, Some(out.position)).await;
    assert!(a.body["items"].as_array().unwrap().iter().all(|i| i["id"] != json!(gone.id)), "cancelled: not listed");
    // Typos: Postgres falls back on trigram similarity of titles.
    if app.app_state.db.is_postgres() {
        let a = app.get("/v1/activities?q=potery", None, None).await;
        assert_eq!(a.status, 200);
        let items = a.body["items"].as_array().unwrap();
        assert!(
            !items.is_empty() && items.iter().all(|i| i["title"].as_str().unwrap().contains("Pottery")),
            "{items:?}"
        );
    }
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}
