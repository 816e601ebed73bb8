//! Read-your-writes across processes: `Gather-Min-Position` waits on the stored
//! checkpoints of the projections an endpoint reads, whichever process runs them; a
//! process without the api role serves health only; a failed projection delays only
//! the queries that read it.

use crate::harness::{Profile, TestApp, eventually, published_activity, quick_member, spawn_app, spawn_with_roles};
use gather_api::settings::ProcessRole;
use gather_commands::store::{AppendMeta, ExpectedVersion, NewEvent, StreamAppend};
use gather_domain::Actor;
use serde_json::json;
use std::time::Instant;
use uuid::Uuid;

both_profiles!(a_failed_projection_delays_only_the_queries_that_read_it);
both_profiles!(a_min_position_no_answer_handed_out_is_refused_at_once);

/// A position beyond every committed event was never in an answer: waiting 5 s for it
/// (then a 503) would only hide the client's bug, so it is a 400 at once.
async fn a_min_position_no_answer_handed_out_is_refused_at_once(app: TestApp) {
    // The registration's own position (the store's readable head may still be behind
    // it on Postgres, while an older transaction is open).
    let registered = app
        .post(
            "/v1/auth/register",
            None,
            json!({"email": "ryw@example.com", "password": "correct horse battery", "display_name": "R"}),
        )
        .await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let (member, head) = (registered.body["token"].as_str().unwrap().to_owned(), registered.position());
    let started = Instant::now();
    let a = app.get("/v1/me", Some(&member), Some(head + 1_000)).await;
    a.assert_problem(400, Some("validation_failed"));
    assert_eq!(a.body["errors"][0]["field"], json!("Gather-Min-Position"), "{:?}", a.body);
    assert!(started.elapsed().as_secs_f64() < 4.5, "refused without the bounded wait");
    // A committed position is still waited for and answered.
    let ok = app.get("/v1/me", Some(&member), Some(head)).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_through_an_api_only_process_beside_a_projector_process() {
    // The docker-compose split: projectors (and the rest) in one process, the API in another.
    let workers = spawn_app(Profile::Postgres).await;
    let api = spawn_with_roles(&workers, &[ProcessRole::Api]).await;
    assert!(api.app_state.projectors.progress().is_empty(), "the api process runs no projector");
    let org = api.organiser("split@example.com").await;
    let id = published_activity(&api, &org, 50, false).await;
    for n in 1..=15 {
        let (_, member) = quick_member(&api).await;
        let a = api.send(api.http.put(api.url(&format!("/v1/activities/{id}/favourite"))).bearer_auth(&member)).await;
        assert_eq!(a.status, 202, "{:?}", a.body);
        let shown = api.get(&format!("/v1/activities/{id}"), None, Some(a.position())).await;
        assert_eq!(shown.status, 200, "{:?}", shown.body);
        assert_eq!(shown.body["favourites"], json!(n), "the write is visible through the api-only process");
        assert!(shown.position() >= a.position(), "Gather-Position reflects the projectors' stored checkpoints");
        let found = api.get("/v1/activities?sort=popular&limit=1", None, Some(a.position())).await;
        assert_eq!(found.body["items"][0]["favourites"], json!(n), "search too");
    }
    // A process without the api role serves health only.
    let projector = spawn_with_roles(&workers, &[ProcessRole::Projector]).await;
    assert_eq!(projector.get("/health/live", None, None).await.status, 200);
    projector.get("/v1/activities", None, None).await.assert_problem(404, None);
    projector.post("/v1/auth/login", None, json!({"email": "a@b.c", "password": "x"})).await.assert_problem(404, None);
}

async fn a_failed_projection_delays_only_the_queries_that_read_it(app: TestApp) {
    let (_, member) = quick_member(&app).await;
    // A chat event this release cannot decode: only the chats projection reads chats.
    let bad =
        NewEvent { event_id: Uuid::now_v7(), event_type: "NoSuchChatEvent".into(), schema_version: 1, data: json!({}) };
    let meta = AppendMeta::new(Uuid::now_v7(), Some(Actor::system().id));
    let stream = format!("chat-{}", Uuid::now_v7());
    let out = app
        .app_state
        .store
        .append(&meta, vec![StreamAppend { stream, expected: ExpectedVersion::Any, events: vec![bad] }])
        .await
        .expect("append");
    let position = out.streams[0].last_position;
    eventually("the chats projection records its fault", || async {
        gather_projections::faults::fault(&app.app_state.db, "chats").await.unwrap().is_some()
    })
    .await;
    // Readers of other projections are not held up.
    let me = app.get("/v1/me", Some(&member), Some(position)).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    let search = app.get("/v1/activities", None, Some(position)).await;
    assert_eq!(search.status, 200, "{:?}", search.body);
    // Readers of chats get a 503 with Retry-After after the bounded wait.
    let started = Instant::now();
    let chats = app.get("/v1/me/chats", Some(&member), Some(position)).await;
    chats.assert_problem(503, Some("unavailable"));
    assert_eq!(chats.header("retry-after"), Some("1"));
    assert!(started.elapsed().as_secs_f64() >= 4.5, "it waited for the projection first");
    // Health names the fault.
    let health = app.get("/health/ready", None, None).await;
    assert_eq!(health.status, 503, "{:?}", health.body);
    assert!(health.body["projections"]["chats"]["fault"]["stream"].as_str().is_some_and(|s| s.starts_with("chat-")));
    let moderator = app.login(crate::harness::MODERATOR.0, crate::harness::MODERATOR.1).await;
    let listed = app.get("/v1/admin/projections", moderator.body["token"].as_str(), None).await;
    let chats_row = listed.body["items"].as_array().unwrap().iter().find(|p| p["name"] == "chats").unwrap().clone();
    assert_eq!(chats_row["state"], json!("failed"), "{chats_row}");
    assert_eq!(chats_row["fault"]["position"], json!(position), "{chats_row}");
    // The operator skips it: chats catch up and answer.
    gather_api::ops::skip(&app.app_state.db, "chats", position).await.expect("skip");
    let chats = app.get("/v1/me/chats", Some(&member), Some(position)).await;
    assert_eq!(chats.status, 200, "{:?}", chats.body);
}

/// `/metrics` serves Prometheus text with each projection's position and the xmin
/// fence, and a process without the api role serves it too (with health).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_projection_positions_and_the_log_fence() {
    let app = spawn_app(Profile::Postgres).await;
    let (_, member) = quick_member(&app).await;
    assert!(member.len() > 10);
    let projector = spawn_with_roles(&app, &[ProcessRole::Projector]).await;
    for process in [&app, &projector] {
        let res = process.http.get(process.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        let body = res.text().await.unwrap();
        assert!(body.contains("# TYPE gather_projection_position gauge"), "{body}");
        let members = body
            .lines()
            .find(|l| l.starts_with("gather_projection_position{projection=\"members\"}"))
            .unwrap_or_else(|| panic!("no members position in {body}"));
        let position: i64 = members.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(position >= 0, "{members}");
        assert!(body.lines().any(|l| l.starts_with("gather_log_fence_held_seconds")), "{body}");
    }
}
