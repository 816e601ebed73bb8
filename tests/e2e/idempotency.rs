//! `Idempotency-Key`: a repeat returns the first answer and appends nothing; the same
//! key with another body is a 422; racing repeats append once.

use crate::harness::{TestApp, activity_body};
use serde_json::json;

both_profiles!(
    a_repeated_key_returns_the_first_answer_and_appends_nothing,
    racing_requests_with_one_key_append_once,
    a_repeated_registration_key_returns_the_same_member,
);

async fn post_with_key(app: &TestApp, token: &str, key: &str, body: serde_json::Value) -> crate::harness::Answer {
    app.send(app.http.post(app.url("/v1/activities")).bearer_auth(token).header("Idempotency-Key", key).json(&body))
        .await
}

async fn a_repeated_key_returns_the_first_answer_and_appends_nothing(app: TestApp) {
    let org = app.organiser("idem@example.com").await;
    let first = post_with_key(&app, &org, "create-1", activity_body()).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let count = app.event_count().await;
    let again = post_with_key(&app, &org, "create-1", activity_body()).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.event_count().await, count, "a repeat appends nothing");

    let mut other = activity_body();
    other["title"] = json!("Something else");
    let reused = post_with_key(&app, &org, "create-1", other).await;
    reused.assert_problem(422, Some("idempotency_key_reused"));
    assert_eq!(app.event_count().await, count);

    // A domain error is remembered too.
    let mut bad = activity_body();
    bad["starts_at"] = json!("2001-01-01T10:00:00Z");
    bad["ends_at"] = json!("2001-01-01T12:00:00Z");
    let e1 = post_with_key(&app, &org, "create-2", bad.clone()).await;
    assert!(e1.status >= 400 && e1.status < 500, "{:?}", e1.body);
    let e2 = post_with_key(&app, &org, "create-2", bad).await;
    assert_eq!(e2.status, e1.status);
    assert_eq!(e2.body, e1.body);

    // Bad keys are refused.
    let long = "k".repeat(201);
    let a = post_with_key(&app, &org, &long, activity_body()).await;
    a.assert_problem(400, None);
    assert_eq!(app.event_count().await, count);
}

async fn racing_requests_with_one_key_append_once(app: TestApp) {
    let org = app.organiser("race@example.com").await;
    let count = app.event_count().await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let req = app
                .http
                .post(app.url("/v1/activities"))
                .bearer_auth(&org)
                .header("Idempotency-Key", "race-key")
                .json(&activity_body());
            tokio::spawn(async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap() })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let body = t.await.unwrap();
        ids.insert(body["id"].as_str().expect("an id").to_string());
    }
    assert_eq!(ids.len(), 1, "every racing request answers with the one activity");
    assert_eq!(app.event_count().await, count + 1, "one ActivityDrafted");
}

async fn a_repeated_registration_key_returns_the_same_member(app: TestApp) {
    let body = json!({"email": "twice@example.com", "password": "correct horse battery", "display_name": "Twice"});
    let send = || app.send(app.http.post(app.url("/v1/auth/register")).header("Idempotency-Key", "reg-1").json(&body));
    let a = send().await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let b = send().await;
    assert_eq!(b.status, 201, "{:?}", b.body);
    assert_eq!(a.body["member_id"], b.body["member_id"]);
}

both_profiles!(racing_repeats_name_the_same_new_resource);

async fn racing_repeats_name_the_same_new_resource(app: TestApp) {
    let (_, token) = app.register("kids@example.com").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let req = app
                .http
                .post(app.url("/v1/me/children"))
                .bearer_auth(&token)
                .header("Idempotency-Key", "child-1")
                .json(&json!({"name": "Ada Junior", "birth_date": "2020-02-02"}));
            tokio::spawn(async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap() })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut last = 0;
    for t in tasks {
        let body = t.await.unwrap();
        ids.insert(body["id"].as_str().expect("an id").to_string());
        last = last.max(body["position"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 1, "every racing repeat names the one child");
    let me = app.get("/v1/me", Some(&token), Some(last)).await;
    let children = me.body["children"].as_array().unwrap();
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(children[0]["id"].as_str(), ids.iter().next().map(|s| s.as_str()));
}
