//! Operators: `GET /v1/admin/projections`, rebuilding a projection beside the live one
//! (`POST /v1/admin/projections/{name}/rebuild`), and the read side's clean-up jobs.

use crate::harness::{
    Answer, MODERATOR, Profile, TestApp, activity_body, eventually, projection, projections, published_activity,
    quick_member, rebuilt, spawn_app, spawn_beside,
};
use gather_commands::{on_db, on_db_read};
use gather_projections::rebuild::Rebuild;
use serde_json::json;
use uuid::Uuid;

both_profiles!(
    a_rebuild_restores_a_damaged_view_while_writes_go_on,
    only_moderators_rebuild_and_only_projections_that_own_tables,
    a_running_rebuild_is_refused_and_a_stale_one_taken_over,
    a_failed_rebuild_leaves_the_live_view_serving,
    expired_invitations_and_old_emails_are_cleaned_up,
);

/// Appends `n` events no projection reads, so a rebuild has a log long enough to
/// overlap with the writes a test makes meanwhile.
async fn noise(app: &TestApp, n: usize) {
    use gather_commands::store::{AppendMeta, ExpectedVersion, NewEvent, StreamAppend};
    for _ in 0..n / 250 {
        let events = (0..250)
            .map(|i| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "Noise".into(),
                schema_version: 1,
                data: json!({"i": i}),
            })
            .collect();
        let stream = format!("noise-{}", Uuid::now_v7());
        let append = StreamAppend { stream, expected: ExpectedVersion::NoStream, events };
        app.app_state.store.append(&AppendMeta::new(Uuid::now_v7(), None), vec![append]).await.unwrap();
    }
}

/// Two processes run the projectors over one database: each event is applied once
/// (a batch applies only on the checkpoint it was read from; the loser follows), also
/// when one process rebuilds and swaps while the other's projector knows nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projector_processes_apply_each_event_once_across_a_swap() {
    let a = spawn_app(Profile::Postgres).await;
    let b = spawn_beside(&a).await;
    let org = a.organiser("twice@example.com").await;
    let activity = published_activity(&a, &org, 50, false).await;
    let mut members = Vec::new();
    for _ in 0..24 {
        members.push(quick_member(&a).await.1);
    }
    let mut last = 0;
    for (i, member) in members[..12].iter().enumerate() {
        let app = if i % 2 == 0 { &a } else { &b };
        last = favourite(app, member, &activity).await.position();
    }
    for app in [&a, &b] {
        let shown = app.get(&format!("/v1/activities/{activity}"), None, Some(last)).await;
        assert_eq!(shown.status, 200, "{:?}", shown.body);
        assert_eq!(shown.body["favourites"], json!(12), "{:?}", shown.body);
    }
    // Rebuild through A while B takes writes.
    noise(&a, 5_000).await;
    let moderator = moderator(&a).await;
    let r = a.post("/v1/admin/projections/activities/rebuild", Some(&moderator), json!({})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    for member in &members[12..] {
        last = last.max(favourite(&b, member, &activity).await.position());
    }
    rebuilt(&a, &moderator, "activities").await;
    for app in [&a, &b] {
        let shown = app.get(&format!("/v1/activities/{activity}"), None, Some(last)).await;
        assert_eq!(shown.status, 200, "{:?}", shown.body);
        assert_eq!(shown.body["favourites"], json!(24), "{:?}", shown.body);
    }
}

async fn moderator(app: &TestApp) -> String {
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    assert_eq!(m.status, 200, "{:?}", m.body);
    m.body["token"].as_str().unwrap().to_string()
}

/// The names of a table's indexes (and whether it has a primary key), as the catalog has them.
async fn catalog(app: &TestApp, table: &str) -> (Vec<String>, bool) {
    let db = &app.app_state.db;
    if db.is_postgres() {
        let names: Vec<String> = on_db_read!(db, p => sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1 ORDER BY 1",
        ).bind(table).fetch_all(p).await)
        .unwrap();
        let pk: i64 = on_db_read!(db, p => sqlx::query_scalar(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'",
        ).bind(table).fetch_one(p).await)
        .unwrap();
        (names, pk == 1)
    } else {
        let names: Vec<String> = on_db_read!(db, p => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 ORDER BY 1",
        ).bind(table).fetch_all(p).await)
        .unwrap();
        (names, true)
    }
}

async fn shadow_tables(app: &TestApp) -> i64 {
    let db = &app.app_state.db;
    let sql = if db.is_postgres() {
        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE '%\\_\\_rebuild'"
    } else {
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE '%\\_\\_rebuild' ESCAPE '\\'"
    };
    on_db_read!(db, p => sqlx::query_scalar(sql).fetch_one(p).await).unwrap()
}

async fn favourite(app: &TestApp, token: &str, activity: &str) -> Answer {
    let req = app.http.put(app.url(&format!("/v1/activities/{activity}/favourite"))).bearer_auth(token);
    let a = app.send(req).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    a
}

async fn a_rebuild_restores_a_damaged_view_while_writes_go_on(app: TestApp) {
    let org = app.organiser("rebuild@example.com").await;
    let first = published_activity(&app, &org, 50, false).await;
    let second = published_activity(&app, &org, 50, false).await;
    let mut members = Vec::new();
    for _ in 0..8 {
        members.push(quick_member(&app).await.1);
    }
    for token in &members[..3] {
        favourite(&app, token, &first).await;
    }
    let booked = app.post(&format!("/v1/activities/{first}/bookings"), Some(&members[0]), json!({"seats": 2})).await;
    assert_eq!(booked.status, 201, "{:?}", booked.body);
    let seen = app.get(&format!("/v1/activities/{first}"), None, Some(booked.position())).await;
    assert_eq!((seen.body["favourites"].clone(), seen.body["seats_left"].clone()), (json!(3), json!(48)));
    let indexes_before = catalog(&app, "activities").await;

    // Damage the live view: a wrong title and count on one row, another row gone.
    let db = &app.app_state.db;
    let (first_id, second_id): (Uuid, Uuid) = (first.parse().unwrap(), second.parse().unwrap());
    on_db!(db, p => sqlx::query("UPDATE activities SET title = 'damaged', favourites = 99 WHERE activity_id = $1")
        .bind(first_id).execute(p).await.map(|r| r.rows_affected()))
    .unwrap();
    on_db!(db, p => sqlx::query("DELETE FROM activities WHERE activity_id = $1")
        .bind(second_id).execute(p).await.map(|r| r.rows_affected()))
    .unwrap();
    assert_eq!(app.get(&format!("/v1/activities/{second}"), None, None).await.status, 404);

    let moderator = moderator(&app).await;
    noise(&app, 3_000).await;
    let a = app.post("/v1/admin/projections/activities/rebuild", Some(&moderator), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["name"], "activities");
    // Writes go on while the rebuild runs; none may be lost or applied twice by the swap.
    let writes = members[3..].iter().map(|t| favourite(&app, t, &first));
    let last = futures::future::join_all(writes).await.iter().map(|a| a.position()).max().unwrap();
    rebuilt(&app, &moderator, "activities").await;

    let shown = app.get(&format!("/v1/activities/{first}"), None, Some(last)).await;
    assert_eq!(shown.status, 200, "{:?}", shown.body);
    assert_eq!(shown.body["title"], "Kids pottery", "the damage is repaired");
    assert_eq!(shown.body["favourites"], json!(8), "every favourite counted once: {:?}", shown.body);
    assert_eq!(shown.body["seats_left"], json!(48));
    assert_eq!(app.get(&format!("/v1/activities/{second}"), None, None).await.status, 200, "the lost row is back");
    assert_eq!(catalog(&app, "activities").await, indexes_before, "the swap keeps index and key names");
    assert_eq!(shadow_tables(&app).await, 0, "no shadow table is left behind");

    // The live projector follows the swapped-in table.
    let a = favourite(&app, &members[0], &second).await;
    let shown = app.get(&format!("/v1/activities/{second}"), None, Some(a.position())).await;
    assert_eq!(shown.body["favourites"], json!(1), "{:?}", shown.body);

    // Rebuilding again (now from a swapped-in table) and another projection works too.
    for name in ["activities", "members", "invitations"] {
        let a = app.post(&format!("/v1/admin/projections/{name}/rebuild"), Some(&moderator), json!({})).await;
        assert_eq!(a.status, 202, "{:?}", a.body);
        rebuilt(&app, &moderator, name).await;
    }
    assert_eq!(catalog(&app, "activities").await, indexes_before);
    let me = app.get("/v1/me", Some(&org), None).await;
    assert_eq!(me.body["roles"], json!(["member", "organiser"]), "{:?}", me.body);
    let shown = app.get(&format!("/v1/activities/{first}"), None, None).await;
    assert_eq!(shown.body["favourites"], json!(8), "{:?}", shown.body);

    let listed = projections(&app, &moderator).await;
    let names: Vec<&str> = listed.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "members",
            "activities",
            "updates",
            "invitations",
            "favourites",
            "media",
            "chats",
            "search",
            "series",
            "process_manager"
        ]
    );
    for p in &listed {
        assert!(p["position"].as_i64().unwrap() > 0, "{p}");
        assert!(p["lag_events"].as_i64().unwrap() >= 0 && p["lag_ms"].as_i64().unwrap() >= 0, "{p}");
        assert_eq!(p["state"], "live", "{p}");
    }
}

async fn only_moderators_rebuild_and_only_projections_that_own_tables(app: TestApp) {
    let (_, member) = quick_member(&app).await;
    let moderator = moderator(&app).await;
    app.get("/v1/admin/projections", None, None).await.assert_problem(401, None);
    app.get("/v1/admin/projections", Some(&member), None).await.assert_problem(403, Some("forbidden"));
    let rebuild = |name: &str| format!("/v1/admin/projections/{name}/rebuild");
    app.post(&rebuild("members"), None, json!({})).await.assert_problem(401, None);
    app.post(&rebuild("members"), Some(&member), json!({})).await.assert_problem(403, Some("forbidden"));
    app.post(&rebuild("nope"), Some(&moderator), json!({})).await.assert_problem(404, None);
    for side_effects in ["updates", "process_manager"] {
        app.post(&rebuild(side_effects), Some(&moderator), json!({}))
            .await
            .assert_problem(409, Some("projection_not_rebuildable"));
    }
    let listed = projections(&app, &moderator).await;
    let rebuildable: Vec<&str> =
        listed.iter().filter(|p| p["rebuildable"] == json!(true)).map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        rebuildable,
        ["members", "activities", "invitations", "favourites", "media", "chats", "search", "series"]
    );
    assert!(listed.iter().all(|p| p["rebuilding"].is_null()), "nothing was started: {listed:?}");
    assert_eq!(shadow_tables(&app).await, 0);
}

async fn a_running_rebuild_is_refused_and_a_stale_one_taken_over(app: TestApp) {
    let moderator = moderator(&app).await;
    let mut members = vec![quick_member(&app).await.1];
    noise(&app, 1_000).await;
    members.push(quick_member(&app).await.1);
    let state = &app.app_state;
    // Another process claimed the rebuild, built one batch, and is alive.
    let all = gather_projections::all();
    let mut other = Rebuild::claim(&state.db, state.store.clone(), &all, "members").await.unwrap().with_batch(500);
    assert_eq!(other.step().await.unwrap(), None, "one batch, not caught up yet");
    let built = other.position();
    assert!(built.position > 0);
    let path = "/v1/admin/projections/members/rebuild";
    app.post(path, Some(&moderator), json!({})).await.assert_problem(409, Some("rebuild_in_progress"));
    let shown = projection(&app, &moderator, "members").await;
    assert_eq!(shown["rebuilding"]["stale"], json!(false), "{shown}");
    assert_eq!(shown["rebuilding"]["position"], json!(built.position), "{shown}");
    assert!(shown["rebuilding"]["progress"].as_f64().unwrap() > 0.0, "{shown}");
    assert_eq!(shadow_tables(&app).await, 1);

    // It goes quiet: the next claim takes it over where it stopped.
    let long_ago = chrono::Utc::now() - chrono::Duration::minutes(5);
    on_db!(&state.db, p => sqlx::query("UPDATE projection_rebuilds SET heartbeat_at = $1")
        .bind(long_ago).execute(p).await.map(|r| r.rows_affected()))
    .unwrap();
    assert_eq!(projection(&app, &moderator, "members").await["rebuilding"]["stale"], json!(true));
    let taken = Rebuild::claim(&state.db, state.store.clone(), &all, "members").await.unwrap();
    assert_eq!(taken.position(), built, "resumed, not restarted");
    // The first owner, waking up, is fenced off before it writes anything.
    let err = other.step().await.unwrap_err();
    assert!(matches!(err, gather_projections::rebuild::RebuildError::TakenOver(_)), "{err}");
    taken.run().await.unwrap();
    app.app_state.projectors.resync("members");
    assert_eq!(shadow_tables(&app).await, 0);
    let listed: i64 =
        on_db_read!(&state.db, p => sqlx::query_scalar("SELECT count(*) FROM members").fetch_one(p).await).unwrap();
    assert_eq!(listed, 4, "both members and the two bootstrap accounts, once each");
    for token in &members {
        assert_eq!(app.get("/v1/me", Some(token), None).await.status, 200);
    }

    // Over HTTP, a stale claim is taken over the same way.
    let _abandoned = Rebuild::claim(&state.db, state.store.clone(), &all, "members").await.unwrap();
    on_db!(&state.db, p => sqlx::query("UPDATE projection_rebuilds SET heartbeat_at = $1")
        .bind(long_ago).execute(p).await.map(|r| r.rows_affected()))
    .unwrap();
    let a = app.post(path, Some(&moderator), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    rebuilt(&app, &moderator, "members").await;
}

async fn a_failed_rebuild_leaves_the_live_view_serving(app: TestApp) {
    let moderator = moderator(&app).await;
    let org = app.organiser("broken@example.com").await;
    let mut body = activity_body();
    body["visibility"] = json!("invite_only");
    let id = app.post("/v1/activities", Some(&org), body).await.body["id"].as_str().unwrap().to_string();
    app.post(&format!("/v1/activities/{id}/publish"), Some(&org), json!({})).await;
    let a = app
        .post(&format!("/v1/activities/{id}/invitations"), Some(&org), json!({"emails": ["someone@example.com"]}))
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    app.get("/v1/me/invitations", Some(&org), Some(a.position())).await;
    let live_before = invitation_rows(&app).await;
    assert_eq!(live_before.len(), 1);
    // An invitation the current code cannot read (as if written by a broken release).
    use gather_commands::store::{AppendMeta, ExpectedVersion, NewEvent, StreamAppend};
    let bad = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "GuestsInvited".into(),
        schema_version: 1,
        data: json!({"invitations": "not a list"}),
    };
    let append = StreamAppend {
        stream: format!("activity-{}", Uuid::now_v7()),
        expected: ExpectedVersion::NoStream,
        events: vec![bad],
    };
    app.app_state.store.append(&AppendMeta::new(Uuid::now_v7(), None), vec![append]).await.unwrap();
    let failed = || async { !projection(&app, &moderator, "invitations").await["rebuilding"]["error"].is_null() };
    let a = app.post("/v1/admin/projections/invitations/rebuild", Some(&moderator), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    eventually("the rebuild records its failure", failed).await;
    let shown = projection(&app, &moderator, "invitations").await;
    let error = shown["rebuilding"]["error"].as_str().unwrap();
    assert!(error.contains("GuestsInvited"), "the error names the event: {error}");
    // The live table was never touched by the rebuild.
    assert_eq!(invitation_rows(&app).await, live_before);
    // A failed rebuild may be started again (from scratch: its error is cleared), and
    // fails the same way without touching the live table.
    let a = app.post("/v1/admin/projections/invitations/rebuild", Some(&moderator), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    eventually("the second rebuild records its failure", failed).await;
    assert_eq!(invitation_rows(&app).await, live_before);
    // Both tables of the projection (invitations and the members' addresses).
    assert_eq!(shadow_tables(&app).await, 2, "the failed copy stays for inspection until the next start");
}

async fn invitation_rows(app: &TestApp) -> Vec<(Uuid, String, String)> {
    on_db_read!(&app.app_state.db, p => sqlx::query_as("SELECT invitation_id, email, status FROM invitations ORDER BY 1")
        .fetch_all(p).await).unwrap()
}

/// (pending, answered, whether the table exists) in the live invitations view.
async fn invitations_count(app: &TestApp) -> (i64, i64, bool) {
    let db = &app.app_state.db;
    let counts: Result<(i64, i64), sqlx::Error> = on_db_read!(db, p => sqlx::query_as(
        "SELECT count(CASE WHEN status = 'pending' THEN 1 END), count(CASE WHEN status <> 'pending' THEN 1 END) FROM invitations",
    ).fetch_one(p).await);
    match counts {
        Ok((pending, answered)) => (pending, answered, true),
        Err(_) => (0, 0, false),
    }
}

async fn expired_invitations_and_old_emails_are_cleaned_up(app: TestApp) {
    let org = app.organiser("cleanup@example.com").await;
    let soon = chrono::Utc::now() + chrono::Duration::hours(3);
    let mut body = activity_body();
    body["visibility"] = json!("invite_only");
    body["starts_at"] = json!(soon);
    body["ends_at"] = json!(soon + chrono::Duration::hours(2));
    let id = app.post("/v1/activities", Some(&org), body).await.body["id"].as_str().unwrap().to_string();
    let a = app.post(&format!("/v1/activities/{id}/publish"), Some(&org), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let (_, guest) = app.register("invited@example.com").await;
    let a = app
        .post(
            &format!("/v1/activities/{id}/invitations"),
            Some(&org),
            json!({"emails": ["invited@example.com", "silent@example.com"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    app.get("/v1/me/invitations", Some(&guest), Some(a.position())).await;
    let accepted = a.body["invitations"][0]["id"].as_str().unwrap().to_string();
    let a = app.post(&format!("/v1/invitations/{accepted}/accept"), Some(&guest), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    app.get("/v1/me/invitations", Some(&guest), Some(a.position())).await;
    assert_eq!(invitations_count(&app).await, (1, 1, true));
    let sent = || async {
        on_db_read!(&app.app_state.db, p => sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sent_notifications").fetch_one(p).await)
        .unwrap()
    };
    let members = || async {
        on_db_read!(&app.app_state.db, p => sqlx::query_scalar::<_, i64>("SELECT count(*) FROM members")
            .fetch_one(p).await)
        .unwrap()
    };
    // Every member's welcome email (the organiser, the guest, the bootstrap accounts),
    // the two invitations and the accepted invitation's booking confirmation.
    eventually("the emails are delivered", || async { sent().await == members().await + 3 }).await;
    let delivered = sent().await;

    let state = &app.app_state;
    let scheduler = gather_commands::scheduler::Scheduler::new(state.db.clone(), state.commands.clone())
        .with_clean_ups(gather_projections::clean_ups());
    scheduler.clean_up(chrono::Utc::now()).await;
    assert_eq!(invitations_count(&app).await, (1, 1, true), "before the start the invitation may still be answered");
    assert_eq!(sent().await, delivered, "recent emails stay");
    scheduler.clean_up(soon + chrono::Duration::minutes(1)).await;
    assert_eq!(invitations_count(&app).await, (0, 1, true), "the unanswered invitation expired with the start");
    scheduler.clean_up(chrono::Utc::now() + chrono::Duration::days(8)).await;
    assert_eq!(sent().await, 0, "delivered emails go after a week");
}
