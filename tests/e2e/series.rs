//! Recurring activities (issue 14) through HTTP, on both profiles, with the clock of
//! every decision and of the scheduler injected (no test waits for real days), and two
//! Gather processes (two schedulers) on one database.
//!
//! The series: "second Tuesday at 19:00 Europe/Amsterdam, COUNT=6", created on Monday
//! 2027-03-01 (spring). Amsterdam moves to summer time on 2027-03-28, so the 9 March
//! occurrence is at 18:00 UTC and those of April and May at 17:00 UTC.

use crate::harness::*;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

pub(crate) fn series_body() -> Value {
    json!({
        "template": {
            "title": "Board game night",
            "description": "Bring a game or learn a new one.",
            "category": "games",
            "tags": ["boardgames"],
            "capacity": 10,
            "price": {"amount": 0, "currency": "EUR"},
            "visibility": "public",
            "location": {"kind": "venue", "name": "Cafe", "address": "Oudegracht 1", "lat": 52.09, "lng": 5.12},
            "waitlist": true
        },
        "timezone": "Europe/Amsterdam",
        "local_start": "19:00",
        "duration_minutes": 120,
        "rule": "FREQ=MONTHLY;BYDAY=2TU;COUNT=6"
    })
}

fn time_of(v: &Value) -> DateTime<Utc> {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a time: {v}"))
}

async fn show(app: &TestApp, token: Option<&str>, id: &str) -> Value {
    let a = app.get(&format!("/v1/series/{id}"), token, None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body
}

/// The activity id of occurrence `index`, once materialized.
async fn occurrence(app: &TestApp, id: &str, index: u64) -> Option<String> {
    let a = app.get(&format!("/v1/series/{id}"), None, None).await;
    a.body["occurrences"]
        .as_array()?
        .iter()
        .find(|o| o["index"] == json!(index))
        .and_then(|o| o["activity_id"].as_str().map(str::to_owned))
}

async fn activity(app: &TestApp, id: &str) -> Value {
    let a = app.get(&format!("/v1/activities/{id}"), None, None).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body
}

async fn count_events(app: &TestApp, stream: &str, event_type: &str) -> i64 {
    gather_commands::on_db_read!(&app.app_state.db, p => sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM events WHERE stream = $1 AND event_type = $2")
        .bind(stream).bind(event_type).fetch_one(p).await)
    .unwrap()
}

async fn timer_fired(app: &TestApp, key: &str) -> bool {
    gather_commands::on_db_read!(&app.app_state.db, p => sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM due_commands WHERE key = $1 AND fired_at IS NOT NULL")
        .bind(key).fetch_one(p).await)
    .unwrap()
        == 1
}

async fn a_monthly_series_lives_through_dst_skip_update_and_end(profile: Profile) {
    let clock = TestClock::at(utc(2027, 3, 1, 9, 0));
    let app = spawn_app_at(profile, &clock).await;
    // Two schedulers race on every timer: on Postgres a second process with every role;
    // the embedded profile is one process (SQLite has one writer), so a second
    // scheduler runs beside the first in it.
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let _beside = match profile {
        Profile::Postgres => Some(spawn_beside(&app).await),
        Profile::Sqlite => {
            let state = &app.app_state;
            let second = gather_commands::scheduler::Scheduler::new(state.db.clone(), state.commands.clone());
            tokio::spawn(second.run(std::time::Duration::from_millis(100), stopped));
            None
        }
    };
    let org = app.organiser("series-org@example.com").await;
    let moderator = app.login(MODERATOR.0, MODERATOR.1).await.body["token"].as_str().unwrap().to_owned();

    let (member, member_token) = quick_member(&app).await;
    // Bad input is a 400 naming the field, and records nothing.
    let before = app.event_count().await;
    for (field, value, named) in [
        ("timezone", json!("Mars/Olympus"), "timezone"),
        ("rule", json!("FREQ=DAILY"), "rule"),
        ("rule", json!("FREQ=MONTHLY;BYSETPOS=1"), "rule"),
        ("local_start", json!("25:00"), "local_start"),
    ] {
        let mut body = series_body();
        body[field] = value;
        let a = app.post("/v1/series", Some(&org), body).await;
        a.assert_problem(400, Some("validation_failed"));
        assert_eq!(a.body["errors"][0]["field"], json!(named), "{:?}", a.body);
    }
    let a = app.post("/v1/series", Some(&member_token), series_body()).await;
    assert_eq!(a.status, 403, "a member without an organiser profile cannot create a series: {:?}", a.body);
    assert_eq!(app.event_count().await, before, "refused commands record nothing");

    let create = || {
        app.send(
            app.http
                .post(app.url("/v1/series"))
                .bearer_auth(&org)
                .header("Idempotency-Key", "series-1")
                .json(&series_body()),
        )
    };
    let a = create().await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let again = create().await;
    assert_eq!((again.status, &again.body["id"]), (201, &json!(id)), "an Idempotency-Key repeat answers the first id");
    assert_eq!(a.header("location"), Some(format!("/v1/series/{id}").as_str()));
    let drafted = a.position();
    assert_eq!(app.get(&format!("/v1/series/{id}"), None, Some(drafted)).await.status, 404, "a draft is private");
    let mine = app.get(&format!("/v1/series/{id}"), Some(&org), Some(drafted)).await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    assert_eq!(mine.body["status"], json!("draft"));
    assert_eq!(mine.body["occurrences"].as_array().unwrap().len(), 6, "COUNT=6: six planned occurrences");
    assert!(mine.body["occurrences"].as_array().unwrap().iter().all(|o| o["status"] == json!("planned")));

    let a = app.post(&format!("/v1/series/{id}/approve"), Some(&moderator), json!({})).await;
    a.assert_problem(409, Some("series_transition"));
    let stale = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/series/{id}")))
                .bearer_auth(&org)
                .header("If-Match", "\"7\"")
                .json(&json!({"template": {"title": "Board game evening"}})),
        )
        .await;
    stale.assert_problem(412, None);
    let renamed = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/series/{id}")))
                .bearer_auth(&org)
                .header("If-Match", "\"0\"")
                .json(&json!({"template": {"title": "Board game evening"}})),
        )
        .await;
    assert_eq!(renamed.status, 202, "{:?}", renamed.body);
    let a = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/series/{id}")))
                .bearer_auth(&member_token)
                .json(&json!({"rule": "FREQ=WEEKLY"})),
        )
        .await;
    a.assert_problem(403, Some("not_the_organiser"));
    let a = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/series/{id}")))
                .bearer_auth(&org)
                .json(&json!({"template": {"title": "Board game night"}})),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(app.post(&format!("/v1/series/{id}/submit"), Some(&org), json!({})).await.status, 202);
    let a = app.post(&format!("/v1/series/{id}/approve"), Some(&moderator), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);

    // Publication materializes the next three occurrences, on both sides of the DST change.
    eventually("the first three occurrences are published activities", || async {
        let a = app.get(&format!("/v1/series/{id}"), None, None).await;
        a.body["occurrences"]
            .as_array()
            .is_some_and(|o| o.len() > 3 && o[..3].iter().all(|o| o["status"] == json!("published")))
    })
    .await;
    let body = show(&app, None, &id).await;
    let occ = body["occurrences"].as_array().unwrap();
    let expected = [utc(2027, 3, 9, 18, 0), utc(2027, 4, 13, 17, 0), utc(2027, 5, 11, 17, 0), utc(2027, 6, 8, 17, 0)];
    for (i, starts_at) in expected.iter().enumerate() {
        assert_eq!(occ[i]["index"], json!(i), "{occ:?}");
        assert_eq!(time_of(&occ[i]["starts_at"]), *starts_at, "occurrence {i}: {occ:?}");
    }
    assert!(occ[..3].iter().all(|o| o["status"] == json!("published")), "{occ:?}");
    assert_eq!(occ[3]["activity_id"], Value::Null, "June is beyond the 90-day horizon");
    assert_eq!(occ[3]["status"], json!("planned"));
    let ids: Vec<String> = occ[..3].iter().map(|o| o["activity_id"].as_str().unwrap().to_owned()).collect();
    let april = activity(&app, &ids[1]).await;
    assert_eq!(april["series_id"], json!(id));
    assert_eq!(april["index"], json!(1));
    assert_eq!(april["status"], json!("published"));
    assert_eq!(time_of(&april["starts_at"]), utc(2027, 4, 13, 17, 0));
    assert_eq!(time_of(&april["ends_at"]), utc(2027, 4, 13, 19, 0));

    // Occurrences are ordinary activities: search lists them, members book them.
    eventually("search lists the occurrences", || async {
        let found = app.get("/v1/activities?q=board%20game&limit=100", None, None).await;
        let listed: Vec<String> = found.body["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        ids.iter().all(|i| listed.contains(i))
    })
    .await;
    let booked =
        app.post(&format!("/v1/activities/{}/bookings", ids[1]), Some(&member_token), json!({"seats": 1})).await;
    assert_eq!(booked.status, 201, "{:?}", booked.body);
    let booking = booked.body["id"].as_str().unwrap().to_owned();

    // An update reaches the unbooked occurrences and leaves the booked one alone.
    let a = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/series/{id}")))
                .bearer_auth(&org)
                .json(&json!({"local_start": "20:00"})),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    eventually("the unbooked occurrences move to 20:00 local", || async {
        time_of(&activity(&app, &ids[2]).await["starts_at"]) == utc(2027, 5, 11, 18, 0)
            && time_of(&activity(&app, &ids[0]).await["starts_at"]) == utc(2027, 3, 9, 19, 0)
    })
    .await;
    eventually("the booked occurrence's update fired", || async {
        timer_fired(&app, &format!("occurrence-update:{}", ids[1])).await
    })
    .await;
    let april = activity(&app, &ids[1]).await;
    assert_eq!(time_of(&april["starts_at"]), utc(2027, 4, 13, 17, 0), "a booked occurrence keeps its time");

    // Skipping the booked occurrence cancels it through the normal path: the booking is
    // released and the cancellation names its member (what notifications are made of).
    let a = app.post(&format!("/v1/series/{id}/skip"), Some(&org), json!({"date": "2027-04-13"})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let a = app.post(&format!("/v1/series/{id}/skip"), Some(&org), json!({"date": "2027-04-14"})).await;
    a.assert_problem(400, Some("validation_failed"));
    eventually("the skipped occurrence is cancelled", || async {
        activity(&app, &ids[1]).await["status"] == json!("cancelled")
    })
    .await;
    let b = app.get(&format!("/v1/activities/{}/bookings/{booking}", ids[1]), Some(&member_token), None).await;
    assert_eq!(b.status, 200, "{:?}", b.body);
    assert_eq!(b.body["status"], json!("released"), "{:?}", b.body);
    let history = app.get(&format!("/v1/activities/{}/history", ids[1]), Some(&org), None).await;
    assert_eq!(history.status, 200, "{:?}", history.body);
    let last = history.body["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], json!("ActivityCancelled"), "{last:?}");
    assert_eq!(last["data"]["released"][0]["booking_id"], json!(booking), "{last:?}");
    let listed = show(&app, None, &id).await;
    assert_eq!(listed["occurrences"][1]["status"], json!("cancelled"), "{listed:?}");
    let to = format!("m{}@example.com", member.simple());
    let emails = || {
        crate::harness::mail_files_to(&app, &to)
            .into_iter()
            .filter(|m| m.contains("Subject: Cancelled: Board game night"))
            .collect::<Vec<_>>()
    };
    eventually("the attendee is emailed the cancellation", || async { !emails().is_empty() }).await;
    let sent = emails();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("2027-04-13 17:00 UTC") && sent[0].contains("skipped"), "{sent:?}");

    // A day passes: the daily timer materializes what entered the horizon (June).
    clock.set(utc(2027, 3, 12, 10, 0));
    eventually("the daily materialization adds June", || async { occurrence(&app, &id, 3).await.is_some() }).await;
    let june = occurrence(&app, &id, 3).await.unwrap();
    eventually("June is a published activity", || async {
        app.get(&format!("/v1/activities/{june}"), None, None).await.status == 200
    })
    .await;
    assert_eq!(time_of(&activity(&app, &june).await["starts_at"]), utc(2027, 6, 8, 18, 0), "20:00 CEST");

    // Ending the series cancels the materialized occurrences after the date.
    let a = app.post(&format!("/v1/series/{id}/end"), Some(&member_token), json!({"after": "2027-05-01"})).await;
    a.assert_problem(403, Some("not_the_organiser"));
    let a = app.post(&format!("/v1/series/{id}/end"), Some(&org), json!({"after": "2027-05-01"})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    eventually("the occurrences after the end are cancelled", || async {
        activity(&app, &ids[2]).await["status"] == json!("cancelled")
            && activity(&app, &june).await["status"] == json!("cancelled")
    })
    .await;
    // March took place before the end (the clock passed it): it completed on its own.
    eventually("March, before the end, completed on its own", || async {
        activity(&app, &ids[0]).await["status"] == json!("completed")
    })
    .await;
    assert_eq!(show(&app, None, &id).await["status"], json!("ended"));

    // Two schedulers and replays materialized each occurrence exactly once.
    let stream = format!("series-{id}");
    assert_eq!(count_events(&app, &stream, "OccurrenceScheduled").await, 4, "indexes 0–3, once each");
    for occurrence in ids.iter().chain([&june]) {
        let activity_stream = format!("activity-{occurrence}");
        assert_eq!(count_events(&app, &activity_stream, "ActivityDrafted").await, 1, "{activity_stream}");
        assert_eq!(count_events(&app, &activity_stream, "ActivityPublished").await, 1, "{activity_stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_series_on_sqlite() {
    a_monthly_series_lives_through_dst_skip_update_and_end(Profile::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_series_on_postgres() {
    a_monthly_series_lives_through_dst_skip_update_and_end(Profile::Postgres).await;
}
