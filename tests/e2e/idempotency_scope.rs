//! The scope of an `Idempotency-Key` is (member, method, full path, key): one key used
//! on two resources is two commands; a new token of the same member still replays the
//! first answer; a changed body is refused whatever the token and under concurrency;
//! login is never replayed.

use crate::harness::{Answer, TestApp, published_activity, quick_member};
use serde_json::{Value, json};

both_profiles!(
    one_key_used_on_two_activities_books_both,
    a_new_token_of_the_same_member_replays_the_first_answer,
    a_changed_body_is_refused_after_a_new_login,
    racing_requests_with_one_key_and_different_bodies_let_exactly_one_win,
    login_is_never_replayed_from_an_idempotency_record,
);

async fn post_keyed(app: &TestApp, path: &str, token: Option<&str>, key: &str, body: Value) -> Answer {
    let mut req = app.http.post(app.url(path)).header("Idempotency-Key", key).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    app.send(req).await
}

async fn one_key_used_on_two_activities_books_both(app: TestApp) {
    let org = app.organiser("scope-org@example.com").await;
    let a = published_activity(&app, &org, 10, false).await;
    let b = published_activity(&app, &org, 10, false).await;
    let (_, member) = quick_member(&app).await;

    let first =
        post_keyed(&app, &format!("/v1/activities/{a}/bookings"), Some(&member), "k", json!({"seats": 1})).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.body["status"], "confirmed");
    let second =
        post_keyed(&app, &format!("/v1/activities/{b}/bookings"), Some(&member), "k", json!({"seats": 1})).await;
    assert_eq!(second.status, 201, "{:?}", second.body);
    assert_eq!(second.header("idempotent-replayed"), None, "another path is another request");
    assert_eq!(second.body["status"], "confirmed", "{:?}", second.body);
    assert_ne!(second.body["id"], first.body["id"]);
    let location = second.header("location").expect("a Location").to_string();
    assert!(location.starts_with(&format!("/v1/activities/{b}/bookings/")), "{location}");
    let shown = app.get(&location, Some(&member), Some(second.position())).await;
    assert_eq!(shown.status, 200, "the booking of B exists: {:?}", shown.body);
    assert_eq!(shown.body["status"], "confirmed");
}

async fn a_new_token_of_the_same_member_replays_the_first_answer(app: TestApp) {
    let (id, first_token) = quick_member(&app).await;
    // Another token of the same member (its claims differ, so the token does too).
    let second_token =
        app.app_state.jwt.issue(id, &[gather_domain::Role::Member, gather_domain::Role::Organiser]).unwrap();
    assert_ne!(first_token, second_token);
    let body = json!({"name": "Ada Junior", "birth_date": "2020-02-02"});
    let first = post_keyed(&app, "/v1/me/children", Some(&first_token), "child-k", body.clone()).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let count = app.event_count().await;
    let again = post_keyed(&app, "/v1/me/children", Some(&second_token), "child-k", body).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(app.event_count().await, count, "a replay appends nothing");
}

async fn a_changed_body_is_refused_after_a_new_login(app: TestApp) {
    let (id, first_token) = quick_member(&app).await;
    let second_token =
        app.app_state.jwt.issue(id, &[gather_domain::Role::Member, gather_domain::Role::Organiser]).unwrap();
    let first = post_keyed(
        &app,
        "/v1/me/children",
        Some(&first_token),
        "child-k",
        json!({"name": "Ada Junior", "birth_date": "2020-02-02"}),
    )
    .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let count = app.event_count().await;
    let other = post_keyed(
        &app,
        "/v1/me/children",
        Some(&second_token),
        "child-k",
        json!({"name": "Bob Junior", "birth_date": "2019-03-03"}),
    )
    .await;
    other.assert_problem(422, Some("idempotency_key_reused"));
    assert_eq!(app.event_count().await, count, "nothing appended");
}

async fn racing_requests_with_one_key_and_different_bodies_let_exactly_one_win(app: TestApp) {
    let (_, token) = quick_member(&app).await;
    let count = app.event_count().await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let req = app
                .http
                .post(app.url("/v1/me/children"))
                .bearer_auth(&token)
                .header("Idempotency-Key", "race-bodies")
                .json(&json!({"name": format!("Child {i}"), "birth_date": "2020-02-02"}));
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                (status, res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => created += 1,
            422 => {
                assert_eq!(body["code"], "idempotency_key_reused", "{body:?}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body:?}"),
        }
    }
    assert_eq!((created, refused), (1, 9));
    assert_eq!(app.event_count().await, count + 1, "one ChildAdded");
}

async fn login_is_never_replayed_from_an_idempotency_record(app: TestApp) {
    let (_, token) = app.register("replay-login@example.com").await;
    let login = |password: &str| {
        post_keyed(
            &app,
            "/v1/auth/login",
            None,
            "login-k",
            json!({"email": "replay-login@example.com", "password": password}),
        )
    };
    let first = login("correct horse battery").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let a = app
        .post(
            "/v1/me/password",
            Some(&token),
            json!({"old_password": "correct horse battery", "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let old = login("correct horse battery").await;
    old.assert_problem(401, None);
    assert_eq!(old.header("idempotent-replayed"), None);
    let new = login("a brand new password").await;
    assert_eq!(new.status, 200, "{:?}", new.body);
}
