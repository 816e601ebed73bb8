//! The audit feed: `GET /v1/audit/events` (auditor) and what `gather events tail`
//! prints. Events come in global order, each as [`event_json`] shapes it.
//!
//! Payloads are shown as stored, but credentials (a password hash) are [`REDACTED`].
//!
//! Paging: `after` is a global position (0 = from the start) and `next_cursor` the
//! position to pass as the next `after`, `null` once a page reached the end of the
//! readable log. `category` and `type` narrow the store's own read; `stream`, `actor`,
//! `from` and `to` are checked while paging, so one request examines at most
//! [`MAX_SCAN`] events and may answer fewer items than `limit` (even none) with a
//! `next_cursor` to go on from: a rare filter never makes an unbounded request.
//!
//! `Accept: application/x-ndjson` answers the same page one event per line (the next
//! cursor in `Gather-Next-Cursor`). With `follow=true` the answer never ends on its own:
//! once caught up it writes `{"heartbeat": <position>}` (the position examined up to,
//! itself a valid `after` to resume from), waits for new events on the store's wake
//! signal (polling each second as a fallback, for appends of other processes) and
//! repeats the heartbeat every [`HEARTBEAT`] while idle. It ends cleanly when the server
//! drains ([`Draining`]) or the client goes away; a store failure aborts the response.

use crate::auth::Authed;
use crate::error::ApiError;
use crate::http::{ensure_active, position_headers, read_response};
use crate::state::AppState;
use anyhow::Context as _;
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use gather_commands::store::{Checkpoint, EventStore, LogFilter, RecordedEvent, StoreError, category_of};
use gather_domain::Role;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// The largest `limit`.
pub const MAX_LIMIT: i64 = 1000;
/// The most events one page request examines (filters checked while paging).
pub const MAX_SCAN: i64 = 10_000;
/// How often an idle follow writes a heartbeat line.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The media type of one JSON value per line.
pub const NDJSON: &str = "application/x-ndjson";
/// `Gather-Next-Cursor`: the next `after` of an ndjson page (absent at the end of the log).
pub const GATHER_NEXT_CURSOR: HeaderName = HeaderName::from_static("gather-next-cursor");

/// How long a caught-up feed waits for the wake signal before reading anyway.
const POLL: Duration = Duration::from_secs(1);
/// Events read from the store at a time.
const READ_PAGE: i64 = 1000;
/// The most categories or types one filter names.
const MAX_LIST: usize = 20;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Flips to true when the server stops taking requests: long-lived answers (a follow)
/// end then, since a graceful shutdown waits for every open answer. Set as a request
/// extension by `App::run_until`; without it (handler tests) a follow ends with its client.
#[derive(Debug, Clone)]
pub struct Draining(pub watch::Receiver<bool>);

/// Which events of the log an audit read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Categories and event types: narrow the store's read.
    pub log: LogFilter,
    /// Only this stream.
    pub stream: Option<String>,
    /// Only events appended by this actor.
    pub actor: Option<Uuid>,
    /// Only events recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events recorded at or before this time.
    pub to: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// Reads `stream`, `category`, `type` (comma-separated lists), `actor`, `from` and
    /// `to`; a bad value is a 400 naming the parameter.
    pub fn parse(params: &HashMap<String, String>) -> Result<AuditFilter, ApiError> {
        let stream = match value(params, "stream") {
            None => None,
            Some(s) => Some(checked_name(s, "stream", 200)?.to_owned()),
        };
        if let Some(s) = &stream
            && (category_of(s).is_empty() || category_of(s) == s.as_str())
        {
            return Err(ApiError::field("stream", "must be {category}-{id}"));
        }
        let categories = list(params, "category")?;
        if categories.iter().any(|c| c.contains('-')) {
            return Err(ApiError::field("category", "a category has no dash"));
        }
        let event_types = list(params, "type")?;
        let actor = match value(params, "actor") {
            None => None,
            Some(s) => Some(Uuid::parse_str(s).map_err(|_| ApiError::field("actor", "must be a member id (UUID)"))?),
        };
        let (from, to) = (time(params, "from")?, time(params, "to")?);
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(ApiError::field("to", "must not be before from"));
        }
        let mut log = LogFilter { categories, event_types };
        // A stream lives in one category: let the store skip the others.
        if let Some(s) = &stream
            && log.categories.is_empty()
        {
            log.categories.push(category_of(s).to_owned());
        }
        Ok(AuditFilter { log, stream, actor, from, to })
    }

    /// Whether some events the store returns may not match (checked while paging).
    pub fn checks_while_paging(&self) -> bool {
        self.stream.is_some() || self.actor.is_some() || self.from.is_some() || self.to.is_some()
    }

    /// Whether `event` passes the checks made while paging (the store applied the rest).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.stream.as_ref().is_none_or(|s| event.stream == *s)
            && self.actor.is_none_or(|a| event.actor == Some(a))
            && self.from.is_none_or(|f| event.recorded_at >= f)
            && self.to.is_none_or(|t| event.recorded_at <= t)
    }
}

fn value<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn checked_name<'a>(s: &'a str, name: &str, max: usize) -> Result<&'a str, ApiError> {
    if s.chars().count() > max {
        Err(ApiError::field(name, format!("at most {max} characters")))
    } else if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Err(ApiError::field(name, "must not contain spaces or control characters"))
    } else {
        Ok(s)
    }
}

/// A comma-separated list of names.
fn list(params: &HashMap<String, String>, name: &str) -> Result<Vec<String>, ApiError> {
    let Some(s) = value(params, name) else { return Ok(vec![]) };
    let names: Vec<String> =
        s.split(',').map(|n| checked_name(n.trim(), name, 100).map(str::to_owned)).collect::<Result<_, _>>()?;
    if names.iter().any(String::is_empty) {
        return Err(ApiError::field(name, "must be a comma-separated list of names"));
    }
    if names.len() > MAX_LIST {
        return Err(ApiError::field(name, format!("at most {MAX_LIST} names")));
    }
    Ok(names)
}

fn time(params: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    value(params, name)
        .map(|s| s.parse().map_err(|_| ApiError::field(name, "must be an RFC 3339 time, e.g. 2030-05-01T14:00:00Z")))
        .transpose()
}

fn integer(params: &HashMap<String, String>, name: &str, what: &str) -> Result<Option<i64>, ApiError> {
    value(params, name).map(|s| s.parse().map_err(|_| ApiError::field(name, format!("must be {what}")))).transpose()
}

/// Where a read after global position `after` starts (0 = the start of the log); a
/// negative position, or one that names no readable event, is a 400 about `after`.
pub async fn checkpoint_after(store: &dyn EventStore, after: i64) -> Result<Checkpoint, ApiError> {
    if after < 0 {
        return Err(ApiError::field("after", "must be a non-negative integer (a global position)"));
    }
    if after == 0 {
        return Ok(Checkpoint::START);
    }
    // The log is ordered by (commit_id, position): the position alone is not a place in it.
    store
        .checkpoint_of(after)
        .await?
        .ok_or_else(|| ApiError::field("after", format!("{after} is not the position of a readable event")))
}

/// What the feed shows instead of a credential.
pub const REDACTED: &str = "[redacted]";

/// Credentials in event payloads, as (category, event type, field): the feed never shows
/// them (an auditor sees that a password was set, by whom and when, not its hash).
const CREDENTIALS: &[(&str, &str, &str)] = &[("member", "PasswordSet", "hash")];

/// An event as the audit feed shows it: the payload as stored (credentials
/// [`REDACTED`]), with its metadata.
pub fn event_json(e: &RecordedEvent) -> Value {
    let mut data = e.data.clone();
    for (category, event_type, field) in CREDENTIALS {
        if e.event_type == *event_type
            && e.category() == *category
            && let Some(v) = data.get_mut(*field)
        {
            *v = json!(REDACTED);
        }
    }
    json!({
        "position": e.position,
        "stream": e.stream,
        "version": e.version,
        "type": e.event_type,
        "data": data,
        "metadata": {
            "event_id": e.event_id,
            "command_id": e.command_id,
            "correlation_id": e.correlation_id,
            "causation_id": e.causation_id,
            "actor": e.actor,
            "recorded_at": e.recorded_at,
            "schema_version": e.schema_version,
        },
    })
}

/// One page of the audit feed.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    /// The matching events, in global order.
    pub items: Vec<RecordedEvent>,
    /// The position the log was examined up to (the `after` given when nothing was read).
    pub examined_to: i64,
    /// The `after` of the next page; None when this page reached the end of the log.
    pub next_cursor: Option<i64>,
}

/// Reads up to `limit` matching events after `after`, examining at most [`MAX_SCAN`].
pub async fn read_page(
    store: &dyn EventStore,
    after: Checkpoint,
    filter: &AuditFilter,
    limit: i64,
) -> Result<AuditPage, StoreError> {
    let mut at = after;
    let mut items = Vec::new();
    let mut examined = 0;
    loop {
        let mut want = READ_PAGE.min(MAX_SCAN - examined);
        if !filter.checks_while_paging() {
            // Every event read is an item: read no more than the page needs.
            want = want.min(limit - items.len() as i64);
        }
        let page = store.read_log_page(at, &filter.log, want).await?;
        let short = (page.len() as i64) < want;
        for e in page {
            examined += 1;
            at = e.checkpoint();
            if filter.matches(&e) {
                items.push(e);
                if items.len() as i64 == limit {
                    // The rest of this read comes again on the next page.
                    return Ok(AuditPage { items, examined_to: at.position, next_cursor: Some(at.position) });
                }
            }
        }
        if short {
            return Ok(AuditPage { items, examined_to: at.position, next_cursor: None });
        }
        if examined >= MAX_SCAN {
            return Ok(AuditPage { items, examined_to: at.position, next_cursor: Some(at.position) });
        }
    }
}

/// A line of the ndjson feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedLine {
    /// A matching event ([`event_json`]).
    Event(RecordedEvent),
    /// `{"heartbeat": <position>}`: caught up; the log was examined up to this position.
    Heartbeat(i64),
}

impl FeedLine {
    /// The line's JSON.
    pub fn to_json(&self) -> Value {
        match self {
            FeedLine::Event(e) => event_json(e),
            FeedLine::Heartbeat(position) => json!({"heartbeat": position}),
        }
    }
}

/// How a [`feed`] behaves once it has caught up.
#[derive(Debug, Clone, Default)]
pub struct FeedOptions {
    /// Wait for new events (true) or end at the end of the log (false).
    pub follow: bool,
    /// Write a heartbeat when caught up and then at this interval while idle.
    pub heartbeat: Option<Duration>,
    /// Ends the feed when it flips to true (or its sender is gone).
    pub stop: Option<watch::Receiver<bool>>,
}

/// The matching events after `after`, in global order, as lines; see [`FeedOptions`].
/// It ends after a store error, which is its last item.
pub fn feed(
    store: Arc<dyn EventStore>,
    after: Checkpoint,
    filter: AuditFilter,
    options: FeedOptions,
) -> BoxStream<'static, Result<FeedLine, StoreError>> {
    let wake = store.wake();
    let state = Feed {
        store,
        at: after,
        filter,
        options,
        wake,
        pending: VecDeque::new(),
        announced: false,
        last_line: Instant::now(),
        done: false,
    };
    stream::unfold(state, |mut feed| async move { feed.next().await.map(|line| (line, feed)) }).boxed()
}

struct Feed {
    store: Arc<dyn EventStore>,
    at: Checkpoint,
    filter: AuditFilter,
    options: FeedOptions,
    wake: watch::Receiver<u64>,
    pending: VecDeque<FeedLine>,
    /// Whether the first heartbeat (caught up) was written.
    announced: bool,
    last_line: Instant,
    done: bool,
}

impl Feed {
    async fn next(&mut self) -> Option<Result<FeedLine, StoreError>> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                self.last_line = Instant::now();
                return Some(Ok(line));
            }
            if self.done || self.options.stop.as_ref().is_some_and(|s| *s.borrow()) {
                return None;
            }
            // Mark the signal seen before reading, so an append after the read wakes us.
            self.wake.borrow_and_update();
            let page = match self.store.read_log_page(self.at, &self.filter.log, READ_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let caught_up = (page.len() as i64) < READ_PAGE;
            for e in page {
                self.at = e.checkpoint();
                if self.filter.matches(&e) {
                    self.pending.push_back(FeedLine::Event(e));
                }
            }
            if !self.pending.is_empty() {
                continue;
            }
            let heartbeat_due = self.options.heartbeat.map(|h| self.last_line + h);
            if !caught_up {
                // A long catch-up through a rare filter still shows signs of life.
                if heartbeat_due.is_some_and(|due| due <= Instant::now()) {
                    self.pending.push_back(FeedLine::Heartbeat(self.at.position));
                }
                continue;
            }
            if !self.options.follow {
                return None;
            }
            if let Some(due) = heartbeat_due
                && (!self.announced || due <= Instant::now())
            {
                self.announced = true;
                self.pending.push_back(FeedLine::Heartbeat(self.at.position));
                continue;
            }
            let until = heartbeat_due.map_or(Instant::now() + POLL, |due| due.min(Instant::now() + POLL));
            tokio::select! {
                woke = self.wake.changed() => {
                    if woke.is_err() {
                        // The store is gone: fall back to polling.
                        tokio::time::sleep_until(until).await;
                    }
                }
                _ = tokio::time::sleep_until(until) => {}
                _ = stopped(&mut self.options.stop) => return None,
            }
        }
    }
}

/// Resolves when `stop` flips to true or its sender is gone; never without one.
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            let _ = rx.wait_for(|s| *s).await;
        }
        None => std::future::pending().await,
    }
}

/// Writes the lines as ndjson.
fn write_lines<'a>(out: &mut impl Write, lines: impl IntoIterator<Item = &'a FeedLine>) -> std::io::Result<()> {
    for line in lines {
        serde_json::to_writer(&mut *out, &line.to_json())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// `gather events tail`: writes the matching events after `after` to `out` as ndjson
/// (no heartbeats), flushing after each batch; with `follow`, waits for new events
/// until the caller drops the future (Ctrl-C). A reader that went away (a closed pipe)
/// ends it quietly.
pub async fn tail(
    store: Arc<dyn EventStore>,
    after: i64,
    filter: AuditFilter,
    follow: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let start = checkpoint_after(store.as_ref(), after).await?;
    let mut lines = feed(store, start, filter, FeedOptions { follow, heartbeat: None, stop: None }).ready_chunks(256);
    while let Some(batch) = lines.next().await {
        let batch = batch.into_iter().collect::<Result<Vec<_>, _>>().context("could not read the event log")?;
        match write_lines(out, &batch).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("could not write to stdout"),
        }
    }
    Ok(())
}

/// Whether the client asked for ndjson.
fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(NDJSON)))
}

/// `GET /v1/audit/events` (auditor).
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", params(crate::openapi::AuditParams), responses((status = 200, description = "A page of events, or with `Accept: application/x-ndjson` one event per line", content((crate::openapi::AuditPage = "application/json"), (crate::openapi::LoggedEvent = "application/x-ndjson")))), security(("bearer" = [])))]
async fn events(
    State(state): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    draining: Option<Extension<Draining>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    auth.require(Role::Auditor)?;
    ensure_active(&state, &auth.0).await?;
    let Query(params) = query.map_err(|e| ApiError::BadRequest {
        detail: format!("malformed query string: {}", e.body_text()),
        errors: vec![],
    })?;
    let filter = AuditFilter::parse(&params)?;
    let after = integer(&params, "after", "a non-negative integer (a global position)")?.unwrap_or(0);
    let limit = match integer(&params, "limit", "an integer from 1 to 1000")? {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return Err(ApiError::field("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))),
    };
    let follow = match value(&params, "follow") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("follow", "must be true or false")),
    };
    let ndjson = wants_ndjson(&headers);
    if follow && !ndjson {
        return Err(ApiError::field("follow", "needs Accept: application/x-ndjson"));
    }
    // The feed reads the log itself: `Gather-Min-Position` waits until it is readable.
    crate::http::consistent_read(&state, &headers, &[]).await?;
    let start = checkpoint_after(state.store.as_ref(), after).await?;
    if follow {
        let options = FeedOptions { follow: true, heartbeat: Some(HEARTBEAT), stop: draining.map(|d| d.0.0) };
        let body = feed(state.store.clone(), start, filter, options).ready_chunks(256).map(|batch| {
            let mut buf = Vec::new();
            for line in batch {
                match line {
                    Ok(line) => write_lines(&mut buf, [&line])?,
                    Err(e) => {
                        let chain = gather_projections::runtime::error_chain(&e);
                        tracing::error!(error = %chain, "the audit feed stopped");
                        return Err(std::io::Error::other("the event log could not be read"));
                    }
                }
            }
            Ok(Bytes::from(buf))
        });
        let mut res = Response::new(Body::from_stream(body));
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(res);
    }
    let page = read_page(state.store.as_ref(), start, &filter, limit).await?;
    let position = page.examined_to;
    if !ndjson {
        let items: Vec<Value> = page.items.iter().map(event_json).collect();
        return Ok(read_response(json!({"items": items, "next_cursor": page.next_cursor}), position, None));
    }
    let mut buf = Vec::new();
    let lines: Vec<FeedLine> = page.items.into_iter().map(FeedLine::Event).collect();
    write_lines(&mut buf, &lines).map_err(ApiError::internal)?;
    let mut res = (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON))], buf).into_response();
    position_headers(res.headers_mut(), position, None);
    if let Some(next) = page.next_cursor {
        res.headers_mut().insert(GATHER_NEXT_CURSOR, HeaderValue::from(next));
    }
    Ok(res)
}
