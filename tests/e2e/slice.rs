//! The walking skeleton's vertical slice: register → login → become organiser →
//! create an activity → read it back, with read-your-writes and problem+json errors.

use crate::harness::{Answer, MODERATOR, TestApp, activity_body};
use serde_json::json;

both_profiles!(
    the_slice_works_end_to_end,
    bad_input_on_every_slice_endpoint_is_a_problem_and_changes_nothing,
    bootstrap_accounts_carry_their_roles,
    health_reports_ready_once_projectors_caught_up,
    registering_an_email_twice_is_refused_case_insensitively,
);

async fn the_slice_works_end_to_end(app: TestApp) {
    let (member_id, token) = app.register("ada@example.com").await;

    let a = app.post("/v1/me/organiser", Some(&token), json!({"organisation_name": "Clay Club"})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["id"], json!(member_id));
    assert!(a.header("etag").is_some());
    let pos = a.position();
    assert_eq!(a.body["position"], json!(pos));

    let me = app.get("/v1/me", Some(&token), Some(pos)).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["email"], "ada@example.com");
    assert_eq!(me.body["organiser"]["organisation_name"], "Clay Club");
    assert!(me.body["roles"].as_array().unwrap().contains(&json!("organiser")));
    assert!(me.position() >= pos);

    // The old token has no organiser role yet: the next one does.
    let a = app.post("/v1/activities", Some(&token), activity_body()).await;
    a.assert_problem(403, Some("forbidden"));
    let login = app.login("ADA@example.com", "correct horse battery").await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert!(login.body["roles"].as_array().unwrap().contains(&json!("organiser")));
    let token = login.body["token"].as_str().unwrap().to_string();

    let created = app.post("/v1/activities", Some(&token), activity_body()).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.header("location"), Some(format!("/v1/activities/{id}").as_str()));
    assert_eq!(created.body["version"], json!(0));
    assert_eq!(created.header("etag"), Some("\"0\""));

    let shown = app.get(&format!("/v1/activities/{id}"), Some(&token), Some(created.position())).await;
    assert_eq!(shown.status, 200, "{:?}", shown.body);
    assert_eq!(shown.body["title"], "Kids pottery");
    assert_eq!(shown.body["status"], "draft");
    assert_eq!(shown.body["seats_left"], json!(10));
    assert_eq!(shown.body["capacity"], json!(10));
    assert_eq!(shown.body["location"]["kind"], "venue");
    assert_eq!(shown.body["price"]["currency"], "EUR");
    assert_eq!(shown.body["version"], json!(0));

    // A draft is not public: guests and other members get a 404.
    let guest = app.get(&format!("/v1/activities/{id}"), None, None).await;
    guest.assert_problem(404, Some("not_found"));
    let (_, other) = app.register("bob@example.com").await;
    let a = app.get(&format!("/v1/activities/{id}"), Some(&other), None).await;
    a.assert_problem(404, None);
    // A moderator sees drafts.
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    let a = app.get(&format!("/v1/activities/{id}"), m.body["token"].as_str(), None).await;
    assert_eq!(a.status, 200);
}

async fn bad_input_on_every_slice_endpoint_is_a_problem_and_changes_nothing(app: TestApp) {
    let org = app.organiser("org@example.com").await;
    let before = app.event_count().await;

    let raw = |path: &str, body: &'static str, token: Option<&str>| {
        let mut r = app.http.post(app.url(path)).header("content-type", "application/json").body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    };
    // malformed JSON
    for path in ["/v1/auth/register", "/v1/auth/login", "/v1/me/organiser", "/v1/activities"] {
        let a = app.send(raw(path, "{not json", Some(&org))).await;
        a.assert_problem(400, Some("validation_failed"));
    }
    // missing fields, named
    let a = app.post("/v1/auth/register", None, json!({"email": "x@example.com", "password": "long enough pw"})).await;
    a.assert_problem(400, Some("validation_failed"));
    assert_eq!(a.body["errors"][0]["field"], "display_name", "{:?}", a.body);
    let a = app.post("/v1/auth/login", None, json!({"email": "x@example.com"})).await;
    a.assert_problem(400, None);
    let a = app.post("/v1/me/organiser", Some(&org), json!({})).await;
    a.assert_problem(400, None);
    let mut body = activity_body();
    body.as_object_mut().unwrap().remove("title");
    let a = app.post("/v1/activities", Some(&org), body).await;
    a.assert_problem(400, None);
    assert_eq!(a.body["errors"][0]["field"], "title");
    // wrong types
    let mut body = activity_body();
    body["capacity"] = json!("ten");
    let a = app.post("/v1/activities", Some(&org), body).await;
    a.assert_problem(400, None);
    assert_eq!(a.body["errors"][0]["field"], "capacity", "{:?}", a.body);
    let a = app.post("/v1/auth/register", None, json!({"email": 5, "password": "x", "display_name": "y"})).await;
    a.assert_problem(400, None);
    // domain limits, named
    let mut body = activity_body();
    body["capacity"] = json!(0);
    let a = app.post("/v1/activities", Some(&org), body).await;
    a.assert_problem(400, Some("validation_failed"));
    assert_eq!(a.body["errors"][0]["field"], "capacity");
    let mut body = activity_body();
    body["ends_at"] = json!("2030-05-01T13:00:00Z");
    let a = app.post("/v1/activities", Some(&org), body).await;
    a.assert_problem(400, None);
    let a = app
        .post(
            "/v1/auth/register",
            None,
            json!({"email": "not-an-email", "password": "long enough pw", "display_name": "y"}),
        )
        .await;
    a.assert_problem(400, None);
    assert_eq!(a.body["errors"][0]["field"], "email");
    let a = app
        .post("/v1/auth/register", None, json!({"email": "a@b.example", "password": "short", "display_name": "y"}))
        .await;
    a.assert_problem(400, None);
    assert_eq!(a.body["errors"][0]["field"], "password");
    // oversize body
    let big = format!("{{\"title\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let a = app
        .send(
            app.http
                .post(app.url("/v1/activities"))
                .bearer_auth(&org)
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
    a.assert_problem(413, None);
    // wrong content type
    let a = app.send(app.http.post(app.url("/v1/auth/login")).header("content-type", "text/plain").body("{}")).await;
    a.assert_problem(415, None);
    // bad tokens
    for token in ["garbage", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad"] {
        let a = app.post("/v1/activities", Some(token), activity_body()).await;
        a.assert_problem(401, None);
        let a = app.get("/v1/me", Some(token), None).await;
        a.assert_problem(401, None);
        let a = app.post("/v1/me/organiser", Some(token), json!({"organisation_name": "X Y Z"})).await;
        a.assert_problem(401, None);
    }
    let a = app.send(app.http.get(app.url("/v1/me")).header("authorization", "Basic abc")).await;
    a.assert_problem(401, None);
    // no token where one is needed
    let a = app.get("/v1/me", None, None).await;
    a.assert_problem(401, None);
    let a = app.post("/v1/activities", None, activity_body()).await;
    a.assert_problem(401, None);
    // wrong credentials
    let a = app.login("org@example.com", "wrong password!").await;
    a.assert_problem(401, None);
    let a = app.login("nobody@example.com", "wrong password!").await;
    a.assert_problem(401, None);
    // bad ids and headers
    let a = app.get("/v1/activities/not-a-uuid", None, None).await;
    a.assert_problem(404, None);
    let a =
        app.send(app.http.get(app.url("/v1/me")).bearer_auth(&org).header("Gather-Min-Position", "minus one")).await;
    a.assert_problem(400, None);

    assert_eq!(app.event_count().await, before, "bad input must append nothing");
}

async fn bootstrap_accounts_carry_their_roles(app: TestApp) {
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    assert_eq!(m.status, 200, "{:?}", m.body);
    assert!(m.body["roles"].as_array().unwrap().contains(&json!("moderator")));
    let a = app.login(crate::harness::AUDITOR.0, crate::harness::AUDITOR.1).await;
    assert!(a.body["roles"].as_array().unwrap().contains(&json!("auditor")));
    assert!(!a.body["roles"].as_array().unwrap().contains(&json!("moderator")));
}

async fn health_reports_ready_once_projectors_caught_up(app: TestApp) {
    let live = app.get("/health/live", None, None).await;
    assert_eq!(live.status, 200);
    // Ready is reached by waiting on the condition, not by sleeping a fixed time.
    let mut ready: Option<Answer> = None;
    for _ in 0..100 {
        let a = app.get("/health/ready", None, None).await;
        if a.status == 200 {
            ready = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ready = ready.expect("ready within 5 s");
    assert_eq!(ready.body["database"], json!(true));
    assert_eq!(ready.body["broker"], json!(true));
    assert!(ready.body["projections"]["members"].is_object());
    assert_eq!(ready.body["projections"]["members"]["within_bound"], json!(true), "{:?}", ready.body);
    assert!(ready.body["projections"]["members"]["lag_ms"].is_i64(), "{:?}", ready.body);
}

async fn registering_an_email_twice_is_refused_case_insensitively(app: TestApp) {
    app.register("dup@example.com").await;
    let before = app.event_count().await;
    let a = app
        .post(
            "/v1/auth/register",
            None,
            json!({"email": "DUP@Example.com", "password": "another password", "display_name": "Two"}),
        )
        .await;
    a.assert_problem(409, Some("email_taken"));
    assert_eq!(app.event_count().await, before);
}

both_profiles!(registration_sends_one_welcome_email_through_the_outbox);

async fn registration_sends_one_welcome_email_through_the_outbox(app: TestApp) {
    app.register("welcome@example.com").await;
    let dir = app.app_state.settings.data_dir.join("mail");
    // Wait on the condition (the sender polls its outbox), bounded.
    let mut found = Vec::new();
    for _ in 0..200 {
        found = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect())
            .unwrap_or_default();
        found.retain(|m: &String| m.contains("welcome@example.com"));
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(found.len(), 1, "exactly one welcome email in {}", dir.display());
    assert!(found[0].contains("Subject: Welcome to Gather"), "{}", found[0]);
    assert!(found[0].contains("Hello Ada"));
}

both_profiles!(an_undecodable_event_stops_the_projectors_with_a_clear_status);

async fn an_undecodable_event_stops_the_projectors_with_a_clear_status(app: TestApp) {
    use gather_commands::store::{AppendMeta, ExpectedVersion, NewEvent, StreamAppend};
    let (member_id, _) = app.register("corrupt@example.com").await;
    let stream = format!("member-{member_id}");
    let bad = NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "NoSuchEvent".into(),
        schema_version: 1,
        data: json!({}),
    };
    app.app_state
        .store
        .append(
            &AppendMeta::new(uuid::Uuid::now_v7(), None),
            vec![StreamAppend { stream: stream.clone(), expected: ExpectedVersion::Exact(1), events: vec![bad] }],
        )
        .await
        .unwrap();
    let mut answer = None;
    for _ in 0..200 {
        let a = app.get("/health/ready", None, None).await;
        if a.body["projections"]["members"]["state"].as_str().is_some_and(|s| s.starts_with("Failed")) {
            answer = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let a = answer.expect("the members projector reports the failure");
    assert_eq!(a.status, 503);
    let state = a.body["projections"]["members"]["state"].as_str().unwrap();
    assert!(state.contains(&stream) && state.contains("@2") && state.contains("NoSuchEvent"), "{state}");
}

both_profiles!(events_carry_the_command_and_correlation_ids_of_their_request);

async fn events_carry_the_command_and_correlation_ids_of_their_request(app: TestApp) {
    let (member_id, token) = app.register("meta@example.com").await;
    let request_id = "11111111-2222-4333-8444-555555555555";
    let a = app
        .send(
            app.http
                .post(app.url("/v1/me/organiser"))
                .bearer_auth(&token)
                .header("X-Request-Id", request_id)
                .header("Idempotency-Key", "meta-1")
                .json(&json!({"organisation_name": "Meta Org"})),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let events: Vec<_> =
        futures::TryStreamExt::try_collect(app.app_state.store.read_stream(&format!("member-{member_id}"), 0))
            .await
            .unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event_type, "OrganiserProfileCreated");
    assert_eq!(last.correlation_id.to_string(), request_id);
    assert_eq!(last.actor.map(|a| a.to_string()), Some(member_id.clone()));
    assert_eq!(last.schema_version, 1);
    assert_ne!(last.command_id, last.correlation_id, "the command id comes from the Idempotency-Key");
}
