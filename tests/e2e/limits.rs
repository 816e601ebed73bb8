//! Hardening: rate limits (429 problem+json with `Retry-After`, nothing runs), CORS
//! from the configured origins, and the request timeout.

use crate::harness::*;
use gather_api::settings::Settings;
use serde_json::json;

fn limited(s: &mut Settings) {
    s.rate_limit_commands = 2;
    s.rate_limit_guests = 3;
    s.rate_limit_auth = 1;
}

async fn commands_of_a_member_and_guests_are_rate_limited(app: TestApp) {
    // Guests: a burst of 6 (twice the rate; a slow run may refill one more), then 429.
    let mut ok = 0;
    let refused = loop {
        let a = app.get("/v1/activities", None, None).await;
        if a.status != 200 {
            break a;
        }
        ok += 1;
        assert!(ok <= 8, "no refusal after {ok} guest requests");
    };
    assert!((6..=7).contains(&ok), "{ok}");
    refused.assert_problem(429, Some("rate_limited"));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");

    // A member's commands: a burst of 4, then 429 and nothing appended; reads go on.
    let (_, member) = quick_member(&app).await;
    let mut ok = 0;
    loop {
        let before = app.event_count().await;
        let a = app
            .post("/v1/me/children", Some(&member), json!({"name": format!("Kid {ok}"), "birth_date": "2019-04-01"}))
            .await;
        if a.status == 429 {
            a.assert_problem(429, Some("rate_limited"));
            assert_eq!(app.event_count().await, before, "a refused command appends nothing");
            break;
        }
        assert!(a.status == 201 || a.status == 202, "{:?}", a.body);
        ok += 1;
        assert!(ok <= 6, "no refusal after {ok} commands");
    }
    assert!((4..=5).contains(&ok), "{ok}");
    assert_eq!(app.get("/v1/me", Some(&member), None).await.status, 200, "reads of a member are not commands");

    // Logins per address: a burst of 2.
    let statuses: Vec<u16> = futures::future::join_all(
        (0..4).map(|_| app.post("/v1/auth/login", None, json!({"email": "nobody@example.com", "password": "x"}))),
    )
    .await
    .into_iter()
    .map(|a| a.status)
    .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}

with_profiles!(commands_of_a_member_and_guests_are_rate_limited, super::limited);

fn with_cors(s: &mut Settings) {
    s.cors_origins = vec!["https://app.gather.test".into()];
}

async fn cors_allows_the_configured_origins_only(app: TestApp) {
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/v1/activities"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,idempotency-key")
            .send()
    };
    let ok = preflight("https://app.gather.test").await.unwrap();
    assert_eq!(ok.headers().get("access-control-allow-origin").unwrap(), "https://app.gather.test");
    let allowed = ok.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let get = app.http.get(app.url("/v1/activities")).header("origin", "https://app.gather.test").send().await.unwrap();
    assert_eq!(get.headers().get("access-control-allow-origin").unwrap(), "https://app.gather.test");
    let exposed = get.headers()["access-control-expose-headers"].to_str().unwrap().to_lowercase();
    assert!(exposed.contains("gather-position"), "{exposed}");
}

with_profiles!(cors_allows_the_configured_origins_only, super::with_cors);

fn short_timeout(s: &mut Settings) {
    use gather_api::settings::ProcessRole;
    s.request_timeout = std::time::Duration::from_secs(1);
    // Nobody projects: a read waiting for a committed position waits its full 5 s.
    s.roles = vec![ProcessRole::Api, ProcessRole::Scheduler];
}

async fn a_request_that_takes_too_long_is_a_503(app: TestApp) {
    let (_, member) = quick_member(&app).await;
    let head = app.app_state.store.head().await.unwrap().position;
    // Waiting for the read models to reach it would take 5 s; the bound is 1 s.
    let started = std::time::Instant::now();
    let a = app.get("/v1/me/bookings", Some(&member), Some(head)).await;
    a.assert_problem(503, Some("unavailable"));
    assert!(a.body["detail"].as_str().unwrap().contains("longer than 1 s"), "{:?}", a.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

with_profiles!(a_request_that_takes_too_long_is_a_503, super::short_timeout);

async fn every_answer_carries_its_request_id(app: TestApp) {
    let res = app.http.get(app.url("/v1/activities")).send().await.unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let res = app.http.get(app.url("/v1/activities")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
}

both_profiles!(every_answer_carries_its_request_id);

fn no_projectors(s: &mut Settings) {
    use gather_api::settings::ProcessRole;
    s.roles = vec![ProcessRole::Api, ProcessRole::Scheduler];
    s.ready_max_lag = std::time::Duration::from_secs(1);
}

/// Nobody projects here: once the oldest unapplied event is older than the bound,
/// readiness says so, naming the projections.
async fn ready_is_503_while_a_projection_lags_beyond_the_bound(app: TestApp) {
    quick_member(&app).await;
    eventually("the lag passes the 1 s bound", || async {
        let a = app.get("/health/ready", None, None).await;
        a.status == 503 && a.body["projections"]["members"]["within_bound"] == json!(false)
    })
    .await;
    let a = app.get("/health/ready", None, None).await;
    assert_eq!(a.body["status"], json!("not_ready"));
    assert_eq!(a.body["max_lag_ms"], json!(1000));
    assert!(a.body["projections"]["members"]["lag_events"].as_i64().unwrap() >= 1, "{:?}", a.body);
}

with_profiles!(ready_is_503_while_a_projection_lags_beyond_the_bound, super::no_projectors);

/// A stop waits for in-flight requests only within `GATHER_SHUTDOWN_TIMEOUT_SECS`: a
/// request that would take 5 s (waiting for a position far ahead) is answered 503
/// "shutting down" once the bound has passed, and the server then returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_in_flight_requests_only_within_its_bound() {
    let (mut settings, _lease) = spawn_settings(Profile::Sqlite).await;
    settings.shutdown_timeout = std::time::Duration::from_secs(1);
    // Nobody projects: a read waiting for a committed position waits its full 5 s.
    settings.roles = vec![gather_api::settings::ProcessRole::Api];
    let app = gather_api::App::build(settings.clone()).await.unwrap();
    let addr = app.local_addr();
    let head = {
        let (_, store) = gather_api::app::open_store(&settings).await.unwrap();
        let meta = gather_commands::store::AppendMeta::new(uuid::Uuid::now_v7(), None);
        let event = gather_commands::store::NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: "NoteForTheTest".into(),
            schema_version: 1,
            data: json!({}),
        };
        let stream = gather_commands::store::StreamAppend {
            stream: format!("note-{}", uuid::Uuid::now_v7()),
            expected: gather_commands::store::ExpectedVersion::Any,
            events: vec![event],
        };
        store.append(&meta, vec![stream]).await.unwrap().streams[0].last_position
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let slow = tokio::spawn(
        reqwest::Client::new()
            .get(format!("http://{addr}/v1/activities"))
            .header("gather-min-position", head.to_string())
            .send(),
    );
    // No signal says the request has reached its wait; give it a moment to be sent.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = stop.send(());
    server.await.unwrap().expect("the server stops cleanly");
    let res = slow.await.unwrap().expect("the request was in flight and answered");
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("shutting down"),
        "cut off by the stop, not its own 5 s wait: {body}"
    );
}
