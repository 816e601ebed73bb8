//! The read side through HTTP: every query endpoint with its roles and paging, the
//! projection specs (given events, then this answer) and read-your-writes.

use crate::harness::{AUDITOR, MODERATOR, TestApp, activity_body, published_activity, quick_member};
use serde_json::{Value, json};

both_profiles!(
    bookings_attendees_and_a_members_lists_follow_the_log,
    organiser_lists_and_the_moderation_queue_are_ordered_and_guarded,
    chat_messages_page_newest_first_and_show_edits_and_deletions,
    history_shows_the_events_with_metadata_and_the_state_as_of_a_version,
    an_invitee_sees_the_invite_only_activity_and_its_invitation,
    a_get_on_a_write_only_path_is_a_405_problem,
    lists_refuse_bad_paging_with_a_problem,
);

async fn token_of(app: &TestApp, who: (&str, &str)) -> String {
    app.login(who.0, who.1).await.body["token"].as_str().unwrap().to_string()
}

/// Walks every page of `path` (with `limit`), returning all items in order.
async fn all_pages(app: &TestApp, path: &str, token: Option<&str>, limit: i64) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    for _ in 0..1000 {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let a = app.get(&url, token, None).await;
        assert_eq!(a.status, 200, "{url}: {:?}", a.body);
        assert!(a.header("gather-position").is_some(), "every answer carries Gather-Position");
        let page = a.body["items"].as_array().unwrap().clone();
        assert!(page.len() as i64 <= limit);
        items.extend(page);
        match a.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
    panic!("paging did not end");
}

async fn bookings_attendees_and_a_members_lists_follow_the_log(app: TestApp) {
    let org = app.organiser("att@example.com").await;
    let id = published_activity(&app, &org, 2, true).await;
    let mut members = Vec::new();
    let mut last = 0;
    for _ in 0..4 {
        let (mid, token) = quick_member(&app).await;
        let a = app.post(&format!("/v1/activities/{id}/bookings"), Some(&token), json!({"seats": 1})).await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        last = a.position();
        // The Location header points at something the member can GET.
        let location = a.header("location").expect("Location").to_string();
        let b = app.get(&location, Some(&token), Some(last)).await;
        assert_eq!(b.status, 200, "{location}: {:?}", b.body);
        assert_eq!(b.body["status"], a.body["status"]);
        assert_eq!(b.body["member_id"], json!(mid));
        members.push((mid, token, a.body["id"].as_str().unwrap().to_string()));
    }
    // Attendees (owner only): two confirmed, two waiting in booking order.
    let a = app.get(&format!("/v1/activities/{id}/attendees"), Some(&org), Some(last)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let ids = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|x| x["member_id"].as_str().unwrap().to_string()).collect()
    };
    let m: Vec<String> = members.iter().map(|m| m.0.to_string()).collect();
    assert_eq!(ids(&a.body["attendees"]), m[0..2].to_vec());
    assert_eq!(ids(&a.body["waitlist"]), m[2..4].to_vec());
    assert_eq!(a.body["attendees"][0]["name"], json!("Quick"));
    assert_eq!(a.body["seats_confirmed"], json!(2));
    app.get(&format!("/v1/activities/{id}/attendees"), Some(&members[0].1), None).await.assert_problem(403, None);
    app.get(&format!("/v1/activities/{id}/attendees"), None, None).await.assert_problem(401, None);
    // Someone else's booking is not found; the owner sees it.
    let other = format!("/v1/activities/{id}/bookings/{}", members[1].2);
    app.get(&other, Some(&members[0].1), None).await.assert_problem(404, None);
    assert_eq!(app.get(&other, Some(&org), None).await.status, 200);
    // Spec: a promoted waitlist entry moves to the attendees; seats left stay right.
    let c = app
        .send(
            app.http
                .delete(app.url(&format!("/v1/activities/{id}/bookings/{}", members[0].2)))
                .bearer_auth(&members[0].1),
        )
        .await;
    assert_eq!(c.status, 202, "{:?}", c.body);
    let a = app.get(&format!("/v1/activities/{id}/attendees"), Some(&org), Some(c.position())).await;
    assert_eq!(ids(&a.body["attendees"]), vec![m[1].clone(), m[2].clone()]);
    assert_eq!(ids(&a.body["waitlist"]), vec![m[3].clone()]);
    let mine = app.get("/v1/me/bookings?when=upcoming", Some(&members[0].1), Some(c.position())).await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    assert_eq!(mine.body["items"][0]["status"], json!("cancelled"));
    assert_eq!(mine.body["items"][0]["activity"]["title"], json!("Kids pottery"));
    let past = app.get("/v1/me/bookings?when=past", Some(&members[0].1), None).await;
    assert_eq!(past.body["items"], json!([]));
    let shown = app.get(&format!("/v1/activities/{id}"), None, Some(c.position())).await;
    assert_eq!(shown.body["seats_left"], json!(0));
    assert_eq!(shown.body["confirmed_bookings"], json!(2));
    // Favourites: newest first, paged without duplicates or holes.
    let second = published_activity(&app, &org, 5, false).await;
    let (_, fan) = quick_member(&app).await;
    let mut pos = 0;
    for a in [&id, &second] {
        let r = app.send(app.http.put(app.url(&format!("/v1/activities/{a}/favourite"))).bearer_auth(&fan)).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        pos = r.position();
    }
    let first = app.get("/v1/me/favourites?limit=1", Some(&fan), Some(pos)).await;
    assert_eq!(first.body["items"][0]["id"], json!(second), "newest first");
    let favs = all_pages(&app, "/v1/me/favourites", Some(&fan), 1).await;
    let got: Vec<&str> = favs.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(got, vec![second.as_str(), id.as_str()]);
    let shown = app.get(&format!("/v1/activities/{id}"), None, None).await;
    assert_eq!(shown.body["favourites"], json!(1));
    assert_eq!(shown.body["popularity"], json!(3), "2 confirmed bookings + 1 favourite");
}

async fn organiser_lists_and_the_moderation_queue_are_ordered_and_guarded(app: TestApp) {
    let org = app.organiser("queue@example.com").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let a = app.post("/v1/activities", Some(&org), activity_body()).await;
        assert_eq!(a.status, 201);
        ids.push(a.body["id"].as_str().unwrap().to_string());
    }
    // Submitted in the order 2, 0: the queue is oldest submission first.
    let mut pos = 0;
    for i in [2, 0] {
        let a = app.post(&format!("/v1/activities/{}/submit", ids[i]), Some(&org), json!({})).await;
        assert_eq!(a.status, 202);
        pos = a.position();
    }
    let moderator = token_of(&app, MODERATOR).await;
    let q = app.get("/v1/moderation/queue", Some(&moderator), Some(pos)).await;
    assert_eq!(q.status, 200, "{:?}", q.body);
    let got: Vec<&str> = q.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[0].as_str()]);
    let paged = all_pages(&app, "/v1/moderation/queue", Some(&moderator), 1).await;
    assert_eq!(paged.len(), 2);
    app.get("/v1/moderation/queue", Some(&org), None).await.assert_problem(403, None);
    app.get("/v1/moderation/queue", None, None).await.assert_problem(401, None);
    let drafts = app.get("/v1/organiser/activities?status=draft", Some(&org), Some(pos)).await;
    assert_eq!(drafts.status, 200, "{:?}", drafts.body);
    let got: Vec<&str> = drafts.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(got, vec![ids[1].as_str()]);
    let all = all_pages(&app, "/v1/organiser/activities", Some(&org), 2).await;
    let got: Vec<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()], "newest first");
    // Another organiser sees none of them.
    let other = app.organiser("other-org@example.com").await;
    let theirs = app.get("/v1/organiser/activities", Some(&other), None).await;
    assert_eq!(theirs.body["items"], json!([]));
    let (_, member) = quick_member(&app).await;
    app.get("/v1/organiser/activities", Some(&member), None).await.assert_problem(403, None);
    app.get("/v1/organiser/activities?status=nope", Some(&org), None).await.assert_problem(400, None);
}

async fn chat_messages_page_newest_first_and_show_edits_and_deletions(app: TestApp) {
    let (a_id, a) = quick_member(&app).await;
    let (b_id, b) = quick_member(&app).await;
    let (_, outsider) = quick_member(&app).await;
    let c = app.post("/v1/chats", Some(&a), json!({"title": "Clay", "member_ids": [b_id]})).await;
    assert_eq!(c.status, 201, "{:?}", c.body);
    let chat = c.body["id"].as_str().unwrap().to_string();
    let mut msgs = Vec::new();
    let mut pos = 0;
    for i in 0..5 {
        let m = app.post(&format!("/v1/chats/{chat}/messages"), Some(&a), json!({"text": format!("hello {i}")})).await;
        assert_eq!(m.status, 201, "{:?}", m.body);
        msgs.push(m.body["id"].as_str().unwrap().to_string());
        pos = m.position();
    }
    let edit = app
        .send(
            app.http
                .patch(app.url(&format!("/v1/chats/{chat}/messages/{}", msgs[1])))
                .bearer_auth(&a)
                .json(&json!({"text": "edited"})),
        )
        .await;
    assert_eq!(edit.status, 202, "{:?}", edit.body);
    let del =
        app.send(app.http.delete(app.url(&format!("/v1/chats/{chat}/messages/{}", msgs[3]))).bearer_auth(&a)).await;
    assert_eq!(del.status, 202, "{:?}", del.body);
    pos = pos.max(del.position());
    let first = app.get(&format!("/v1/chats/{chat}/messages?limit=2"), Some(&b), Some(pos)).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["items"][0]["id"], json!(msgs[4]), "newest first");
    let all = all_pages(&app, &format!("/v1/chats/{chat}/messages"), Some(&b), 2).await;
    let got: Vec<&str> = all.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let want: Vec<&str> = msgs.iter().rev().map(String::as_str).collect();
    assert_eq!(got, want);
    // Spec: a deleted message shows as deleted (no text); an edited one as edited.
    assert_eq!(all[1]["deleted"], json!(true));
    assert_eq!(all[1]["text"], Value::Null);
    assert_eq!(all[3]["text"], json!("edited"));
    assert_eq!(all[3]["edited"], json!(true));
    let shown = app.get(&format!("/v1/chats/{chat}"), Some(&a), None).await;
    assert_eq!(shown.status, 200, "{:?}", shown.body);
    assert_eq!(shown.body["kind"], json!("group"));
    assert_eq!(shown.body["title"], json!("Clay"));
    assert_eq!(shown.body["members"].as_array().unwrap().len(), 2);
    assert_eq!(shown.body["last_message"]["id"], json!(msgs[4]));
    let mine = app.get("/v1/me/chats", Some(&b), None).await;
    assert_eq!(mine.body["items"][0]["id"], json!(chat));
    assert_eq!(mine.body["items"][0]["last_message"]["text"], json!("hello 4"));
    // Outsiders learn nothing; guests are refused.
    app.get(&format!("/v1/chats/{chat}"), Some(&outsider), None).await.assert_problem(404, None);
    app.get(&format!("/v1/chats/{chat}/messages"), Some(&outsider), None).await.assert_problem(404, None);
    app.get(&format!("/v1/chats/{chat}/messages"), None, None).await.assert_problem(401, None);
    let _ = a_id;
}

async fn history_shows_the_events_with_metadata_and_the_state_as_of_a_version(app: TestApp) {
    let org = app.organiser("hist@example.com").await;
    let id = published_activity(&app, &org, 3, false).await;
    let h = app.get(&format!("/v1/activities/{id}/history"), Some(&org), None).await;
    assert_eq!(h.status, 200, "{:?}", h.body);
    let types: Vec<&str> = h.body["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["ActivityDrafted", "ActivitySubmitted", "ActivityPublished"]);
    assert!(h.body["events"][0]["metadata"]["command_id"].is_string());
    assert!(h.body["events"][0]["metadata"]["recorded_at"].is_string());
    assert_eq!(h.body["state"]["status"], json!("published"));
    let early = app.get(&format!("/v1/activities/{id}/history?as_of_version=0"), Some(&org), None).await;
    assert_eq!(early.body["state"]["status"], json!("draft"));
    assert_eq!(early.body["events"].as_array().unwrap().len(), 1);
    let t = h.body["events"][1]["metadata"]["recorded_at"].as_str().unwrap().to_string();
    let url = format!("/v1/activities/{id}/history?as_of_time={}", t.replace('+', "%2B"));
    let at = app.get(&url, Some(&org), None).await;
    assert_eq!(at.status, 200, "{:?}", at.body);
    assert_eq!(at.body["state"]["status"], json!("pending"));
    let auditor = token_of(&app, AUDITOR).await;
    assert_eq!(app.get(&format!("/v1/activities/{id}/history"), Some(&auditor), None).await.status, 200);
    let (_, member) = quick_member(&app).await;
    app.get(&format!("/v1/activities/{id}/history"), Some(&member), None).await.assert_problem(403, None);
    app.get(&format!("/v1/activities/{id}/history?as_of_version=x"), Some(&org), None).await.assert_problem(400, None);
    app.get(&format!("/v1/activities/{}/history", uuid::Uuid::now_v7()), Some(&org), None)
        .await
        .assert_problem(404, None);
}

async fn an_invitee_sees_the_invite_only_activity_and_its_invitation(app: TestApp) {
    let org = app.organiser("vip@example.com").await;
    let mut body = activity_body();
    body["visibility"] = json!("invite_only");
    let a = app.post("/v1/activities", Some(&org), body).await;
    let id = a.body["id"].as_str().unwrap().to_string();
    assert_eq!(app.post(&format!("/v1/activities/{id}/publish"), Some(&org), json!({})).await.status, 202);
    let (_, guest_token) = app.register("Invited.Person@Example.com").await;
    let (_, stranger) = quick_member(&app).await;
    let inv = app
        .post(
            &format!("/v1/activities/{id}/invitations"),
            Some(&org),
            json!({"emails": ["invited.person@example.com"]}),
        )
        .await;
    assert_eq!(inv.status, 201, "{:?}", inv.body);
    let shown = app.get(&format!("/v1/activities/{id}"), Some(&guest_token), Some(inv.position())).await;
    assert_eq!(shown.status, 200, "{:?}", shown.body);
    app.get(&format!("/v1/activities/{id}"), Some(&stranger), None).await.assert_problem(404, None);
    app.get(&format!("/v1/activities/{id}"), None, None).await.assert_problem(404, None);
    let mine = app.get("/v1/me/invitations", Some(&guest_token), Some(inv.position())).await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    assert_eq!(mine.body["items"][0]["activity_id"], json!(id));
    assert_eq!(mine.body["items"][0]["status"], json!("pending"));
    assert_eq!(mine.body["items"][0]["activity"]["title"], json!("Kids pottery"));
    let none = app.get("/v1/me/invitations", Some(&stranger), None).await;
    assert_eq!(none.body["items"], json!([]));
    // The invite-only activity never shows in search.
    let s = app.get("/v1/activities?q=pottery", None, Some(inv.position())).await;
    assert_eq!(s.status, 200, "{:?}", s.body);
    assert!(s.body["items"].as_array().unwrap().iter().all(|i| i["id"] != json!(id)));
}

async fn a_get_on_a_write_only_path_is_a_405_problem(app: TestApp) {
    let id = uuid::Uuid::now_v7();
    for path in [format!("/v1/activities/{id}/submit"), "/v1/auth/login".into(), "/v1/me/organiser".into()] {
        let a = app.get(&path, None, None).await;
        a.assert_problem(405, Some("method_not_allowed"));
    }
}

async fn lists_refuse_bad_paging_with_a_problem(app: TestApp) {
    let (_, m) = quick_member(&app).await;
    for q in ["limit=0", "limit=101", "limit=x", "cursor=zz", "cursor=7b7d", "when=soon"] {
        let a = app.get(&format!("/v1/me/bookings?{q}"), Some(&m), None).await;
        a.assert_problem(400, None);
    }
    // A cursor of one list is refused by another whose key has another type.
    let a = app.get("/v1/me/favourites?cursor=7b226b6579223a2278222c226964223a2230303030303030302d303030302d303030302d303030302d303030303030303030303030227d", Some(&m), None).await;
    a.assert_problem(400, None);
}

both_profiles!(rebuilding_every_projection_while_queries_run_keeps_every_answer);

/// Replays every projection beside its live tables while clients keep reading: every
/// read answers 200 throughout, the answers after the swaps equal those before, and a
/// verifying rebuild finds each fresh copy identical to the live one.
async fn rebuilding_every_projection_while_queries_run_keeps_every_answer(app: TestApp) {
    let org = app.organiser("replay-reads@example.com").await;
    let id = published_activity(&app, &org, 2, true).await;
    let mut members = Vec::new();
    let mut pos = 0;
    for _ in 0..3 {
        let (mid, token) = quick_member(&app).await;
        let a = app.post(&format!("/v1/activities/{id}/bookings"), Some(&token), json!({"seats": 1})).await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        let f = app.send(app.http.put(app.url(&format!("/v1/activities/{id}/favourite"))).bearer_auth(&token)).await;
        pos = f.position();
        members.push((mid, token));
    }
    let c = app.post("/v1/chats", Some(&members[0].1), json!({"title": "Replay", "member_ids": [members[1].0]})).await;
    let chat = c.body["id"].as_str().unwrap().to_string();
    let m = app.post(&format!("/v1/chats/{chat}/messages"), Some(&members[1].1), json!({"text": "see you"})).await;
    pos = pos.max(m.position());
    // The process manager adds the confirmed attendees to the activity's chat room in
    // the background: let it settle, so the answers change only if the rebuild breaks them.
    let mut settled = false;
    for _ in 0..1200 {
        let a = app.get(&format!("/v1/chats/{id}"), Some(&org), None).await;
        if a.status == 200 && a.body["members"].as_array().is_some_and(|m| m.len() == 3) {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(settled, "the activity room holds the organiser and both attendees within 30 s");
    pos = pos.max(app.app_state.store.head().await.unwrap().position);
    let reads: Vec<(String, Option<String>)> = vec![
        (format!("/v1/activities/{id}"), None),
        (format!("/v1/activities/{id}/attendees"), Some(org.clone())),
        ("/v1/activities?q=pottery".into(), None),
        ("/v1/activities?sort=popular".into(), None),
        ("/v1/me/bookings".into(), Some(members[2].1.clone())),
        ("/v1/me/favourites".into(), Some(members[0].1.clone())),
        ("/v1/me/chats".into(), Some(members[1].1.clone())),
        (format!("/v1/chats/{chat}/messages"), Some(members[0].1.clone())),
        ("/v1/organiser/activities".into(), Some(org.clone())),
        ("/v1/me".into(), Some(members[0].1.clone())),
    ];
    let answers = |min: Option<i64>| {
        let (app, reads) = (&app, &reads);
        async move {
            let mut out = Vec::new();
            for (path, token) in reads {
                let a = app.get(path, token.as_deref(), min).await;
                assert_eq!(a.status, 200, "{path}: {:?}", a.body);
                out.push(a.body);
            }
            out
        }
    };
    let before = answers(Some(pos)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers = {
        let (stop, url, reads) = (stop.clone(), app.url(""), reads.clone());
        let http = app.http.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (path, token) in &reads {
                    let mut req = http.get(format!("{url}{path}"));
                    if let Some(t) = token {
                        req = req.bearer_auth(t);
                    }
                    let status = req.send().await.expect("request").status().as_u16();
                    assert_eq!(status, 200, "{path} while rebuilding");
                    n += 1;
                }
            }
            n
        })
    };
    let (db, store) = (&app.app_state.db, app.app_state.store.clone());
    for name in gather_api::ops::replay_targets("all").unwrap() {
        gather_api::ops::replay(db, store.clone(), name, |_| {}).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = readers.await.expect("readers kept answering");
    assert!(served >= reads.len() as u64, "queries ran during the rebuilds");
    for ((path, _), (after, before)) in reads.iter().zip(answers(Some(pos)).await.iter().zip(&before)) {
        assert_eq!(after, before, "{path}: identical answers after every swap");
    }
    for name in gather_api::ops::replay_targets("all").unwrap() {
        let report = gather_api::ops::verify_projection(db, store.clone(), name, |_| {}).await.unwrap();
        assert!(report.identical(), "{name}: {report:?}");
    }
}

async fn history_honours_gather_min_position(app: TestApp) {
    let org = app.organiser(&format!("o{}@example.com", uuid::Uuid::now_v7().simple())).await;
    let a = app.post("/v1/activities", Some(&org), activity_body()).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_string();
    let h = app.get(&format!("/v1/activities/{id}/history"), Some(&org), Some(a.position())).await;
    assert_eq!(h.status, 200, "the log itself is the source: nothing to wait for: {:?}", h.body);
    assert!(h.position() >= a.position(), "Gather-Position {} covers the write {}", h.position(), a.position());
    assert_eq!(h.body["events"][0]["type"], json!("ActivityDrafted"));
}

both_profiles!(history_honours_gather_min_position);
