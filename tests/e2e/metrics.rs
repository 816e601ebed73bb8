//! `GET /metrics`: Prometheus text with requests per route template, command outcomes,
//! appends, projections, the outbox, push connections and emails.

use crate::harness::*;
use serde_json::json;

async fn metrics_show_requests_commands_projections_and_distribution(app: TestApp) {
    let org = app.organiser(&format!("o{}@example.com", uuid::Uuid::now_v7().simple())).await;
    let id = published_activity(&app, &org, 10, false).await;
    let (_, member) = quick_member(&app).await;
    let a = app.post(&format!("/v1/activities/{id}/bookings"), Some(&member), json!({"seats": 1})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let again = app.post(&format!("/v1/activities/{id}/bookings"), Some(&member), json!({"seats": 1})).await;
    again.assert_problem(409, Some("already_booked"));
    // Projected, emailed (the welcome and booking emails).
    app.get("/v1/me/bookings", Some(&member), Some(a.position())).await;
    let text = || async {
        let res = app.http.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        res.text().await.unwrap()
    };
    eventually("an email is counted", || async {
        text().await.contains("gather_emails_sent_total{kind=\"booking.confirmed\"}")
    })
    .await;
    let m = text().await;
    for needle in [
        // per route template, never the raw path
        "gather_http_request_duration_seconds_bucket{route=\"/v1/activities/{id}/bookings\",method=\"POST\",status=\"201\"",
        "gather_http_request_duration_seconds_count{route=\"/v1/activities/{id}/bookings\",method=\"POST\",status=\"409\"}",
        "gather_commands_total{command=\"bookings\",outcome=\"ok\"} 1",
        "gather_commands_total{command=\"bookings\",outcome=\"already_booked\"} 1",
        "gather_store_appends_total",
        "gather_projection_position{projection=\"members\"}",
        "gather_projection_lag_events{projection=\"activities\"}",
        "gather_outbox_depth",
        "gather_push_connections 0",
        "gather_relay_published_total",
    ] {
        assert!(m.contains(needle), "{needle} in\n{m}");
    }
    assert!(!m.contains(&id), "no ids in labels");
}

both_profiles!(metrics_show_requests_commands_projections_and_distribution);
