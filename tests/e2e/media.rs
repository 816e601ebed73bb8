//! Media: uploads streamed to the blob store (type checked by the bytes, ≤ 50 MiB,
//! ≤ 20 per activity, nothing left behind when refused or broken off) and served with
//! content type, ETag, Cache-Control and ranges, as visible as their activity.

use crate::harness::*;
use futures::StreamExt as _;
use serde_json::json;

/// A PNG's signature and header chunk, then filler: enough for the type check.
fn png(len: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    b.extend((0..len.saturating_sub(b.len())).map(|i| (i % 251) as u8));
    b
}

fn jpeg(len: usize) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1];
    b.extend((0..len.saturating_sub(b.len())).map(|i| (i % 13) as u8));
    b
}

async fn upload(app: &TestApp, activity: &str, token: &str, content_type: &str, bytes: Vec<u8>) -> Answer {
    app.send(
        app.http
            .post(app.url(&format!("/v1/activities/{activity}/media")))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(bytes),
    )
    .await
}

/// Sends only the head of a POST announcing `length` bytes, and reads the answer.
async fn announced_only(app: &TestApp, path: &str, token: &str, length: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.addr).await.expect("connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\ncontent-type: image/png\r\n\
         content-length: {length}\r\n\r\n",
        app.addr
    );
    s.write_all(head.as_bytes()).await.expect("head sent");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = s.read(&mut buf).await.expect("reads the answer");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let want = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= want || n == 0 {
                    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                    return (status, body.to_owned());
                }
            }
            assert!(n > 0, "the server closed the connection without an answer: {text}");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read).await.expect("an answer without the body")
}

/// Whether a request failed because the server stopped reading its body and closed.
fn cut_off_by_server(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(io.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset);
        }
        source = s.source();
    }
    false
}

/// Every file under the blob store's directory (staging files of uploads included).
fn stored_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() { walk(&p, out) } else { out.push(p) }
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.app_state.settings.data_dir.join("media"), &mut out);
    out
}

/// A published activity, once its publication (which follows approval) is in the log.
async fn published(app: &TestApp, org: &str) -> String {
    let id = published_activity(app, org, 10, false).await;
    eventually("the activity is published", || async {
        app.get(&format!("/v1/activities/{id}"), None, None).await.body["status"] == json!("published")
    })
    .await;
    id
}

/// The events of the activity's own stream (other streams move on their own: the
/// activity's chat room, timers).
async fn stream_events(app: &TestApp, id: &str) -> i64 {
    let stream = format!("activity-{id}");
    gather_commands::on_db_read!(&app.app_state.db, p =>
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE stream = $1").bind(stream).fetch_one(p).await)
    .expect("count the stream's events")
}

both_profiles!(
    an_organiser_uploads_a_photo_and_whoever_sees_the_activity_gets_it,
    uploads_are_checked_by_their_bytes_and_by_who_sends_them,
    an_oversize_or_broken_off_upload_leaves_nothing_behind,
    a_draft_activitys_media_is_private_and_an_activity_holds_at_most_20,
);

async fn an_organiser_uploads_a_photo_and_whoever_sees_the_activity_gets_it(app: TestApp) {
    let org = app.organiser("media-org@example.com").await;
    let id = published_activity(&app, &org, 10, false).await;
    let bytes = png(300_000);
    let a = upload(&app, &id, &org, "image/png", bytes.clone()).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let media = a.body["id"].as_str().unwrap().to_owned();
    let url = format!("/v1/media/{media}");
    assert_eq!(a.body["url"], json!(url));
    assert_eq!(a.header("location"), Some(url.as_str()));
    assert!(a.body["position"].as_i64().unwrap() > 0 && a.body["version"].as_i64().unwrap() > 0, "{:?}", a.body);
    // The activity lists it.
    let shown = app.get(&format!("/v1/activities/{id}"), None, Some(a.position())).await;
    let listed = shown.body["media"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{:?}", shown.body);
    assert_eq!(listed[0]["id"], json!(media));
    assert_eq!(listed[0]["content_type"], json!("image/png"));
    assert_eq!(listed[0]["bytes"], json!(300_000));
    // A guest gets the bytes, with their type and caching headers.
    let res = app.http.get(app.url(&url)).header("gather-min-position", a.position().to_string()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], "300000");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["cache-control"].to_str().unwrap().starts_with("public"), "{h:?}");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice(), "the same bytes back");
    // Ranges: a slice, a suffix, one outside the file.
    let res = app.http.get(app.url(&url)).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.headers()["content-range"], "bytes 10-19/300000");
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[10..20]);
    let res = app.http.get(app.url(&url)).header("range", "bytes=-5").send().await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[bytes.len() - 5..]);
    let res = app.http.get(app.url(&url)).header("range", "bytes=300000-").send().await.unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(res.headers()["content-range"], "bytes */300000");
    // A cached copy is current.
    let res = app.http.get(app.url(&url)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(res.status(), 304);
    assert!(res.bytes().await.unwrap().is_empty());
    // The same Idempotency-Key answers the first upload again; nothing is stored twice.
    let again = |bytes: Vec<u8>| {
        app.http
            .post(app.url(&format!("/v1/activities/{id}/media")))
            .bearer_auth(&org)
            .header("content-type", "image/jpeg")
            .header("idempotency-key", "photo-2")
            .body(bytes)
    };
    let first = app.send(again(jpeg(1000))).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let events = stream_events(&app, &id).await;
    let repeat = app.send(again(jpeg(1000))).await;
    assert_eq!(repeat.status, 201, "{:?}", repeat.body);
    assert_eq!(repeat.body["id"], first.body["id"]);
    assert_eq!(stream_events(&app, &id).await, events, "a repeat appends nothing");
    let other = app.send(again(jpeg(2000))).await;
    other.assert_problem(422, Some("idempotency_key_reused"));
    assert_eq!(stored_files(&app).len(), 2, "two uploads, two blobs: {:?}", stored_files(&app));
}

async fn uploads_are_checked_by_their_bytes_and_by_who_sends_them(app: TestApp) {
    let org = app.organiser("media-check@example.com").await;
    let id = published(&app, &org).await;
    let events = stream_events(&app, &id).await;
    // The header says PNG; the bytes are a JPEG.
    upload(&app, &id, &org, "image/png", jpeg(5000)).await.assert_problem(415, Some("unsupported_media_type"));
    // Not an image or video at all, whatever the header says.
    upload(&app, &id, &org, "image/svg+xml", b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script/></svg>".to_vec())
        .await
        .assert_problem(415, None);
    upload(&app, &id, &org, "image/png", b"#!/bin/sh\necho hi\n".to_vec()).await.assert_problem(415, None);
    // Not an image or video type.
    upload(&app, &id, &org, "application/octet-stream", png(100)).await.assert_problem(415, None);
    upload(&app, &id, &org, "application/json", b"{}".to_vec()).await.assert_problem(415, None);
    // A video header on a photo.
    upload(&app, &id, &org, "video/mp4", png(100)).await.assert_problem(415, None);
    // Empty.
    upload(&app, &id, &org, "image/png", vec![]).await.assert_problem(400, None);
    // Someone else's activity, a member without a role, a guest, no activity.
    let other = app.organiser("media-other@example.com").await;
    upload(&app, &id, &other, "image/png", png(100)).await.assert_problem(403, None);
    let (_, member) = quick_member(&app).await;
    upload(&app, &id, &member, "image/png", png(100)).await.assert_problem(403, None);
    let guest = app
        .send(
            app.http
                .post(app.url(&format!("/v1/activities/{id}/media")))
                .header("content-type", "image/png")
                .body(png(100)),
        )
        .await;
    guest.assert_problem(401, None);
    upload(&app, &uuid::Uuid::now_v7().to_string(), &org, "image/png", png(100)).await.assert_problem(404, None);
    assert_eq!(stream_events(&app, &id).await, events, "nothing was appended");
    assert!(stored_files(&app).is_empty(), "nothing was stored: {:?}", stored_files(&app));
    // An unknown media id.
    let a = app.get(&format!("/v1/media/{}", uuid::Uuid::now_v7()), None, None).await;
    a.assert_problem(404, None);
}

async fn an_oversize_or_broken_off_upload_leaves_nothing_behind(app: TestApp) {
    let org = app.organiser("media-big@example.com").await;
    let id = published(&app, &org).await;
    let events = stream_events(&app, &id).await;
    let limit = 50 * 1024 * 1024;
    // Announced too large: refused before a byte is read (no byte of the body is sent).
    let (status, body) = announced_only(&app, &format!("/v1/activities/{id}/media"), &org, limit + 1).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    // Streamed without a length, one byte too many: refused once the limit is passed.
    // The server may answer and close while the client is still writing the rest: a
    // body cut off by the server is the refusal too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        png(limit + 1).chunks(1024 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = app
        .http
        .post(app.url(&format!("/v1/activities/{id}/media")))
        .bearer_auth(&org)
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    match streamed {
        Ok(res) => assert_eq!(res.status().as_u16(), 413),
        Err(e) => assert!(cut_off_by_server(&e), "{e:?}"),
    }
    // Broken off half-way: the client's stream fails after 6 MiB (past the first part).
    let mut chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        png(6 * 1024 * 1024).chunks(1024 * 1024).map(|c| Ok(c.to_vec())).collect();
    chunks.push(Err(std::io::Error::other("the client went away")));
    let broken = app
        .http
        .post(app.url(&format!("/v1/activities/{id}/media")))
        .bearer_auth(&org)
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    if let Ok(res) = broken {
        assert!(res.status().is_client_error(), "a broken-off upload is not stored: {}", res.status());
    }
    // Nothing was attached, and no blob or staging file is left.
    eventually("the aborted uploads are cleaned up", || async { stored_files(&app).is_empty() }).await;
    assert_eq!(stream_events(&app, &id).await, events);
    let shown = app.get(&format!("/v1/activities/{id}"), None, None).await;
    assert_eq!(shown.body["media"], json!([]), "{:?}", shown.body);
    // A file of exactly the limit is fine.
    let a = upload(&app, &id, &org, "image/png", png(limit)).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
}

async fn a_draft_activitys_media_is_private_and_an_activity_holds_at_most_20(app: TestApp) {
    let org = app.organiser("media-draft@example.com").await;
    let a = app.post("/v1/activities", Some(&org), activity_body()).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let first = upload(&app, &id, &org, "image/jpeg", jpeg(2000)).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let url = first.body["url"].as_str().unwrap().to_owned();
    let guest = app.get(&url, None, Some(first.position())).await;
    guest.assert_problem(404, None);
    let (_, member) = quick_member(&app).await;
    app.get(&url, Some(&member), None).await.assert_problem(404, None);
    let res = app.http.get(app.url(&url)).bearer_auth(&org).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["cache-control"].to_str().unwrap().starts_with("private"), "{:?}", res.headers());
    for n in 1..20 {
        let a = upload(&app, &id, &org, "image/jpeg", jpeg(100 + n)).await;
        assert_eq!(a.status, 201, "upload {n}: {:?}", a.body);
    }
    let events = stream_events(&app, &id).await;
    upload(&app, &id, &org, "image/jpeg", jpeg(100)).await.assert_problem(409, Some("too_many_media"));
    assert_eq!(stream_events(&app, &id).await, events);
    assert_eq!(stored_files(&app).len(), 20, "the 21st was never stored");
}

fn one_second_requests(s: &mut gather_api::Settings) {
    s.request_timeout = std::time::Duration::from_secs(1);
}

with_profiles!(a_slow_upload_outlives_the_request_timeout, super::one_second_requests);

/// A client on a slow link sends its file over longer than `GATHER_REQUEST_TIMEOUT_SECS`
/// (1 s here): an upload gets at least 10 minutes, so it is stored, not cut off.
async fn a_slow_upload_outlives_the_request_timeout(app: TestApp) {
    let org = app.organiser("media-slow@example.com").await;
    let id = published_activity(&app, &org, 10, false).await;
    let bytes = png(3 * 64 * 1024);
    let parts: Vec<Vec<u8>> = bytes.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    // The client's link: a chunk every 600 ms (the pace is the input, not a wait).
    let slow = futures::stream::iter(parts).then(|part| async move {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        Ok::<_, std::io::Error>(part)
    });
    let started = std::time::Instant::now();
    let a = app
        .send(
            app.http
                .post(app.url(&format!("/v1/activities/{id}/media")))
                .bearer_auth(&org)
                .header("content-type", "image/png")
                .body(reqwest::Body::wrap_stream(slow)),
        )
        .await;
    assert!(started.elapsed() > std::time::Duration::from_secs(1), "the upload took longer than the timeout");
    assert_eq!(a.status, 201, "{:?}", a.body);
    // Any other request is still bounded by the timeout (see limits.rs's tests).
}
