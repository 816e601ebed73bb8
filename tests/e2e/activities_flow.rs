//! The activity lifecycle, bookings under contention, waitlist promotion, invitations,
//! and who may do what (guests, wrong roles, non-owners).

use crate::harness::{MODERATOR, TestApp, activity_body, eventually, published_activity, quick_member};
use serde_json::json;

both_profiles!(
    two_hundred_concurrent_bookings_for_ten_seats_confirm_exactly_ten,
    with_a_waitlist_the_rest_wait_and_a_cancellation_promotes_the_first,
    the_lifecycle_moves_through_moderation_and_shows_on_the_read_side,
    lifecycle_endpoints_refuse_guests_wrong_roles_and_non_owners,
    invitations_are_accepted_only_by_the_invited_address,
    a_suspended_member_cannot_book,
);

async fn book(app: &TestApp, token: &str, activity: &str) -> crate::harness::Answer {
    app.post(&format!("/v1/activities/{activity}/bookings"), Some(token), json!({"seats": 1})).await
}

async fn two_hundred_concurrent_bookings_for_ten_seats_confirm_exactly_ten(app: TestApp) {
    let org = app.organiser("hot@example.com").await;
    let id = published_activity(&app, &org, 10, false).await;
    let mut members = Vec::new();
    for _ in 0..200 {
        members.push(quick_member(&app).await.1);
    }
    let tasks: Vec<_> = members
        .into_iter()
        .map(|token| {
            let req = app
                .http
                .post(app.url(&format!("/v1/activities/{id}/bookings")))
                .bearer_auth(token)
                .json(&json!({"seats": 1}));
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                (status, res.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    let (mut confirmed, mut full, mut last) = (0, 0, 0);
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match (status, body["status"].as_str(), body["code"].as_str()) {
            (201, Some("confirmed"), _) => {
                confirmed += 1;
                last = last.max(body["position"].as_i64().unwrap());
            }
            (409, _, Some("activity_full")) => full += 1,
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert_eq!((confirmed, full), (10, 190));
    let a = app.get(&format!("/v1/activities/{id}"), None, Some(last)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["seats_left"], json!(0), "never oversold, never undersold");
}

async fn with_a_waitlist_the_rest_wait_and_a_cancellation_promotes_the_first(app: TestApp) {
    let org = app.organiser("wait@example.com").await;
    let id = published_activity(&app, &org, 2, true).await;
    let mut bookings = Vec::new();
    for _ in 0..5 {
        let (_, token) = quick_member(&app).await;
        let a = book(&app, &token, &id).await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        bookings.push((
            token,
            a.body["id"].as_str().unwrap().to_string(),
            a.body["status"].as_str().unwrap().to_string(),
        ));
    }
    let statuses: Vec<_> = bookings.iter().map(|b| b.2.as_str()).collect();
    assert_eq!(statuses, vec!["confirmed", "confirmed", "waitlisted", "waitlisted", "waitlisted"]);
    // the first confirmed member cancels: the first waitlisted one is promoted
    let (token, booking, _) = &bookings[0];
    let a =
        app.send(app.http.delete(app.url(&format!("/v1/activities/{id}/bookings/{booking}"))).bearer_auth(token)).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let shown = app.get(&format!("/v1/activities/{id}"), None, Some(a.position())).await;
    assert_eq!(shown.body["seats_left"], json!(0), "the promoted booking took the seat");
    // a second booking by the promoted member is refused: it holds a live booking
    let again = book(&app, &bookings[2].0, &id).await;
    again.assert_problem(409, Some("already_booked"));
    // someone else's booking cannot be cancelled by me
    let other = &bookings[3].1;
    let a = app
        .send(app.http.delete(app.url(&format!("/v1/activities/{id}/bookings/{other}"))).bearer_auth(&bookings[1].0))
        .await;
    a.assert_problem(403, None);
}

async fn the_lifecycle_moves_through_moderation_and_shows_on_the_read_side(app: TestApp) {
    let org = app.organiser("life@example.com").await;
    let created = app.post("/v1/activities", Some(&org), activity_body()).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let patched = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/activities/{id}")))
                .bearer_auth(&org)
                .json(&json!({"title": "Clay for kids", "capacity": 12})),
        )
        .await;
    assert_eq!(patched.status, 202, "{:?}", patched.body);
    assert_eq!(patched.header("etag"), Some("\"1\""));
    // If-Match with a stale version is a 412
    let stale = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/activities/{id}")))
                .bearer_auth(&org)
                .header("If-Match", "\"0\"")
                .json(&json!({"title": "Stale"})),
        )
        .await;
    stale.assert_problem(412, None);
    let a = app.post(&format!("/v1/activities/{id}/submit"), Some(&org), json!({})).await;
    assert_eq!(a.status, 202);
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    let mt = m.body["token"].as_str().unwrap().to_string();
    let a = app.post(&format!("/v1/activities/{id}/reject"), Some(&mt), json!({"reason": "Add a photo"})).await;
    assert_eq!(a.status, 202);
    let shown = app.get(&format!("/v1/activities/{id}"), Some(&org), Some(a.position())).await;
    assert_eq!(shown.body["status"], "rejected");
    // rejected → edit → pending → published
    let a = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/activities/{id}")))
                .bearer_auth(&org)
                .json(&json!({"description": "Now with photos."})),
        )
        .await;
    assert_eq!(a.status, 202);
    app.post(&format!("/v1/activities/{id}/submit"), Some(&org), json!({})).await;
    let a = app.post(&format!("/v1/activities/{id}/approve"), Some(&mt), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let shown = app.get(&format!("/v1/activities/{id}"), None, Some(a.position())).await;
    assert_eq!(shown.status, 200, "published activities are public");
    assert_eq!(shown.body["status"], "published");
    assert_eq!(shown.body["title"], "Clay for kids");
    assert_eq!(shown.body["seats_left"], json!(12));
    // approving twice is an invalid transition
    let a = app.post(&format!("/v1/activities/{id}/approve"), Some(&mt), json!({})).await;
    a.assert_problem(409, Some("invalid_transition"));
    let a = app
        .post(
            &format!("/v1/activities/{id}/reschedule"),
            Some(&org),
            json!({"starts_at": "2030-06-01T14:00:00Z", "ends_at": "2030-06-01T16:00:00Z"}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let a = app.post(&format!("/v1/activities/{id}/cancel"), Some(&org), json!({"reason": "Rain"})).await;
    assert_eq!(a.status, 202);
    let shown = app.get(&format!("/v1/activities/{id}"), None, Some(a.position())).await;
    assert_eq!(shown.body["status"], "cancelled");
    assert_eq!(shown.body["starts_at"], "2030-06-01T14:00:00Z");
}

async fn lifecycle_endpoints_refuse_guests_wrong_roles_and_non_owners(app: TestApp) {
    let org = app.organiser("owner@example.com").await;
    let created = app.post("/v1/activities", Some(&org), activity_body()).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let other = app.organiser("other@example.com").await;
    let (_, member) = quick_member(&app).await;
    let before = app.event_count().await;
    for path in ["submit", "publish", "approve", "reject", "cancel", "reschedule"] {
        let url = format!("/v1/activities/{id}/{path}");
        let body = json!({"reason": "x", "starts_at": "2030-06-01T14:00:00Z", "ends_at": "2030-06-01T16:00:00Z"});
        app.post(&url, None, body.clone()).await.assert_problem(401, None);
        app.post(&url, Some(&other), body.clone()).await.assert_problem(403, None);
        app.post(&url, Some(&member), body).await.assert_problem(403, None);
    }
    let a = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/activities/{id}")))
                .bearer_auth(&other)
                .json(&json!({"title": "Mine now"})),
        )
        .await;
    a.assert_problem(403, Some("not_the_organiser"));
    let a =
        app.send(app.http.patch(app.url(&format!("/v1/activities/{id}"))).json(&json!({"title": "Mine now"}))).await;
    a.assert_problem(401, None);
    let a = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/activities/{id}")))
                .bearer_auth(&org)
                .json(&json!({"capacity": "many"})),
        )
        .await;
    a.assert_problem(400, None);
    let a =
        app.post(&format!("/v1/activities/{id}/invitations"), Some(&other), json!({"emails": ["a@example.com"]})).await;
    a.assert_problem(403, None);
    let a = app.post(&format!("/v1/activities/{id}/bookings"), None, json!({"seats": 1})).await;
    a.assert_problem(401, None);
    let a = app.post(&format!("/v1/activities/{id}/bookings"), Some(&member), json!({"seats": 0})).await;
    a.assert_problem(400, None);
    let a = app
        .post(&format!("/v1/activities/{}/bookings", uuid::Uuid::now_v7()), Some(&member), json!({"seats": 1}))
        .await;
    a.assert_problem(404, None);
    assert_eq!(app.event_count().await, before, "refused commands append nothing");
}

async fn invitations_are_accepted_only_by_the_invited_address(app: TestApp) {
    let org = app.organiser("vip@example.com").await;
    let mut body = activity_body();
    body["visibility"] = json!("invite_only");
    let id = app.post("/v1/activities", Some(&org), body).await.body["id"].as_str().unwrap().to_string();
    let a = app.post(&format!("/v1/activities/{id}/publish"), Some(&org), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let (_, guest) = app.register("guest@example.com").await;
    let (_, stranger) = app.register("stranger@example.com").await;
    let a = app
        .post(
            &format!("/v1/activities/{id}/invitations"),
            Some(&org),
            json!({"emails": ["Guest@Example.com", "x@example.com"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let invitations = a.body["invitations"].as_array().unwrap().clone();
    assert_eq!(invitations.len(), 2);
    let inv = invitations[0]["id"].as_str().unwrap().to_string();
    let bad =
        app.post(&format!("/v1/activities/{id}/invitations"), Some(&org), json!({"emails": ["not an email"]})).await;
    bad.assert_problem(400, None);
    assert_eq!(bad.body["errors"][0]["field"], "emails[0]");
    // the invitation is found through the read model: wait for it
    let pos = a.position();
    app.get("/v1/me/invitations", Some(&guest), Some(pos)).await;
    let a = app.post(&format!("/v1/invitations/{inv}/accept"), Some(&stranger), json!({})).await;
    a.assert_problem(403, Some("not_the_invitee"));
    let a = app.post(&format!("/v1/invitations/{inv}/accept"), Some(&guest), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let shown = app.get(&format!("/v1/activities/{id}"), Some(&org), Some(a.position())).await;
    assert_eq!(shown.body["seats_left"], json!(9));
    let a = app.post(&format!("/v1/invitations/{inv}/decline"), Some(&guest), json!({})).await;
    a.assert_problem(409, None);
    let a = app.post(&format!("/v1/invitations/{}/accept", uuid::Uuid::now_v7()), Some(&guest), json!({})).await;
    a.assert_problem(404, None);
}

async fn a_suspended_member_cannot_book(app: TestApp) {
    let org = app.organiser("susp@example.com").await;
    let id = published_activity(&app, &org, 5, false).await;
    let (member_id, token) = quick_member(&app).await;
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    let a = app
        .post(&format!("/v1/members/{member_id}/suspend"), m.body["token"].as_str(), json!({"reason": "spam"}))
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    // the process manager works in the background: check the activity's own stream
    let stream = format!("activity-{id}");
    let before = app.app_state.store.stream_version(&stream).await.unwrap();
    let a = book(&app, &token, &id).await;
    a.assert_problem(403, Some("member_suspended"));
    assert_eq!(app.app_state.store.stream_version(&stream).await.unwrap(), before);
}

both_profiles!(process_managers_open_the_room_add_attendees_and_send_the_attendee_list);

async fn process_managers_open_the_room_add_attendees_and_send_the_attendee_list(app: TestApp) {
    use gather_domain::activity::Activity;
    use gather_domain::chat::Chat;
    let org = app.organiser("pm@example.com").await;
    let soon = chrono::Utc::now() + chrono::Duration::minutes(30);
    let mut body = activity_body();
    body["starts_at"] = json!(soon);
    body["ends_at"] = json!(soon + chrono::Duration::hours(2));
    body.as_object_mut().unwrap().remove("age_min");
    body.as_object_mut().unwrap().remove("age_max");
    let id = app.post("/v1/activities", Some(&org), body).await.body["id"].as_str().unwrap().to_string();
    app.post(&format!("/v1/activities/{id}/submit"), Some(&org), json!({})).await;
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    let a = app.post(&format!("/v1/activities/{id}/approve"), m.body["token"].as_str(), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let activity: uuid::Uuid = id.parse().unwrap();
    let state = &app.app_state;

    // published → the chat room opens (room id = activity id)
    eventually("the room opening", || async { state.commands.load::<Chat>(activity).await.unwrap().version.is_some() })
        .await;
    // starts within the hour → the attendee-list timer was already due: it fired at once
    eventually("the attendee list", || async {
        let events: Vec<_> =
            futures::TryStreamExt::try_collect(state.store.read_stream(&format!("activity-{activity}"), 0))
                .await
                .unwrap();
        events.iter().any(|e| e.event_type == "AttendeeListSent")
    })
    .await;
    // a confirmed booking → the member joins the room, with the booking as causation
    let (member, token) = quick_member(&app).await;
    let a = book(&app, &token, &id).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    eventually("the attendee joining the room", || async {
        state.commands.load::<Chat>(activity).await.unwrap().state.members.contains(&member)
    })
    .await;
    let room: Vec<_> =
        futures::TryStreamExt::try_collect(state.store.read_stream(&format!("chat-{activity}"), 0)).await.unwrap();
    let added = room.iter().find(|e| e.event_type == "ChatMemberAdded").expect("a ChatMemberAdded event");
    assert!(added.causation_id.is_some(), "process manager commands carry their causation");
    assert_eq!(added.actor, Some(uuid::Uuid::nil()), "issued by the system");
    let _ = state.commands.load::<Activity>(activity).await.unwrap();
}
