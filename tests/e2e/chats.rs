//! Group chats through HTTP: starting, membership, messages, and the refusals of
//! guests, non-members, non-senders and suspended members (which append nothing).

use crate::harness::{Answer, TestApp};
use crate::members::{assert_command, assert_not_found, call, suspend};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

both_profiles!(
    starting_a_chat_includes_the_creator,
    members_add_others_and_leave,
    messages_are_posted_edited_and_deleted_by_their_sender,
    suspended_members_cannot_chat,
);

/// The event types of a stream, in order (the effect of commands that have no read yet).
async fn stream_types(app: &TestApp, stream: &str) -> Vec<String> {
    gather_commands::on_db_read!(&app.app_state.db, p =>
        sqlx::query_scalar::<_, String>("SELECT event_type FROM events WHERE stream = $1 ORDER BY version")
            .bind(stream).fetch_all(p).await)
    .expect("read stream")
}

async fn start(app: &TestApp, token: &str, member_ids: &[&str]) -> String {
    let a = app.post("/v1/chats", Some(token), json!({"member_ids": member_ids})).await;
    assert_command(&a, 201)
}

async fn post_message(app: &TestApp, token: Option<&str>, chat: &str, text: &str) -> Answer {
    app.post(&format!("/v1/chats/{chat}/messages"), token, json!({"text": text})).await
}

async fn starting_a_chat_includes_the_creator(app: TestApp) {
    let (ada_id, ada) = app.register("ada@example.com").await;
    let (bob_id, bob) = app.register("bob@example.com").await;
    let (_, eve) = app.register("eve@example.com").await;

    let before = app.event_count().await;
    let bad = [
        (json!({"title": "Parents"}), 400, "member_ids"),
        (json!({"member_ids": ["not-a-uuid"]}), 400, "member_ids[0]"),
        (json!({"title": "", "member_ids": [bob_id]}), 400, "title"),
    ];
    for (body, status, field) in bad {
        let a = app.post("/v1/chats", Some(&ada), body.clone()).await;
        a.assert_problem(status, Some("validation_failed"));
        assert_eq!(a.body["errors"][0]["field"], field, "{body}: {:?}", a.body);
    }
    // Alone (the creator listing only themselves) is too small; an unknown member cannot join.
    app.post("/v1/chats", Some(&ada), json!({"member_ids": [ada_id]})).await.assert_problem(409, Some("chat_size"));
    let a = app.post("/v1/chats", Some(&ada), json!({"member_ids": [Uuid::now_v7()]})).await;
    a.assert_problem(422, Some("unknown_member"));
    app.post("/v1/chats", None, json!({"member_ids": [bob_id]})).await.assert_problem(401, None);
    assert_eq!(app.event_count().await, before, "refused chats append nothing");

    let a =
        app.post("/v1/chats", Some(&ada), json!({"title": "Pottery parents", "member_ids": [bob_id, bob_id]})).await;
    let chat = assert_command(&a, 201);
    assert_eq!(a.header("location"), Some(format!("/v1/chats/{chat}").as_str()));
    assert_eq!(a.body["version"], json!(0));
    assert_eq!(stream_types(&app, &format!("chat-{chat}")).await, ["ChatStarted"]);
    // Both the creator and the listed member are in; nobody else is.
    assert_command(&post_message(&app, Some(&ada), &chat, "hello").await, 201);
    assert_command(&post_message(&app, Some(&bob), &chat, "hi!").await, 201);
    let count = app.event_count().await;
    post_message(&app, Some(&eve), &chat, "me too?").await.assert_problem(403, Some("not_a_chat_member"));
    assert_eq!(app.event_count().await, count);

    // Without a title.
    let untitled = start(&app, &bob, &[&ada_id]).await;
    assert_ne!(untitled, chat);
}

async fn members_add_others_and_leave(app: TestApp) {
    let (_, ada) = app.register("ada@example.com").await;
    let (bob_id, bob) = app.register("bob@example.com").await;
    let (cid_id, cid) = app.register("cid@example.com").await;
    let (dan_id, dan) = app.register("dan@example.com").await;
    let chat = start(&app, &ada, &[&bob_id]).await;
    let members = format!("/v1/chats/{chat}/members");
    let leave = format!("/v1/chats/{chat}/members/me");

    let before = app.event_count().await;
    app.post(&members, None, json!({"member_id": cid_id})).await.assert_problem(401, None);
    app.post(&members, Some(&dan), json!({"member_id": dan_id})).await.assert_problem(403, Some("not_a_chat_member"));
    let a = app.post(&members, Some(&ada), json!({})).await;
    a.assert_problem(400, Some("validation_failed"));
    assert_eq!(a.body["errors"][0]["field"], "member_id", "{:?}", a.body);
    let a = app.post(&members, Some(&ada), json!({"member_id": Uuid::now_v7()})).await;
    a.assert_problem(422, Some("unknown_member"));
    let a = app.post(&format!("/v1/chats/{}/members", Uuid::now_v7()), Some(&ada), json!({"member_id": cid_id})).await;
    assert_not_found(&a, "chat");
    call(&app, Method::DELETE, &leave, None, None).await.assert_problem(401, None);
    call(&app, Method::DELETE, &leave, Some(&cid), None).await.assert_problem(403, Some("not_a_chat_member"));
    let a = call(&app, Method::DELETE, &format!("/v1/chats/{}/members/me", Uuid::now_v7()), Some(&cid), None).await;
    assert_not_found(&a, "chat");
    post_message(&app, Some(&cid), &chat, "let me in").await.assert_problem(403, Some("not_a_chat_member"));
    assert_eq!(app.event_count().await, before, "refused membership changes append nothing");

    // Any member (not only the creator) adds others.
    let a = app.post(&members, Some(&bob), json!({"member_id": cid_id})).await;
    assert_eq!(assert_command(&a, 202), chat);
    assert_eq!(a.body["version"], json!(1));
    assert_command(&post_message(&app, Some(&cid), &chat, "thanks!").await, 201);
    // Adding a member twice changes nothing.
    let count = app.event_count().await;
    assert_command(&app.post(&members, Some(&ada), json!({"member_id": cid_id})).await, 202);
    assert_eq!(app.event_count().await, count);

    let a = call(&app, Method::DELETE, &leave, Some(&cid), None).await;
    assert_eq!(assert_command(&a, 202), chat);
    assert_eq!(
        stream_types(&app, &format!("chat-{chat}")).await,
        ["ChatStarted", "ChatMemberAdded", "MessagePosted", "ChatMemberLeft"]
    );
    let count = app.event_count().await;
    post_message(&app, Some(&cid), &chat, "still here?").await.assert_problem(403, Some("not_a_chat_member"));
    call(&app, Method::DELETE, &leave, Some(&cid), None).await.assert_problem(403, Some("not_a_chat_member"));
    assert_eq!(app.event_count().await, count);
}

async fn messages_are_posted_edited_and_deleted_by_their_sender(app: TestApp) {
    let (_, ada) = app.register("ada@example.com").await;
    let (bob_id, bob) = app.register("bob@example.com").await;
    let (_, eve) = app.register("eve@example.com").await;
    let chat = start(&app, &ada, &[&bob_id]).await;

    let a = post_message(&app, Some(&ada), &chat, "  Who brings the clay?  ").await;
    let message = assert_command(&a, 201);
    assert_ne!(message, chat, "the answer names the message");
    assert_eq!(a.header("location"), Some(format!("/v1/chats/{chat}/messages/{message}").as_str()));
    assert_eq!(a.body["version"], json!(1));
    let path = format!("/v1/chats/{chat}/messages/{message}");

    let before = app.event_count().await;
    // guests
    post_message(&app, None, &chat, "hi").await.assert_problem(401, None);
    call(&app, Method::PATCH, &path, None, Some(json!({"text": "x"}))).await.assert_problem(401, None);
    call(&app, Method::DELETE, &path, None, None).await.assert_problem(401, None);
    // bad input
    for (body, field) in [(json!({}), "text"), (json!({"text": "   "}), "text"), (json!({"text": 5}), "text")] {
        let a = app.post(&format!("/v1/chats/{chat}/messages"), Some(&ada), body.clone()).await;
        a.assert_problem(400, Some("validation_failed"));
        assert_eq!(a.body["errors"][0]["field"], field, "{body}: {:?}", a.body);
        let a = call(&app, Method::PATCH, &path, Some(&ada), Some(body.clone())).await;
        a.assert_problem(400, Some("validation_failed"));
        assert_eq!(a.body["errors"][0]["field"], field, "{body}: {:?}", a.body);
    }
    let a = post_message(&app, Some(&ada), &chat, &"x".repeat(4001)).await;
    a.assert_problem(400, None);
    // non-members, non-senders, unknown chats and messages
    post_message(&app, Some(&eve), &chat, "hi").await.assert_problem(403, Some("not_a_chat_member"));
    let a = call(&app, Method::PATCH, &path, Some(&bob), Some(json!({"text": "Bob does"}))).await;
    a.assert_problem(403, Some("not_the_sender"));
    call(&app, Method::DELETE, &path, Some(&bob), None).await.assert_problem(403, Some("not_the_sender"));
    call(&app, Method::DELETE, &path, Some(&eve), None).await.assert_problem(403, Some("not_the_sender"));
    assert_not_found(&post_message(&app, Some(&ada), &Uuid::now_v7().to_string(), "hi").await, "chat");
    let unknown = format!("/v1/chats/{chat}/messages/{}", Uuid::now_v7());
    let a = call(&app, Method::PATCH, &unknown, Some(&ada), Some(json!({"text": "x"}))).await;
    assert_not_found(&a, "message");
    assert_not_found(&call(&app, Method::DELETE, &unknown, Some(&ada), None).await, "message");
    let a =
        call(&app, Method::PATCH, &format!("/v1/chats/{chat}/messages/nope"), Some(&ada), Some(json!({"text": "x"})))
            .await;
    a.assert_problem(404, None);
    assert_eq!(app.event_count().await, before, "refused messages append nothing");

    let a = call(&app, Method::PATCH, &path, Some(&ada), Some(json!({"text": "I bring the clay"}))).await;
    assert_eq!(assert_command(&a, 202), message);
    assert_eq!(a.body["version"], json!(2));
    let a = call(&app, Method::DELETE, &path, Some(&ada), None).await;
    assert_eq!(assert_command(&a, 202), message);
    assert_eq!(a.body["version"], json!(3));
    assert_eq!(
        stream_types(&app, &format!("chat-{chat}")).await,
        ["ChatStarted", "MessagePosted", "MessageEdited", "MessageDeleted"]
    );
    // A deleted message cannot be edited; deleting it again changes nothing.
    let count = app.event_count().await;
    let a = call(&app, Method::PATCH, &path, Some(&ada), Some(json!({"text": "again"}))).await;
    a.assert_problem(409, Some("message_deleted"));
    assert_command(&call(&app, Method::DELETE, &path, Some(&ada), None).await, 202);
    assert_eq!(app.event_count().await, count);
}

async fn suspended_members_cannot_chat(app: TestApp) {
    let (ada_id, ada) = app.register("ada@example.com").await;
    let (bob_id, bob) = app.register("bob@example.com").await;
    let (cid_id, _) = app.register("cid@example.com").await;
    let chat = start(&app, &ada, &[&bob_id]).await;
    let message = assert_command(&post_message(&app, Some(&bob), &chat, "before").await, 201);
    suspend(&app, &bob_id).await;

    let count = app.event_count().await;
    let message_path = format!("/v1/chats/{chat}/messages/{message}");
    let refused = [
        post_message(&app, Some(&bob), &chat, "after").await,
        call(&app, Method::PATCH, &message_path, Some(&bob), Some(json!({"text": "edited"}))).await,
        call(&app, Method::DELETE, &message_path, Some(&bob), None).await,
        app.post(&format!("/v1/chats/{chat}/members"), Some(&bob), json!({"member_id": cid_id})).await,
        call(&app, Method::DELETE, &format!("/v1/chats/{chat}/members/me"), Some(&bob), None).await,
        app.post("/v1/chats", Some(&bob), json!({"member_ids": [ada_id]})).await,
    ];
    for a in refused {
        a.assert_problem(403, Some("member_suspended"));
    }
    assert_eq!(app.event_count().await, count, "a suspended member appends nothing");
    // The others carry on.
    assert_command(&post_message(&app, Some(&ada), &chat, "still here").await, 201);
}
