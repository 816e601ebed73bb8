//! The audit feed: `GET /v1/audit/events` (auditor) with its filters, paging, ndjson
//! and live follow, and `gather events tail`'s library half (`audit::tail`).

use crate::harness::{AUDITOR, Answer, MODERATOR, TestApp, eventually, published_activity, quick_member};
use chrono::{DateTime, Utc};
use gather_api::routes::audit;
use gather_commands::store::{AppendMeta, Checkpoint, ExpectedVersion, LogFilter, NewEvent, StreamAppend};
use gather_domain::Role;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

both_profiles!(
    only_an_auditor_reads_the_audit_feed,
    each_filter_narrows_the_feed_to_the_events_it_names,
    next_cursor_pages_through_every_event_exactly_once,
    a_rare_filter_examines_a_bounded_number_of_events_per_request,
    bad_parameters_are_400_problems_naming_the_parameter,
    an_ndjson_page_holds_the_same_events_as_the_json_page,
    a_follow_delivers_an_event_appended_after_it_caught_up,
    a_follow_ends_cleanly_when_the_server_shuts_down,
    a_caught_up_feed_repeats_its_heartbeat_while_idle_and_ends_on_stop,
    events_tail_prints_the_feeds_lines_and_refuses_an_unknown_position,
);

const FEED: &str = "/v1/audit/events";

async fn token_of(app: &TestApp, who: (&str, &str)) -> String {
    let a = app.login(who.0, who.1).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body["token"].as_str().unwrap().to_string()
}

async fn audit(app: &TestApp, token: Option<&str>, query: &[(&str, &str)]) -> Answer {
    let mut req = app.http.get(app.url(FEED)).query(query);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    app.send(req).await
}

fn items(a: &Answer) -> Vec<Value> {
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body["items"].as_array().expect("items").clone()
}

/// Every matching event, following `next_cursor` from the start, `limit` at a time.
async fn all_pages(app: &TestApp, token: &str, query: &[(&str, &str)], limit: i64) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    for _ in 0..1000 {
        let (a, l) = (after.to_string(), limit.to_string());
        let mut q = query.to_vec();
        q.extend([("after", a.as_str()), ("limit", l.as_str())]);
        let page = audit(app, Some(token), &q).await;
        let got = items(&page);
        assert!(got.len() as i64 <= limit, "{} items for limit {limit}", got.len());
        assert!(page.header("gather-position").is_some(), "every answer carries Gather-Position");
        all.extend(got);
        match &page.body["next_cursor"] {
            Value::Null => return all,
            next => {
                let next = next.as_i64().expect("next_cursor is a position");
                assert!(next > after, "the cursor moves on: {next} after {after}");
                after = next;
            }
        }
    }
    panic!("paging did not end");
}

fn positions(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["position"].as_i64().expect("position")).collect()
}

fn recorded_at(e: &Value) -> DateTime<Utc> {
    e["metadata"]["recorded_at"].as_str().expect("recorded_at").parse().expect("RFC 3339")
}

/// Two members, one of them an organiser with a published activity.
struct World {
    organiser: Uuid,
    member: Uuid,
    activity: String,
}

async fn world(app: &TestApp) -> World {
    let (member, _) = quick_member(app).await;
    let (organiser, token) = quick_member(app).await;
    let a = app.post("/v1/me/organiser", Some(&token), json!({"organisation_name": "Clay Club"})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let token = app.app_state.jwt.issue(organiser, &[Role::Member, Role::Organiser]).unwrap();
    let activity = published_activity(app, &token, 10, false).await;
    // The process manager opens the activity's chat room: wait for it, so the log holds
    // still while a test reads it.
    eventually("the activity's chat room opens", || async {
        let chats = LogFilter::categories(&["chat"]);
        !app.app_state.store.read_log_page(Checkpoint::START, &chats, 1).await.unwrap().is_empty()
    })
    .await;
    World { organiser, member, activity }
}

async fn only_an_auditor_reads_the_audit_feed(app: TestApp) {
    audit(&app, None, &[]).await.assert_problem(401, Some("unauthorized"));
    let (_, member) = quick_member(&app).await;
    audit(&app, Some(&member), &[]).await.assert_problem(403, Some("forbidden"));
    let moderator = token_of(&app, MODERATOR).await;
    audit(&app, Some(&moderator), &[]).await.assert_problem(403, Some("forbidden"));
    // The role check comes before any streaming.
    let follow =
        app.http.get(app.url(FEED)).query(&[("follow", "true")]).header("accept", audit::NDJSON).bearer_auth(&member);
    app.send(follow).await.assert_problem(403, Some("forbidden"));

    let auditor = token_of(&app, AUDITOR).await;
    let a = audit(&app, Some(&auditor), &[]).await;
    let got = items(&a);
    assert!(a.body["next_cursor"].is_null(), "one page holds this short log: {:?}", a.body);
    // The auditor's own bootstrap shows up, with its metadata.
    let granted = got
        .iter()
        .find(|e| e["type"] == "RoleGranted" && e["data"]["role"] == "auditor")
        .unwrap_or_else(|| panic!("the auditor's RoleGranted in {got:?}"));
    assert!(granted["stream"].as_str().unwrap().starts_with("member-"));
    for key in ["event_id", "command_id", "correlation_id", "causation_id", "actor", "recorded_at", "schema_version"] {
        assert!(granted["metadata"].get(key).is_some(), "metadata.{key} in {granted}");
    }
    assert_eq!(a.position(), got.last().unwrap()["position"].as_i64().unwrap());
}

async fn each_filter_narrows_the_feed_to_the_events_it_names(app: TestApp) {
    let w = world(&app).await;
    let auditor = token_of(&app, AUDITOR).await;
    let all = items(&audit(&app, Some(&auditor), &[("limit", "1000")]).await);
    let total = all.len();

    let stream = format!("activity-{}", w.activity);
    let by_stream = items(&audit(&app, Some(&auditor), &[("stream", &stream)]).await);
    assert!(!by_stream.is_empty() && by_stream.len() < total, "{} of {total}", by_stream.len());
    assert!(by_stream.iter().all(|e| e["stream"] == json!(stream)), "{by_stream:?}");
    let versions: Vec<_> = by_stream.iter().map(|e| e["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, (0..by_stream.len() as i64).collect::<Vec<_>>(), "the whole stream, in order");

    let members = items(&audit(&app, Some(&auditor), &[("category", "member")]).await);
    assert!(!members.is_empty() && members.len() < total);
    assert!(members.iter().all(|e| e["stream"].as_str().unwrap().starts_with("member-")), "{members:?}");
    let two = items(&audit(&app, Some(&auditor), &[("category", "member,activity")]).await);
    assert_eq!(two.len(), members.len() + by_stream.len(), "a list of categories is their union");

    let created = items(&audit(&app, Some(&auditor), &[("type", "OrganiserProfileCreated")]).await);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["stream"], json!(format!("member-{}", w.organiser)));

    let member = w.member.to_string();
    let by_member = items(&audit(&app, Some(&auditor), &[("actor", &member)]).await);
    assert!(!by_member.is_empty() && by_member.len() < total);
    assert!(by_member.iter().all(|e| e["metadata"]["actor"] == json!(member)), "{by_member:?}");
    let organiser = w.organiser.to_string();
    let by_organiser = items(&audit(&app, Some(&auditor), &[("actor", &organiser)]).await);
    assert!(by_organiser.iter().any(|e| e["type"] == "ActivityDrafted"), "{by_organiser:?}");
    assert!(by_organiser.iter().all(|e| e["metadata"]["actor"] == json!(organiser)));
    let registered = items(
        &audit(&app, Some(&auditor), &[("category", "member"), ("type", "MemberRegistered"), ("actor", &member)]).await,
    );
    assert_eq!(registered.len(), 1, "filters combine: {registered:?}");

    // Time bounds: the activity was drafted after the member registered, and published after that.
    let drafted = by_stream.iter().find(|e| e["type"] == "ActivityDrafted").expect("drafted");
    let t = drafted["metadata"]["recorded_at"].as_str().unwrap();
    let from = items(&audit(&app, Some(&auditor), &[("from", t), ("limit", "1000")]).await);
    assert!(from.iter().all(|e| recorded_at(e) >= recorded_at(drafted)), "{from:?}");
    assert!(from.iter().any(|e| e["position"] == drafted["position"]), "from is inclusive");
    assert!(!from.iter().any(|e| e["metadata"]["actor"] == json!(member)), "the member registered earlier");
    let to = items(&audit(&app, Some(&auditor), &[("to", t), ("limit", "1000")]).await);
    assert!(to.iter().all(|e| recorded_at(e) <= recorded_at(drafted)), "{to:?}");
    assert!(to.iter().any(|e| e["position"] == drafted["position"]), "to is inclusive");
    assert!(!to.iter().any(|e| e["type"] == "ActivityPublished"), "published later: {to:?}");
    assert!(from.len() < total && to.len() < total);
    let both = items(&audit(&app, Some(&auditor), &[("from", t), ("to", t)]).await);
    assert!(both.iter().any(|e| e["position"] == drafted["position"]) && both.len() < from.len());
}

async fn next_cursor_pages_through_every_event_exactly_once(app: TestApp) {
    let w = world(&app).await;
    let auditor = token_of(&app, AUDITOR).await;
    let whole = items(&audit(&app, Some(&auditor), &[("limit", "1000")]).await);
    assert_eq!(whole.len() as i64, app.event_count().await, "one page of 1000 holds the whole log");
    let paged = all_pages(&app, &auditor, &[], 3).await;
    assert_eq!(paged, whole, "pages of 3 hold every event once, in order");
    let at = positions(&paged);
    assert!(at.windows(2).all(|p| p[0] < p[1]), "global order: {at:?}");

    let stream = format!("member-{}", w.organiser);
    let one_by_one = all_pages(&app, &auditor, &[("stream", &stream)], 1).await;
    let expected: Vec<Value> = whole.iter().filter(|e| e["stream"] == json!(stream)).cloned().collect();
    assert!(expected.len() >= 2, "{expected:?}");
    assert_eq!(one_by_one, expected);

    // A page from the middle starts right after the position given.
    let middle = at[at.len() / 2];
    let rest = items(&audit(&app, Some(&auditor), &[("after", &middle.to_string()), ("limit", "1000")]).await);
    assert_eq!(positions(&rest), at.iter().copied().filter(|p| *p > middle).collect::<Vec<_>>(), "{rest:#?}");
}

async fn a_rare_filter_examines_a_bounded_number_of_events_per_request(app: TestApp) {
    let auditor = token_of(&app, AUDITOR).await;
    // More events than one request examines, none of them by the member who comes after.
    let filler = format!("filler-{}", Uuid::now_v7());
    let batch = 500;
    for _ in 0..(audit::MAX_SCAN / batch + 1) {
        let events = (0..batch)
            .map(|_| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "Filled".into(),
                schema_version: 1,
                data: json!({}),
            })
            .collect();
        let append = StreamAppend { stream: filler.clone(), expected: ExpectedVersion::Any, events };
        app.app_state.store.append(&AppendMeta::new(Uuid::now_v7(), None), vec![append]).await.expect("filler");
    }
    let (member, _) = quick_member(&app).await;
    let member = member.to_string();

    let first = audit(&app, Some(&auditor), &[("actor", &member)]).await;
    assert!(items(&first).is_empty(), "the member's events lie beyond the first {} events", audit::MAX_SCAN);
    let next = first.body["next_cursor"].as_i64().expect("a cursor to go on from");
    assert_eq!(first.position(), next, "Gather-Position says how far the log was examined");
    let found = all_pages(&app, &auditor, &[("actor", &member)], 100).await;
    assert!(found.iter().any(|e| e["type"] == "MemberRegistered"), "{found:?}");
    assert!(found.iter().all(|e| e["metadata"]["actor"] == json!(member)), "{found:?}");
    assert!(found.iter().all(|e| e["position"].as_i64().unwrap() > next), "{found:?}");
}

async fn bad_parameters_are_400_problems_naming_the_parameter(app: TestApp) {
    let auditor = token_of(&app, AUDITOR).await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("after", "-1")], "after"),
        (&[("after", "first")], "after"),
        (&[("after", "999999")], "after"),
        (&[("limit", "0")], "limit"),
        (&[("limit", "1001")], "limit"),
        (&[("limit", "ten")], "limit"),
        (&[("actor", "not-a-uuid")], "actor"),
        (&[("from", "yesterday")], "from"),
        (&[("to", "2030-13-01T00:00:00Z")], "to"),
        (&[("from", "2030-05-02T00:00:00Z"), ("to", "2030-05-01T00:00:00Z")], "to"),
        (&[("stream", "nodash")], "stream"),
        (&[("category", "a-b")], "category"),
        (&[("type", "A,,B")], "type"),
        (&[("follow", "true")], "follow"),
        (&[("follow", "maybe")], "follow"),
    ];
    for (query, field) in cases {
        let a = audit(&app, Some(&auditor), query).await;
        a.assert_problem(400, Some("validation_failed"));
        assert_eq!(a.body["errors"][0]["field"], json!(field), "{query:?}: {:?}", a.body);
    }
    for limit in ["1", "1000"] {
        assert_eq!(audit(&app, Some(&auditor), &[("limit", limit)]).await.status, 200, "limit={limit}");
    }
    let later: DateTime<Utc> = "2030-05-01T00:00:00+02:00".parse().unwrap();
    let a = audit(&app, Some(&auditor), &[("from", "2030-05-01T00:00:00+02:00")]).await;
    assert!(items(&a).iter().all(|e| recorded_at(e) >= later), "an offset is an RFC 3339 time too");
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("one JSON value per line")).collect()
}

async fn an_ndjson_page_holds_the_same_events_as_the_json_page(app: TestApp) {
    world(&app).await;
    let auditor = token_of(&app, AUDITOR).await;
    let json_page = audit(&app, Some(&auditor), &[("limit", "3"), ("category", "member")]).await;
    let res = app
        .http
        .get(app.url(FEED))
        .query(&[("limit", "3"), ("category", "member")])
        .header("accept", audit::NDJSON)
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], audit::NDJSON);
    let next = res.headers().get("gather-next-cursor").map(|v| v.to_str().unwrap().parse::<i64>().unwrap());
    assert_eq!(next, json_page.body["next_cursor"].as_i64());
    assert!(next.is_some(), "more than 3 member events");
    let lines = ndjson(&res.text().await.unwrap());
    assert_eq!(lines, items(&json_page));
}

/// The lines of a streamed answer.
struct Lines {
    res: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    /// The next line, or None when the answer ended cleanly; fails after 10 s.
    async fn next(&mut self) -> Option<Value> {
        let read = async {
            loop {
                if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    return Some(serde_json::from_slice(&line[..i]).expect("one JSON value per line"));
                }
                match self.res.chunk().await.expect("the body reads without error") {
                    Some(chunk) => self.buf.extend_from_slice(&chunk),
                    None => {
                        assert!(self.buf.is_empty(), "a partial last line");
                        return None;
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read).await.expect("the next line within 10 s")
    }

    /// The next event line, skipping heartbeats.
    async fn next_event(&mut self) -> Value {
        loop {
            let line = self.next().await.expect("the feed goes on");
            if line.get("heartbeat").is_none() {
                return line;
            }
        }
    }
}

async fn follow(app: &TestApp, token: &str, query: &[(&str, &str)]) -> Lines {
    let mut q = query.to_vec();
    q.push(("follow", "true"));
    let res =
        app.http.get(app.url(FEED)).query(&q).header("accept", audit::NDJSON).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], audit::NDJSON);
    Lines { res, buf: Vec::new() }
}

async fn a_follow_delivers_an_event_appended_after_it_caught_up(app: TestApp) {
    let auditor = token_of(&app, AUDITOR).await;
    let (member, token) = quick_member(&app).await;
    let stream = format!("member-{member}");
    // Appended is not yet readable while an older transaction of the cluster is open
    // (other tests run beside): wait until the log shows both, then follow.
    eventually("the registration is readable", || async {
        let a = app.get(&format!("{FEED}?stream={stream}"), Some(&auditor), None).await;
        a.body["items"].as_array().is_some_and(|i| i.len() == 2)
    })
    .await;
    let mut lines = follow(&app, &auditor, &[("stream", &stream)]).await;
    // The catch-up (the registration), then a heartbeat: caught up.
    let mut caught_up = Vec::new();
    let heartbeat = loop {
        let line = lines.next().await.expect("the catch-up");
        match line.get("heartbeat") {
            Some(position) => break position.as_i64().expect("a position"),
            None => caught_up.push(line),
        }
    };
    let types: Vec<_> = caught_up.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["MemberRegistered", "PasswordSet"]);
    assert_eq!(caught_up[1]["data"]["hash"], json!(audit::REDACTED), "no credential leaves the store");
    assert!(heartbeat >= caught_up[1]["position"].as_i64().unwrap(), "{heartbeat}");

    // Appended after the feed caught up: only the live wait can deliver it.
    let a = app.post("/v1/me/organiser", Some(&token), json!({"organisation_name": "Clay Club"})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let live = lines.next_event().await;
    assert_eq!(live["type"], "OrganiserProfileCreated");
    assert_eq!(live["stream"], json!(stream));
    assert_eq!(live["position"], a.body["position"]);
    assert_eq!(live["metadata"]["actor"], json!(member));
}

async fn a_follow_ends_cleanly_when_the_server_shuts_down(app: TestApp) {
    let auditor = token_of(&app, AUDITOR).await;
    let mut lines = follow(&app, &auditor, &[("type", "NoSuchType")]).await;
    assert!(lines.next().await.expect("a heartbeat")["heartbeat"].is_i64());
    drop(app);
    assert_eq!(lines.next().await, None, "the answer ends, without an error, when the server drains");
}

async fn a_caught_up_feed_repeats_its_heartbeat_while_idle_and_ends_on_stop(app: TestApp) {
    use futures::StreamExt;
    let store = app.app_state.store.clone();
    let head = store.head().await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let options = audit::FeedOptions { follow: true, heartbeat: Some(Duration::from_millis(50)), stop: Some(stopped) };
    let params: HashMap<String, String> = [("type".to_owned(), "NoSuchType".to_owned())].into();
    let filter = audit::AuditFilter::parse(&params).unwrap();
    let mut feed = audit::feed(store, head, filter, options);
    let ten_seconds = Duration::from_secs(10);
    let mut last = head.position;
    for _ in 0..3 {
        let line = tokio::time::timeout(ten_seconds, feed.next()).await.expect("a line within 10 s");
        match line.expect("the feed goes on").unwrap() {
            audit::FeedLine::Heartbeat(position) => {
                assert!(position >= last, "{position} after {last}");
                last = position;
            }
            other => panic!("only heartbeats match nothing: {other:?}"),
        }
    }
    stop.send(true).unwrap();
    // At most one heartbeat was already under way.
    let mut rest = 0;
    while tokio::time::timeout(ten_seconds, feed.next()).await.expect("the feed ends within 10 s").is_some() {
        rest += 1;
        assert!(rest <= 1, "the feed stops");
    }
}

async fn events_tail_prints_the_feeds_lines_and_refuses_an_unknown_position(app: TestApp) {
    world(&app).await;
    let auditor = token_of(&app, AUDITOR).await;
    let store = app.app_state.store.clone();
    let params: HashMap<String, String> = [("type".to_owned(), "MemberRegistered,ActivityPublished".to_owned())].into();
    let filter = audit::AuditFilter::parse(&params).unwrap();

    let mut out = Vec::new();
    audit::tail(store.clone(), 0, filter.clone(), false, &mut out).await.expect("tail");
    let printed = ndjson(std::str::from_utf8(&out).unwrap());
    let served = all_pages(&app, &auditor, &[("type", "MemberRegistered,ActivityPublished")], 2).await;
    assert_eq!(printed, served, "the CLI prints the endpoint's events, in its shape");
    assert!(printed.iter().any(|e| e["type"] == "ActivityPublished"));

    let from = printed[1]["position"].as_i64().unwrap();
    let mut out = Vec::new();
    audit::tail(store.clone(), from, filter.clone(), false, &mut out).await.expect("tail --after");
    assert_eq!(ndjson(std::str::from_utf8(&out).unwrap()), printed[2..].to_vec());

    let refused = audit::tail(store, 999_999, filter, false, &mut Vec::new()).await.expect_err("no such position");
    assert!(refused.to_string().contains("after"), "{refused:#}");
}
