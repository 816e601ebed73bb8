//! A member's own commands (profile, password, children, forgetting, favourites) and a
//! moderator's suspension, through HTTP: answers, observable effects, and refusals that
//! append nothing.

use crate::harness::{Answer, MODERATOR, TestApp, activity_body};
use gather_commands::CommandMeta;
use gather_domain::activity::{Activity, ActivityCommand};
use gather_domain::{Actor, Role};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

both_profiles!(
    updating_the_profile_renames_the_member,
    changing_the_password_swaps_the_login,
    children_are_added_and_removed,
    forgetting_erases_the_profile_and_the_login,
    moderators_suspend_and_suspended_members_are_refused,
    favourites_toggle_on_a_visible_activity,
);

pub const PASSWORD: &str = "correct horse battery";

/// Any request, with an optional token and JSON body.
pub async fn call(app: &TestApp, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
    let mut req = app.http.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    app.send(req).await
}

/// Asserts a command answer: the status, `{id, position, version}`, `ETag` and
/// `Gather-Position` agreeing with the body; returns the id.
pub fn assert_command(a: &Answer, status: u16) -> String {
    assert_eq!(a.status, status, "{:?}", a.body);
    let id = a.body["id"].as_str().expect("id");
    Uuid::parse_str(id).expect("id is a UUID");
    let version = a.body["version"].as_i64().expect("version");
    assert_eq!(a.header("etag"), Some(format!("\"{version}\"").as_str()));
    assert_eq!(a.body["position"], json!(a.position()));
    assert!(a.position() > 0);
    id.to_string()
}

/// Asserts a 404 problem whose detail names what was not found (`chat`, `child`, …).
pub fn assert_not_found(a: &Answer, what: &str) {
    a.assert_problem(404, Some("not_found"));
    assert!(a.body["detail"].as_str().unwrap().contains(what), "{what}: {:?}", a.body);
}

pub async fn moderator_token(app: &TestApp) -> String {
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    assert_eq!(m.status, 200, "{:?}", m.body);
    m.body["token"].as_str().unwrap().to_string()
}

/// Suspends `member_id` as the bootstrap moderator.
pub async fn suspend(app: &TestApp, member_id: &str) -> Answer {
    let m = moderator_token(app).await;
    let a = app.post(&format!("/v1/members/{member_id}/suspend"), Some(&m), json!({"reason": "spam"})).await;
    assert_command(&a, 202);
    a
}

async fn updating_the_profile_renames_the_member(app: TestApp) {
    let (member_id, token) = app.register("ada@example.com").await;

    let a = call(&app, Method::PATCH, "/v1/me", Some(&token), Some(json!({"display_name": "  Grace  "}))).await;
    assert_eq!(assert_command(&a, 202), member_id);
    assert_eq!(a.body["version"], json!(2), "registered (2 events), then renamed");
    let me = app.get("/v1/me", Some(&token), Some(a.position())).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["display_name"], "Grace");

    let before = app.event_count().await;
    let a = call(&app, Method::PATCH, "/v1/me", None, Some(json!({"display_name": "Eve"}))).await;
    a.assert_problem(401, None);
    let a = call(&app, Method::PATCH, "/v1/me", Some(&token), Some(json!({}))).await;
    a.assert_problem(400, Some("validation_failed"));
    assert_eq!(a.body["errors"][0]["field"], "display_name", "{:?}", a.body);
    let a = call(&app, Method::PATCH, "/v1/me", Some(&token), Some(json!({"display_name": "   "}))).await;
    a.assert_problem(400, Some("validation_failed"));
    assert_eq!(a.body["errors"][0]["field"], "display_name", "{:?}", a.body);
    let a = call(&app, Method::PATCH, "/v1/me", Some(&token), Some(json!({"display_name": "x".repeat(61)}))).await;
    a.assert_problem(400, None);
    assert_eq!(app.event_count().await, before, "refused updates append nothing");
    let me = app.get("/v1/me", Some(&token), None).await;
    assert_eq!(me.body["display_name"], "Grace");
}

async fn changing_the_password_swaps_the_login(app: TestApp) {
    let (member_id, token) = app.register("ada@example.com").await;
    let path = "/v1/me/password";

    let before = app.event_count().await;
    let a = app.post(path, None, json!({"old_password": PASSWORD, "new_password": "a brand new secret"})).await;
    a.assert_problem(401, None);
    let a = app
        .post(path, Some(&token), json!({"old_password": "not my password", "new_password": "a brand new secret"}))
        .await;
    a.assert_problem(403, Some("wrong_password"));
    let a = app.post(path, Some(&token), json!({"old_password": PASSWORD, "new_password": "short"})).await;
    a.assert_problem(400, Some("validation_failed"));
    assert_eq!(a.body["errors"][0]["field"], "new_password", "{:?}", a.body);
    let a = app.post(path, Some(&token), json!({"new_password": "a brand new secret"})).await;
    a.assert_problem(400, None);
    assert_eq!(a.body["errors"][0]["field"], "old_password", "{:?}", a.body);
    assert_eq!(app.event_count().await, before, "refused changes append nothing");
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status, 200, "the old password still works");

    let a = app.post(path, Some(&token), json!({"old_password": PASSWORD, "new_password": "a brand new secret"})).await;
    assert_eq!(assert_command(&a, 202), member_id);
    assert_eq!(app.event_count().await, before + 1);
    let new = app.login("ada@example.com", "a brand new secret").await;
    assert_eq!(new.status, 200, "{:?}", new.body);
    assert_eq!(new.body["member_id"], json!(member_id));
    app.login("ada@example.com", PASSWORD).await.assert_problem(401, None);
    // The plain password never reaches an event.
    let leaked: i64 = gather_commands::on_db_read!(&app.app_state.db, p =>
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE CAST(data AS TEXT) LIKE '%brand new secret%'")
            .fetch_one(p).await)
    .unwrap();
    assert_eq!(leaked, 0);
}

async fn children_are_added_and_removed(app: TestApp) {
    let (member_id, token) = app.register("ada@example.com").await;

    let a = app.post("/v1/me/children", Some(&token), json!({"name": "Lou", "birth_date": "2019-04-02"})).await;
    let child_id = assert_command(&a, 201);
    assert_ne!(child_id, member_id, "the answer names the child");
    assert_eq!(a.header("location"), Some("/v1/me"));
    let me = app.get("/v1/me", Some(&token), Some(a.position())).await;
    assert_eq!(me.body["children"], json!([{"id": child_id, "name": "Lou", "birth_date": "2019-04-02"}]));

    let before = app.event_count().await;
    let bad = [
        (json!({"name": "Lou"}), "birth_date"),
        (json!({"birth_date": "2019-04-02"}), "name"),
        (json!({"name": "Lou", "birth_date": "2019-13-40"}), "birth_date"),
        (json!({"name": "Lou", "birth_date": "2999-01-01"}), "birth_date"),
        (json!({"name": "", "birth_date": "2019-04-02"}), "name"),
    ];
    for (body, field) in bad {
        let a = app.post("/v1/me/children", Some(&token), body.clone()).await;
        a.assert_problem(400, Some("validation_failed"));
        assert_eq!(a.body["errors"][0]["field"], field, "{body}: {:?}", a.body);
    }
    let a = app.post("/v1/me/children", None, json!({"name": "Lou", "birth_date": "2019-04-02"})).await;
    a.assert_problem(401, None);
    let a = call(&app, Method::DELETE, &format!("/v1/me/children/{child_id}"), None, None).await;
    a.assert_problem(401, None);
    let a = call(&app, Method::DELETE, &format!("/v1/me/children/{}", Uuid::now_v7()), Some(&token), None).await;
    assert_not_found(&a, "child");
    let a = call(&app, Method::DELETE, "/v1/me/children/not-a-uuid", Some(&token), None).await;
    a.assert_problem(404, None);
    // Another member cannot remove this child: it is not on their profile.
    let (_, other) = app.register("bob@example.com").await;
    let before_other = app.event_count().await;
    let a = call(&app, Method::DELETE, &format!("/v1/me/children/{child_id}"), Some(&other), None).await;
    assert_not_found(&a, "child");
    assert_eq!(app.event_count().await, before_other);
    assert!(before_other > before, "bob registered");

    let a = call(&app, Method::DELETE, &format!("/v1/me/children/{child_id}"), Some(&token), None).await;
    assert_eq!(assert_command(&a, 202), member_id);
    let me = app.get("/v1/me", Some(&token), Some(a.position())).await;
    assert_eq!(me.body["children"], json!([]));
}

async fn forgetting_erases_the_profile_and_the_login(app: TestApp) {
    let (member_id, token) = app.register("ada@example.com").await;
    let a = call(&app, Method::DELETE, "/v1/me", None, None).await;
    a.assert_problem(401, None);

    let a = call(&app, Method::DELETE, "/v1/me", Some(&token), None).await;
    assert_eq!(assert_command(&a, 202), member_id);
    // Its token is worthless from then on (issue 11: a forgotten member's token is a 401).
    app.get("/v1/me", Some(&token), Some(a.position())).await.assert_problem(401, None);
    let (email, name): (String, String) = gather_commands::on_db_read!(&app.app_state.db, p =>
        sqlx::query_as("SELECT email, display_name FROM members WHERE member_id = $1")
            .bind(uuid::Uuid::parse_str(&member_id).unwrap()).fetch_one(p).await)
    .unwrap();
    assert_eq!(email, "");
    assert_ne!(name, "Ada");
    app.login("ada@example.com", PASSWORD).await.assert_problem(401, None);

    // The old token no longer acts.
    let before = app.event_count().await;
    let a = call(&app, Method::PATCH, "/v1/me", Some(&token), Some(json!({"display_name": "Back"}))).await;
    a.assert_problem(401, None);
    assert_eq!(app.event_count().await, before);
}

async fn moderators_suspend_and_suspended_members_are_refused(app: TestApp) {
    let (ada_id, ada) = app.register("ada@example.com").await;
    let (_, bob) = app.register("bob@example.com").await;
    let moderator = moderator_token(&app).await;
    let path = format!("/v1/members/{ada_id}/suspend");

    let before = app.event_count().await;
    app.post(&path, None, json!({"reason": "spam"})).await.assert_problem(401, None);
    app.post(&path, Some(&bob), json!({"reason": "spam"})).await.assert_problem(403, Some("forbidden"));
    let a = app.post(&path, Some(&moderator), json!({})).await;
    a.assert_problem(400, Some("validation_failed"));
    assert_eq!(a.body["errors"][0]["field"], "reason", "{:?}", a.body);
    let a = app.post(&path, Some(&moderator), json!({"reason": " "})).await;
    a.assert_problem(400, None);
    assert_eq!(a.body["errors"][0]["field"], "reason", "{:?}", a.body);
    let a =
        app.post(&format!("/v1/members/{}/suspend", Uuid::now_v7()), Some(&moderator), json!({"reason": "spam"})).await;
    assert_not_found(&a, "member");
    assert_eq!(app.event_count().await, before, "refused suspensions append nothing");

    let a = app.post(&path, Some(&moderator), json!({"reason": "spam"})).await;
    assert_eq!(assert_command(&a, 202), ada_id);
    let me = app.get("/v1/me", Some(&ada), Some(a.position())).await;
    assert_eq!(me.body["suspended"], json!(true), "{:?}", me.body);
    // Suspending again changes nothing.
    let count = app.event_count().await;
    let again = app.post(&path, Some(&moderator), json!({"reason": "spam again"})).await;
    assert_command(&again, 202);
    assert_eq!(again.body["version"], a.body["version"]);
    assert_eq!(app.event_count().await, count);

    // Every command of the suspended member is refused, whatever its token says.
    let refused = [
        call(&app, Method::PATCH, "/v1/me", Some(&ada), Some(json!({"display_name": "Eve"}))).await,
        app.post("/v1/me/children", Some(&ada), json!({"name": "Lou", "birth_date": "2019-04-02"})).await,
        app.post("/v1/me/password", Some(&ada), json!({"old_password": PASSWORD, "new_password": "another password"}))
            .await,
        app.post("/v1/me/organiser", Some(&ada), json!({"organisation_name": "Clay Club"})).await,
    ];
    for a in refused {
        a.assert_problem(403, Some("member_suspended"));
    }
    app.login("ada@example.com", PASSWORD).await.assert_problem(403, Some("member_suspended"));
    assert_eq!(app.event_count().await, count, "a suspended member appends nothing");

    // The right to be forgotten outlives a suspension.
    let a = call(&app, Method::DELETE, "/v1/me", Some(&ada), None).await;
    assert_eq!(assert_command(&a, 202), ada_id);
}

/// Creates an activity as `org` and publishes it (submit + approve straight through the
/// command handler: this test is about favourites, not the moderation endpoints).
async fn published_activity(app: &TestApp, org: &str) -> (String, i64) {
    let created = app.post("/v1/activities", Some(org), activity_body()).await;
    let id = assert_command(&created, 201);
    let org_id = app.get("/v1/me", Some(org), None).await.body["member_id"].as_str().unwrap().parse().unwrap();
    let activity_id: Uuid = id.parse().unwrap();
    let commands = &app.app_state.commands;
    let as_org = CommandMeta::new(Actor::new(org_id, [Role::Member, Role::Organiser]));
    commands.handle::<Activity>(activity_id, ActivityCommand::Submit, &as_org).await.expect("submit");
    let as_mod = CommandMeta::new(Actor::new(Uuid::now_v7(), [Role::Member, Role::Moderator]));
    let out = commands.handle::<Activity>(activity_id, ActivityCommand::Approve, &as_mod).await.expect("approve");
    (id, out.position)
}

async fn favourites_toggle_on_a_visible_activity(app: TestApp) {
    let org = app.organiser("org@example.com").await;
    let (activity, published_at) = published_activity(&app, &org).await;
    let draft = app.post("/v1/activities", Some(&org), activity_body()).await;
    let draft = assert_command(&draft, 201);
    let (member_id, token) = app.register("ada@example.com").await;
    let path = format!("/v1/activities/{activity}/favourite");
    let shown = app.get(&format!("/v1/activities/{activity}"), None, Some(published_at)).await;
    assert_eq!(shown.body["favourites"], json!(0), "{:?}", shown.body);

    // Publishing starts background work (the process manager opens the chat room), so
    // "nothing appended" is checked on the member's own stream.
    let member_stream = format!("member-{member_id}");
    let member_events = || async { app.app_state.store.stream_version(&member_stream).await.unwrap() };
    let before = member_events().await;
    call(&app, Method::PUT, &path, None, None).await.assert_problem(401, None);
    call(&app, Method::DELETE, &path, None, None).await.assert_problem(401, None);
    for missing in [format!("/v1/activities/{}/favourite", Uuid::now_v7()), format!("/v1/activities/{draft}/favourite")]
    {
        call(&app, Method::PUT, &missing, Some(&token), None).await.assert_problem(404, None);
        call(&app, Method::DELETE, &missing, Some(&token), None).await.assert_problem(404, None);
    }
    call(&app, Method::PUT, "/v1/activities/nope/favourite", Some(&token), None).await.assert_problem(404, None);
    assert_eq!(member_events().await, before, "refused favourites append nothing");

    let a = call(&app, Method::PUT, &path, Some(&token), None).await;
    assert_eq!(assert_command(&a, 202), member_id);
    let shown = app.get(&format!("/v1/activities/{activity}"), None, Some(a.position())).await;
    assert_eq!(shown.body["favourites"], json!(1), "{:?}", shown.body);
    // Favouriting twice is idempotent.
    let count = member_events().await;
    let again = call(&app, Method::PUT, &path, Some(&token), None).await;
    assert_command(&again, 202);
    assert_eq!(member_events().await, count);

    let a = call(&app, Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(assert_command(&a, 202), member_id);
    let shown = app.get(&format!("/v1/activities/{activity}"), None, Some(a.position())).await;
    assert_eq!(shown.body["favourites"], json!(0), "{:?}", shown.body);

    // The organiser may favourite their own draft; a suspended member may not favourite at all.
    let a = call(&app, Method::PUT, &format!("/v1/activities/{draft}/favourite"), Some(&org), None).await;
    assert_command(&a, 202);
    suspend(&app, &member_id).await;
    let count = member_events().await;
    call(&app, Method::PUT, &path, Some(&token), None).await.assert_problem(403, Some("member_suspended"));
    assert_eq!(member_events().await, count);
}
