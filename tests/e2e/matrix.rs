//! The authorization matrix: every endpoint called as a guest, a member, another
//! member, the owner (an organiser), another organiser, a moderator and an auditor,
//! each answer checked against one table (the table is the spec). `Ok` is any answer
//! past the authorization check (2xx, or a domain 409/412/422 when the fixture's
//! state refuses the action itself); `Unauth` is 401; `Denied` is 403, or 404 where
//! the resource is invisible to the caller.

use crate::harness::*;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum E {
    Ok,
    Unauth,
    Denied,
}
use E::{Denied as D, Ok as K, Unauth as U};

const ROLES: [&str; 7] = ["guest", "member", "other member", "owner", "other organiser", "moderator", "auditor"];

fn class(status: u16) -> Option<E> {
    match status {
        200..=299 | 409 | 412 | 422 => Some(E::Ok),
        401 => Some(E::Unauth),
        403 | 404 => Some(E::Denied),
        _ => None,
    }
}

struct Row {
    method: Method,
    path: String,
    body: Option<Value>,
    expect: [E; 7],
}

fn row(method: Method, path: impl Into<String>, body: Option<Value>, expect: [E; 7]) -> Row {
    Row { method, path: path.into(), body, expect }
}

async fn call(app: &TestApp, token: Option<&str>, r: &Row) -> Answer {
    let mut req = app.http.request(r.method.clone(), app.url(&r.path));
    if let Some(b) = &r.body {
        req = req.json(b);
    } else if r.method == Method::POST && r.path.ends_with("/media") {
        // An upload's body is the file itself.
        req = req.header("content-type", "image/png").body(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR....".to_vec());
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    app.send(req).await
}

async fn token(app: &TestApp, who: (&str, &str)) -> String {
    let a = app.login(who.0, who.1).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body["token"].as_str().unwrap().to_owned()
}

fn id_of(a: &Answer) -> String {
    assert!(a.status == 201 || a.status == 202, "{:?}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

/// The actors' tokens (in [`ROLES`] order, the guest has none) and every endpoint's row.
async fn fixture(app: &TestApp) -> ([Option<String>; 7], Vec<Row>) {
    let (member_id, member) = quick_member(app).await;
    let (_, other) = quick_member(app).await;
    let (target, _) = quick_member(app).await;
    let owner = app.organiser(&format!("o{}@example.com", uuid::Uuid::now_v7().simple())).await;
    let owner_id = app.app_state.jwt.verify(&owner).unwrap().id;
    let other_org = app.organiser(&format!("p{}@example.com", uuid::Uuid::now_v7().simple())).await;
    let moderator = token(app, MODERATOR).await;
    let auditor = token(app, AUDITOR).await;

    // Fixtures, all the owner's: a published public activity with the member's booking,
    // a pending one, a published one to cancel, an invite-only one with the member
    // invited, a chat of the member and the owner with a message, a draft series.
    let public = published_activity(app, &owner, 100, false).await;
    let to_cancel = published_activity(app, &owner, 100, false).await;
    let pending = id_of(&app.post("/v1/activities", Some(&owner), activity_body()).await);
    app.post(&format!("/v1/activities/{pending}/submit"), Some(&owner), json!({})).await;
    let mut body = activity_body();
    body["visibility"] = json!("invite_only");
    let private = id_of(&app.post("/v1/activities", Some(&owner), body).await);
    app.post(&format!("/v1/activities/{private}/publish"), Some(&owner), json!({})).await;
    let member_email = format!("m{}@example.com", member_id.simple());
    let inv = app
        .post(&format!("/v1/activities/{private}/invitations"), Some(&owner), json!({"emails": [member_email]}))
        .await;
    let invitation = inv.body["invitations"][0]["id"].as_str().unwrap().to_owned();
    let booking =
        id_of(&app.post(&format!("/v1/activities/{public}/bookings"), Some(&member), json!({"seats": 1})).await);
    let chat = id_of(&app.post("/v1/chats", Some(&member), json!({"member_ids": [owner_id]})).await);
    let posted = app.post(&format!("/v1/chats/{chat}/messages"), Some(&member), json!({"text": "hi"})).await;
    let message = id_of(&posted);
    let series = id_of(&app.post("/v1/series", Some(&owner), crate::series::series_body()).await);
    let upload = |activity: String| {
        let req = app
            .http
            .post(app.url(&format!("/v1/activities/{activity}/media")))
            .bearer_auth(&owner)
            .header("content-type", "image/gif")
            .body(b"GIF89a\x01\0\x01\0\0\0\0;".to_vec());
        async move { id_of(&app.send(req).await) }
    };
    let public_media = upload(public.clone()).await;
    let pending_media = upload(pending.clone()).await;
    // Every later read sees the fixtures.
    let at = app.app_state.store.head().await.unwrap().position.max(posted.position());
    app.get(&format!("/v1/media/{public_media}"), None, Some(at)).await;
    app.get("/v1/me", Some(&member), Some(at)).await;
    app.get(&format!("/v1/chats/{chat}"), Some(&member), Some(at)).await;

    let when = json!({"starts_at": "2031-05-01T14:00:00Z", "ends_at": "2031-05-01T16:00:00Z"});
    let child = json!({"name": "Kid", "birth_date": "2019-04-01"});
    use Method as M;
    let rows = vec![
        // the member's own resources
        row(M::GET, "/v1/me", None, [U, K, K, K, K, K, K]),
        row(M::PATCH, "/v1/me", Some(json!({"display_name": "Renamed"})), [U, K, K, K, K, K, K]),
        row(M::POST, "/v1/me/children", Some(child), [U, K, K, K, K, K, K]),
        row(M::GET, "/v1/me/bookings", None, [U, K, K, K, K, K, K]),
        row(M::GET, "/v1/me/favourites", None, [U, K, K, K, K, K, K]),
        row(M::GET, "/v1/me/invitations", None, [U, K, K, K, K, K, K]),
        row(M::GET, "/v1/me/chats", None, [U, K, K, K, K, K, K]),
        row(M::POST, format!("/v1/members/{target}/suspend"), Some(json!({"reason": "spam"})), [U, D, D, D, D, K, D]),
        // activities
        row(M::POST, "/v1/activities", Some(activity_body()), [U, D, D, K, K, D, D]),
        row(M::GET, format!("/v1/activities/{public}"), None, [K, K, K, K, K, K, K]),
        row(M::GET, format!("/v1/activities/{pending}"), None, [D, D, D, K, D, K, D]),
        row(M::GET, format!("/v1/activities/{private}"), None, [D, K, D, K, D, K, D]),
        row(M::GET, format!("/v1/media/{public_media}"), None, [K, K, K, K, K, K, K]),
        row(M::GET, format!("/v1/media/{pending_media}"), None, [D, D, D, K, D, K, D]),
        row(M::GET, "/v1/activities?q=pottery", None, [K, K, K, K, K, K, K]),
        row(
            M::PATCH,
            format!("/v1/activities/{public}"),
            Some(json!({"description": "New words."})),
            [U, D, D, K, D, D, D],
        ),
        row(M::POST, format!("/v1/activities/{pending}/approve"), None, [U, D, D, D, D, K, D]),
        row(
            M::POST,
            format!("/v1/activities/{pending}/reject"),
            Some(json!({"reason": "not ok"})),
            [U, D, D, D, D, K, D],
        ),
        row(M::POST, format!("/v1/activities/{public}/submit"), None, [U, D, D, K, D, D, D]),
        row(M::POST, format!("/v1/activities/{private}/publish"), None, [U, D, D, K, D, D, D]),
        row(M::POST, format!("/v1/activities/{public}/reschedule"), Some(when), [U, D, D, K, D, D, D]),
        row(
            M::POST,
            format!("/v1/activities/{to_cancel}/cancel"),
            Some(json!({"reason": "rain"})),
            [U, D, D, K, D, K, D],
        ),
        row(M::GET, "/v1/organiser/activities", None, [U, D, D, K, K, D, D]),
        row(M::GET, "/v1/moderation/queue", None, [U, D, D, D, D, K, D]),
        row(M::GET, format!("/v1/activities/{public}/attendees"), None, [U, D, D, K, D, D, D]),
        row(M::GET, format!("/v1/activities/{public}/history"), None, [U, D, D, K, D, D, K]),
        row(M::POST, format!("/v1/activities/{public}/media"), None, [U, D, D, K, D, D, D]),
        row(M::PUT, format!("/v1/activities/{public}/favourite"), None, [U, K, K, K, K, K, K]),
        row(M::DELETE, format!("/v1/activities/{public}/favourite"), None, [U, K, K, K, K, K, K]),
        // bookings and invitations
        row(M::GET, format!("/v1/activities/{public}/bookings/{booking}"), None, [U, K, D, K, D, D, D]),
        row(
            M::POST,
            format!("/v1/activities/{public}/bookings/{booking}/payment"),
            Some(json!({"payment_ref": "pay_123"})),
            [U, K, D, D, D, D, D],
        ),
        row(
            M::POST,
            format!("/v1/activities/{private}/invitations"),
            Some(json!({"emails": ["x@example.com"]})),
            [U, D, D, K, D, D, D],
        ),
        row(M::POST, format!("/v1/invitations/{invitation}/decline"), None, [U, K, D, D, D, D, D]),
        row(M::POST, format!("/v1/invitations/{invitation}/accept"), None, [U, K, D, D, D, D, D]),
        // series
        row(M::POST, "/v1/series", Some(crate::series::series_body()), [U, D, D, K, K, D, D]),
        row(M::GET, format!("/v1/series/{series}"), None, [D, D, D, K, D, K, D]),
        row(
            M::PATCH,
            format!("/v1/series/{series}"),
            Some(json!({"template": {"title": "Games"}})),
            [U, D, D, K, D, D, D],
        ),
        row(M::POST, format!("/v1/series/{series}/submit"), None, [U, D, D, K, D, D, D]),
        // chats
        row(M::POST, "/v1/chats", Some(json!({"member_ids": [target]})), [U, K, K, K, K, K, K]),
        row(M::GET, format!("/v1/chats/{chat}"), None, [U, K, D, K, D, D, D]),
        row(M::GET, format!("/v1/chats/{chat}/messages"), None, [U, K, D, K, D, D, D]),
        row(M::POST, format!("/v1/chats/{chat}/messages"), Some(json!({"text": "hello"})), [U, K, D, K, D, D, D]),
        row(
            M::PATCH,
            format!("/v1/chats/{chat}/messages/{message}"),
            Some(json!({"text": "edited"})),
            [U, K, D, D, D, D, D],
        ),
        row(M::DELETE, format!("/v1/chats/{chat}/messages/{message}"), None, [U, K, D, D, D, D, D]),
        row(M::POST, format!("/v1/chats/{chat}/members"), Some(json!({"member_id": target})), [U, K, D, K, D, D, D]),
        // operators and auditors
        row(M::GET, "/v1/audit/events", None, [U, D, D, D, D, D, K]),
        row(M::GET, "/v1/admin/projections", None, [U, D, D, D, D, K, D]),
        row(M::POST, "/v1/admin/projections/favourites/rebuild", None, [U, D, D, D, D, K, D]),
        // last: what ends a fixture
        row(M::DELETE, format!("/v1/activities/{public}/bookings/{booking}"), None, [U, K, D, D, D, D, D]),
        row(M::DELETE, format!("/v1/chats/{chat}/members/me"), None, [U, K, D, K, D, D, D]),
        row(M::POST, "/v1/me/organiser", Some(json!({"organisation_name": "Club"})), [U, K, K, K, K, K, K]),
    ];
    let tokens = [None, Some(member), Some(other), Some(owner), Some(other_org), Some(moderator), Some(auditor)];
    (tokens, rows)
}

async fn every_endpoint_checks_role_and_ownership(app: TestApp) {
    let (tokens, rows) = fixture(&app).await;
    let mut wrong = Vec::new();
    for r in &rows {
        // The refused first: an allowed call may change the fixture.
        let mut order: Vec<usize> = (0..7).collect();
        order.sort_by_key(|i| r.expect[*i] == E::Ok);
        for i in order {
            let a = call(&app, tokens[i].as_deref(), r).await;
            let got = class(a.status);
            if got != Some(r.expect[i]) {
                wrong.push(format!(
                    "{} {} as {}: expected {:?}, got {} {}",
                    r.method, r.path, ROLES[i], r.expect[i], a.status, a.body
                ));
            } else if got != Some(E::Ok) {
                assert_eq!(a.header("content-type"), Some("application/problem+json"), "{} {}", r.method, r.path);
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} answers differ from the table:\n{}",
        wrong.len(),
        rows.len() * 7,
        wrong.join("\n")
    );
}

both_profiles!(every_endpoint_checks_role_and_ownership);

/// Bad input on every endpoint that takes a body, sent by a caller it allows:
/// malformed JSON, a wrong type, missing fields, an oversize body, and unknown ids in
/// the path. Every answer is a 4xx problem+json (or, for `{}` where nothing is
/// required, an ordinary answer), never a 5xx; a refused request appends nothing.
async fn bad_input_on_every_endpoint_is_a_4xx_problem_and_changes_nothing(app: TestApp) {
    let (tokens, rows) = fixture(&app).await;
    let huge = json!({"text": "x".repeat(1_100_000)});
    let mut wrong = Vec::new();
    let mut checked = 0;
    for r in rows.iter().filter(|r| r.method != Method::GET) {
        let Some(who) = (1..7).find(|i| r.expect[*i] == E::Ok) else { continue };
        let token = tokens[who].as_deref();
        let unknown_ids = {
            let mut path = r.path.clone();
            for part in r.path.split('/') {
                if uuid::Uuid::parse_str(part).is_ok() {
                    path = path.replace(part, &uuid::Uuid::now_v7().to_string());
                }
            }
            (path != r.path).then_some(path)
        };
        let mut cases: Vec<(&str, reqwest::RequestBuilder)> = Vec::new();
        let req = |path: &str| {
            let b = app.http.request(r.method.clone(), app.url(path));
            match token {
                Some(t) => b.bearer_auth(t),
                None => b,
            }
        };
        if r.body.is_some() {
            cases.push(("malformed JSON", req(&r.path).header("content-type", "application/json").body("{\"oops\": ")));
            cases.push(("a wrong type", req(&r.path).json(&json!([1, 2]))));
            cases.push((
                "wrongly typed fields",
                req(&r.path).json(&json!({
                    "seats": "two", "text": 5, "reason": [], "name": {}, "emails": "x", "member_ids": "x",
                    "display_name": 1, "title": false, "starts_at": "soon", "payment_ref": 3, "member_id": "x",
                })),
            ));
            cases.push(("missing fields", req(&r.path).json(&json!({}))));
            cases.push(("an oversize body", req(&r.path).json(&huge)));
        }
        if let Some(path) = &unknown_ids {
            let b = req(path);
            cases.push((
                "unknown ids",
                match &r.body {
                    Some(body) => b.json(body),
                    None => b,
                },
            ));
        }
        for (what, request) in cases {
            // Its own request id is the correlation id of anything it appends (other
            // appends happen meanwhile: timers, the chat rooms of published activities).
            let request_id = uuid::Uuid::now_v7();
            let a = app.send(request.header("x-request-id", request_id.to_string())).await;
            checked += 1;
            let fine_for_empty = what == "missing fields" && class(a.status) == Some(E::Ok);
            if fine_for_empty {
                continue;
            }
            let appended: i64 = gather_commands::on_db_read!(&app.app_state.db, p =>
                sqlx::query_scalar("SELECT count(*) FROM events WHERE correlation_id = $1")
                    .bind(request_id).fetch_one(p).await)
            .unwrap();
            if !(400..500).contains(&a.status) || a.header("content-type") != Some("application/problem+json") {
                wrong.push(format!("{} {} with {what}: {} {}", r.method, r.path, a.status, a.body));
            } else if appended != 0 {
                wrong.push(format!(
                    "{} {} with {what}: {} but {appended} events were appended",
                    r.method, r.path, a.status
                ));
            }
        }
    }
    assert!(checked >= 100, "every case ran: {checked}");
    assert!(wrong.is_empty(), "{} of {checked} bad requests were mishandled:\n{}", wrong.len(), wrong.join("\n"));
}

both_profiles!(bad_input_on_every_endpoint_is_a_4xx_problem_and_changes_nothing);
