//! Bad input keeps its shape: out-of-range times and dates are field errors, a wrongly
//! typed field is a 400 with the per-field `errors` list, and an email with control or
//! bidi characters is refused at registration.

use crate::harness::{TestApp, activity_body, quick_member};
use serde_json::json;

both_profiles!(
    times_beyond_year_9999_and_birth_dates_before_1900_are_field_errors,
    a_wrongly_typed_field_is_a_400_naming_the_field,
    an_email_with_control_or_bidi_characters_is_refused_at_registration,
);

async fn times_beyond_year_9999_and_birth_dates_before_1900_are_field_errors(app: TestApp) {
    let org = app.organiser("bounds-org@example.com").await;
    let (_, member) = quick_member(&app).await;
    let count = app.event_count().await;
    let mut body = activity_body();
    body["starts_at"] = json!("+10000-01-01T00:00:00Z");
    body["ends_at"] = json!("+10000-01-01T02:00:00Z");
    let a = app.post("/v1/activities", Some(&org), body).await;
    a.assert_problem(400, None);
    assert_eq!(a.body["errors"][0]["field"], "starts_at", "{:?}", a.body);

    let mut body = activity_body();
    body["ends_at"] = json!("9999-12-31T23:59:59Z");
    let a = app.post("/v1/activities", Some(&org), body).await;
    a.assert_problem(400, None);
    assert_eq!(a.body["errors"][0]["field"], "ends_at", "{:?}", a.body);

    let a = app.post("/v1/me/children", Some(&member), json!({"name": "Old", "birth_date": "1899-12-31"})).await;
    a.assert_problem(400, None);
    assert_eq!(a.body["errors"][0]["field"], "birth_date", "{:?}", a.body);
    assert_eq!(app.event_count().await, count, "nothing appended");
}

async fn a_wrongly_typed_field_is_a_400_naming_the_field(app: TestApp) {
    let org = app.organiser("typed-org@example.com").await;
    for (field, value) in [("visibility", json!(null)), ("capacity", json!("ten")), ("price", json!(null))] {
        let mut body = activity_body();
        body[field] = value;
        let a = app.post("/v1/activities", Some(&org), body).await;
        a.assert_problem(400, Some("validation_failed"));
        let errors = a.body["errors"].as_array().unwrap_or_else(|| panic!("{field}: no errors list in {:?}", a.body));
        assert_eq!(errors[0]["field"], field, "{:?}", a.body);
    }
}

async fn an_email_with_control_or_bidi_characters_is_refused_at_registration(app: TestApp) {
    for email in ["\u{202e}A@example.com", "a\u{200b}b@example.com", "ab@exa\u{0007}mple.com", "a@example.com\u{2066}"]
    {
        let a = app
            .post(
                "/v1/auth/register",
                None,
                json!({"email": email, "password": "correct horse battery", "display_name": "Bidi"}),
            )
            .await;
        a.assert_problem(400, Some("validation_failed"));
        assert_eq!(a.body["errors"][0]["field"], "email", "{email:?}: {:?}", a.body);
    }
}
