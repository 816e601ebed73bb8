//! Every command goes through one path that checks the member's state, and the
//! password check is pinned to the member stream's version it verified against.

use crate::harness::{MODERATOR, TestApp, activity_body};
use serde_json::{Value, json};

both_profiles!(
    a_suspended_organiser_cannot_create_activities,
    concurrent_password_changes_with_one_old_password_let_one_win
);

async fn a_suspended_organiser_cannot_create_activities(app: TestApp) {
    let org = app.organiser("suspended-org@example.com").await;
    let organiser_id = app.app_state.jwt.verify(&org).expect("a valid token").id;
    let m = app.login(MODERATOR.0, MODERATOR.1).await;
    let a = app
        .post(&format!("/v1/members/{organiser_id}/suspend"), m.body["token"].as_str(), json!({"reason": "spam"}))
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let count = app.event_count().await;
    // The organiser's token is still live.
    let a = app.post("/v1/activities", Some(&org), activity_body()).await;
    a.assert_problem(403, Some("member_suspended"));
    assert_eq!(app.event_count().await, count, "nothing appended");
}

async fn concurrent_password_changes_with_one_old_password_let_one_win(app: TestApp) {
    let (_, token) = app.register("race-password@example.com").await;
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let req = app.http.post(app.url("/v1/me/password")).bearer_auth(&token).json(&json!({
                "old_password": "correct horse battery",
                "new_password": format!("new password number {i}"),
            }));
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                (i, status, res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, status, body) = t.await.unwrap();
        match status {
            202 => winners.push(i),
            409 => assert_eq!(body["code"], "password_changed_meanwhile", "{body:?}"),
            other => panic!("unexpected {other}: {body:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one change wins the race: {winners:?}");
    let a = app.login("race-password@example.com", &format!("new password number {}", winners[0])).await;
    assert_eq!(a.status, 200, "the winner's password is the one set: {:?}", a.body);
    let a = app.login("race-password@example.com", "correct horse battery").await;
    a.assert_problem(401, None);
}
