//! A flood of failed logins: password hashing runs at most `limit` at once (each hash
//! takes 19 MiB); beyond what may wait, the server answers 503 with `Retry-After`.

use crate::harness::TestApp;
use serde_json::{Value, json};

both_profiles!(concurrent_failed_logins_never_hash_more_than_the_bound_at_once);

async fn concurrent_failed_logins_never_hash_more_than_the_bound_at_once(app: TestApp) {
    app.register("flooded@example.com").await;
    let passwords = app.app_state.passwords.clone();
    let limit = passwords.limit();
    assert!(limit >= 1);
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let req = app
                .http
                .post(app.url("/v1/auth/login"))
                .json(&json!({"email": "flooded@example.com", "password": format!("wrong password {i}")}));
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                let retry_after = res.headers().get("retry-after").is_some();
                let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
                (status, retry_after, content_type, res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        let (status, retry_after, content_type, body) = t.await.unwrap();
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{body:?}");
        match status {
            401 => refused += 1,
            503 | 429 => assert!(retry_after, "a saturated answer says when to retry: {body:?}"),
            other => panic!("unexpected {other}: {body:?}"),
        }
    }
    assert!(refused > 0, "some logins were checked");
    assert!(passwords.high_water() <= limit, "{} hashes ran at once; the bound is {limit}", passwords.high_water());
    assert!(passwords.high_water() >= 1, "the flood hashed");
    assert_eq!(passwords.running(), 0, "every hash finished");
}
