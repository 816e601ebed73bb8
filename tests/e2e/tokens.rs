//! Tokens: HS256 only, with `exp`, `iat`, `iss` and `sub`; refused with 401: `alg:
//! none`, another algorithm, a wrong signature, an expired token, another issuer, and a
//! token of a forgotten member.

use crate::harness::*;
use gather_domain::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn b64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The secret the app signs with (configured, or generated into the data dir).
fn secret(app: &TestApp) -> String {
    use secrecy::ExposeSecret;
    match &app.app_state.settings.jwt_secret {
        Some(s) => s.expose_secret().to_owned(),
        None => std::fs::read_to_string(app.app_state.settings.data_dir.join("jwt-secret")).unwrap().trim().to_owned(),
    }
}

async fn forged_expired_and_foreign_tokens_are_refused(app: TestApp) {
    let (id, good) = quick_member(&app).await;
    eventually("the control: a valid token reads the profile", || async {
        app.get("/v1/me", Some(&good), None).await.status == 200
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    let claims =
        |iss: &str| json!({"sub": id, "roles": ["member", "moderator"], "iat": now, "exp": now + 3600, "iss": iss});
    let sign = |alg: Algorithm, key: &str, iss: &str| {
        jsonwebtoken::encode(&Header::new(alg), &claims(iss), &EncodingKey::from_secret(key.as_bytes())).unwrap()
    };
    let right = secret(&app);
    let none =
        format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), b64url(claims("gather").to_string().as_bytes()));
    let refused = [
        ("alg none", none),
        ("HS512", sign(Algorithm::HS512, &right, "gather")),
        ("a wrong signature", sign(Algorithm::HS256, "another-secret-another-secret-0123456789", "gather")),
        ("another issuer", sign(Algorithm::HS256, &right, "someone-else")),
        (
            "expired",
            app.app_state.jwt.issue_at(id, &[Role::Member], chrono::Utc::now() - chrono::Duration::hours(13)).unwrap(),
        ),
        ("without iss", {
            let c = json!({"sub": id, "roles": ["member"], "iat": now, "exp": now + 3600});
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &EncodingKey::from_secret(right.as_bytes()))
                .unwrap()
        }),
    ];
    for (what, token) in &refused {
        let a = app.get("/v1/me", Some(token), None).await;
        assert_eq!(a.status, 401, "{what}: {:?}", a.body);
        a.assert_problem(401, None);
        let a = app.post("/v1/me/children", Some(token), json!({"name": "Kid", "birth_date": "2019-04-01"})).await;
        assert_eq!(a.status, 401, "{what}: {:?}", a.body);
    }
    // The right secret and issuer: accepted (so the refusals above are about what they say).
    assert_eq!(app.get("/v1/me", Some(&sign(Algorithm::HS256, &right, "gather")), None).await.status, 200);
}

both_profiles!(forged_expired_and_foreign_tokens_are_refused);

async fn a_forgotten_members_token_is_refused(app: TestApp) {
    let (_, token) = quick_member(&app).await;
    let a = app.send(app.http.delete(app.url("/v1/me")).bearer_auth(&token)).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    app.get("/v1/me", Some(&token), Some(a.position())).await.assert_problem(401, None);
    let a = app.post("/v1/me/children", Some(&token), json!({"name": "Kid", "birth_date": "2019-04-01"})).await;
    a.assert_problem(401, None);
    // The stream too, before any upgrade.
    let res = app
        .http
        .get(app.url(&format!("/v1/stream?access_token={token}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

both_profiles!(a_forgotten_members_token_is_refused);
