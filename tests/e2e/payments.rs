//! Paid bookings: the member's `POST …/payment` only records the provider's reference;
//! only the signed webhook (`POST /v1/payments/webhook`) confirms a reservation, when
//! booking, activity, amount and currency match, and a failed payment releases it.

use crate::harness::{Answer, MODERATOR, TestApp, WEBHOOK_SECRET, activity_body, quick_member};
use serde_json::{Value, json};

both_profiles!(
    a_member_records_a_payment_reference_but_cannot_confirm_their_own_booking,
    only_a_well_signed_fresh_webhook_for_the_right_booking_and_amount_confirms,
    a_failed_payment_releases_the_reservation,
    accepting_an_invitation_to_a_paid_activity_reserves_until_the_webhook_confirms,
);

/// 12.50 EUR a seat.
const PRICE: i64 = 1250;

/// A published public paid activity with `capacity` seats; returns its id.
async fn paid_activity(app: &TestApp, organiser: &str, capacity: i64) -> String {
    let mut body = activity_body();
    body["capacity"] = json!(capacity);
    body["price"] = json!({"amount": PRICE, "currency": "EUR"});
    body.as_object_mut().unwrap().remove("age_min");
    body.as_object_mut().unwrap().remove("age_max");
    let a = app.post("/v1/activities", Some(organiser), body).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_string();
    let a = app.post(&format!("/v1/activities/{id}/submit"), Some(organiser), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    let a = app.post(&format!("/v1/activities/{id}/approve"), m.body["token"].as_str(), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    id
}

async fn book(app: &TestApp, token: &str, activity: &str, seats: i64) -> Answer {
    let a = app.post(&format!("/v1/activities/{activity}/bookings"), Some(token), json!({"seats": seats})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.body["status"], "reserved", "{:?}", a.body);
    a
}

/// Sends a webhook delivery signed with `secret` at `timestamp` (seconds since the epoch).
async fn webhook_signed(app: &TestApp, body: &Value, secret: &str, timestamp: i64) -> Answer {
    let raw = serde_json::to_vec(body).unwrap();
    let signature = gather_api::payments::signature_header(secret.as_bytes(), timestamp, &raw);
    app.send(
        app.http
            .post(app.url("/v1/payments/webhook"))
            .header("content-type", "application/json")
            .header(gather_api::payments::SIGNATURE_HEADER, signature)
            .body(raw),
    )
    .await
}

async fn webhook(app: &TestApp, body: &Value) -> Answer {
    webhook_signed(app, body, WEBHOOK_SECRET, chrono::Utc::now().timestamp()).await
}

fn delivery(event_id: &str, activity: &str, booking: &str, amount: i64, currency: &str, status: &str) -> Value {
    json!({
        "event_id": event_id,
        "booking_id": booking,
        "activity_id": activity,
        "payment_ref": "pi_123",
        "amount": amount,
        "currency": currency,
        "status": status,
    })
}

async fn booking_status(app: &TestApp, token: &str, activity: &str, booking: &str, position: i64) -> Value {
    let a = app.get(&format!("/v1/activities/{activity}/bookings/{booking}"), Some(token), Some(position)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body
}

async fn stream_version(app: &TestApp, activity: &str) -> Option<i64> {
    app.app_state.store.stream_version(&format!("activity-{activity}")).await.unwrap()
}

async fn a_member_records_a_payment_reference_but_cannot_confirm_their_own_booking(app: TestApp) {
    let org = app.organiser("paid-org@example.com").await;
    let activity = paid_activity(&app, &org, 5).await;
    let (_, member) = quick_member(&app).await;
    let booked = book(&app, &member, &activity, 2).await;
    let booking = booked.body["id"].as_str().unwrap().to_string();
    let before = stream_version(&app, &activity).await;

    let a = app
        .post(
            &format!("/v1/activities/{activity}/bookings/{booking}/payment"),
            Some(&member),
            json!({"payment_ref": "pi_whatever"}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(stream_version(&app, &activity).await, before, "recording a reference does not touch the booking");
    let shown = booking_status(&app, &member, &activity, &booking, a.position()).await;
    assert_eq!(shown["status"], "reserved", "{shown:?}");

    // Another member may not record a reference for it.
    let (_, other) = quick_member(&app).await;
    let a = app
        .post(
            &format!("/v1/activities/{activity}/bookings/{booking}/payment"),
            Some(&other),
            json!({"payment_ref": "pi_other"}),
        )
        .await;
    a.assert_problem(403, Some("not_the_booking_holder"));
}

async fn only_a_well_signed_fresh_webhook_for_the_right_booking_and_amount_confirms(app: TestApp) {
    let org = app.organiser("hook-org@example.com").await;
    let activity = paid_activity(&app, &org, 5).await;
    let other_activity = paid_activity(&app, &org, 5).await;
    let (_, member) = quick_member(&app).await;
    let booked = book(&app, &member, &activity, 2).await;
    let booking = booked.body["id"].as_str().unwrap().to_string();
    let due = 2 * PRICE;
    // Process managers append to other streams in the background: watch the activity's.
    let before = stream_version(&app, &activity).await;

    let good = delivery("evt_1", &activity, &booking, due, "EUR", "succeeded");
    let now = chrono::Utc::now().timestamp();
    let a = webhook_signed(&app, &good, "not-the-secret-not-the-secret-0000", now).await;
    a.assert_problem(401, None);
    let a = webhook_signed(&app, &good, WEBHOOK_SECRET, now - 301).await;
    a.assert_problem(401, None);
    let a = app
        .send(app.http.post(app.url("/v1/payments/webhook")).header("content-type", "application/json").json(&good))
        .await;
    a.assert_problem(401, None);
    // A body altered after signing.
    let raw = serde_json::to_vec(&good).unwrap();
    let signature = gather_api::payments::signature_header(WEBHOOK_SECRET.as_bytes(), now, &raw);
    let altered = serde_json::to_vec(&delivery("evt_1", &activity, &booking, 1, "EUR", "succeeded")).unwrap();
    let a = app
        .send(
            app.http
                .post(app.url("/v1/payments/webhook"))
                .header("content-type", "application/json")
                .header(gather_api::payments::SIGNATURE_HEADER, signature)
                .body(altered),
        )
        .await;
    a.assert_problem(401, None);

    // Well signed, but not for this booking's amount, currency or activity.
    for (i, wrong) in [
        delivery("evt_2", &activity, &booking, due - 1, "EUR", "succeeded"),
        delivery("evt_3", &activity, &booking, due, "USD", "succeeded"),
        delivery("evt_4", &other_activity, &booking, due, "EUR", "succeeded"),
    ]
    .iter()
    .enumerate()
    {
        let a = webhook(&app, wrong).await;
        assert!((400..500).contains(&a.status), "mismatch {i}: {:?}", a.body);
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
    }
    assert_eq!(stream_version(&app, &activity).await, before, "nothing changed");

    let a = webhook(&app, &good).await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    let shown = booking_status(&app, &member, &activity, &booking, a.position()).await;
    assert_eq!(shown["status"], "confirmed", "{shown:?}");
    assert_eq!(shown["payment_ref"], "pi_123", "{shown:?}");

    // The provider redelivers: nothing changes.
    let confirmed = stream_version(&app, &activity).await;
    let a = webhook(&app, &good).await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    let a = webhook(&app, &delivery("evt_1", &activity, &booking, due, "EUR", "failed")).await;
    assert_eq!(a.status, 204, "a repeated event_id changes nothing: {:?}", a.body);
    assert_eq!(stream_version(&app, &activity).await, confirmed);
}

async fn a_failed_payment_releases_the_reservation(app: TestApp) {
    let org = app.organiser("fail-org@example.com").await;
    let activity = paid_activity(&app, &org, 3).await;
    let (_, member) = quick_member(&app).await;
    let booked = book(&app, &member, &activity, 2).await;
    let booking = booked.body["id"].as_str().unwrap().to_string();
    let a = webhook(&app, &delivery("evt_f", &activity, &booking, 2 * PRICE, "EUR", "failed")).await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    let shown = booking_status(&app, &member, &activity, &booking, a.position()).await;
    assert_eq!(shown["status"], "expired", "{shown:?}");
    let details = app.get(&format!("/v1/activities/{activity}"), None, Some(a.position())).await;
    assert_eq!(details.body["seats_left"], json!(3), "the seats are released");
    // A late success for a released booking confirms nothing.
    let a = webhook(&app, &delivery("evt_g", &activity, &booking, 2 * PRICE, "EUR", "succeeded")).await;
    assert!((400..500).contains(&a.status), "{:?}", a.body);
}

async fn accepting_an_invitation_to_a_paid_activity_reserves_until_the_webhook_confirms(app: TestApp) {
    let org = app.organiser("vip-paid@example.com").await;
    let mut body = activity_body();
    body["visibility"] = json!("invite_only");
    body["price"] = json!({"amount": PRICE, "currency": "EUR"});
    let id = app.post("/v1/activities", Some(&org), body).await.body["id"].as_str().unwrap().to_string();
    let a = app.post(&format!("/v1/activities/{id}/publish"), Some(&org), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let (_, guest) = app.register("paid-guest@example.com").await;
    let a = app
        .post(&format!("/v1/activities/{id}/invitations"), Some(&org), json!({"emails": ["paid-guest@example.com"]}))
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let inv = a.body["invitations"][0]["id"].as_str().unwrap().to_string();
    app.get("/v1/me/invitations", Some(&guest), Some(a.position())).await;
    let a = app.post(&format!("/v1/invitations/{inv}/accept"), Some(&guest), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    // The booking made by accepting has the invitation's id.
    let shown = booking_status(&app, &guest, &id, &inv, a.position()).await;
    assert_eq!(shown["status"], "reserved", "{shown:?}");
    let a = webhook(&app, &delivery("evt_inv", &id, &inv, PRICE, "EUR", "succeeded")).await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    let shown = booking_status(&app, &guest, &id, &inv, a.position()).await;
    assert_eq!(shown["status"], "confirmed", "{shown:?}");
}
