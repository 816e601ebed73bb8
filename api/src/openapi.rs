//! The OpenAPI 3.1 document, generated from the code: every route is registered through
//! `utoipa_axum::routes!` from its handler's `#[utoipa::path]`, so a route cannot exist
//! without its entry (and `tests/e2e/openapi.rs` checks that every entry answers). This
//! module holds what the handlers share: the document's frame, the answer shapes the
//! handlers build as JSON, the query parameters they parse by hand, and a modifier that
//! adds the conventions of API.md (headers, problem answers) to every operation.
//! Served at `GET /openapi.json`, browsable at `GET /docs` (Swagger UI, vendored).

use crate::error::FieldError;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use std::sync::Arc;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use uuid::Uuid;

/// The document's frame; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gather",
        description = "The HTTP contract of Gather, an event-sourced backend for an events-and-activities \
platform. Commands answer 201/202 with `{id, position, version}`, `ETag` and `Gather-Position`; \
queries answer with `Gather-Position` and wait for `Gather-Min-Position` (≤ 5 s, else 503). \
Errors are RFC 9457 `application/problem+json`. Lists are keyset-paged (`limit` 1–100, opaque `cursor`).",
        license(name = "MIT", identifier = "MIT"),
    ),
    modifiers(&Conventions),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "auth", description = "Registration and login"),
        (name = "members", description = "The member's own profile and lists"),
        (name = "activities", description = "Activities: create, moderate, publish, search, read"),
        (name = "media", description = "Photos and videos of activities"),
        (name = "series", description = "Recurring activities"),
        (name = "bookings", description = "Bookings, invitations and payments"),
        (name = "chats", description = "Group chats and activity rooms"),
        (name = "real-time", description = "WebSocket and Server-Sent Events"),
        (name = "audit", description = "The event log for auditors"),
        (name = "operations", description = "Health, metrics, projections"),
    )
)]
pub struct ApiDoc;

/// The rendered document, built once per process.
#[derive(Clone)]
pub struct Document(pub Arc<String>);

impl Document {
    /// Renders `doc` as pretty JSON.
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Document {
        Document(Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".into())))
    }
}

/// The problem statuses every operation may answer, with what they mean there.
const COMMON_PROBLEMS: &[(&str, &str)] = &[
    ("400", "Malformed or invalid input: per-field `errors`"),
    ("401", "A bad, expired or forgotten member's token (or none where one is needed)"),
    ("403", "Role or ownership"),
    ("404", "No such resource (or not visible to the caller)"),
    ("429", "Rate limited: see `Retry-After`"),
    ("503", "Not ready, shutting down, or `Gather-Min-Position` not reached in 5 s: see `Retry-After`"),
];

/// The further problems of commands (every method but GET).
const COMMAND_PROBLEMS: &[(&str, &str)] = &[
    ("409", "A domain rule refused the command (`code` names it)"),
    ("412", "`If-Match` names a version the stream has moved past"),
    ("413", "The body is larger than 1 MiB"),
    ("415", "The body is not `application/json`"),
    ("422", "The `Idempotency-Key` was used with another body, or the input is impossible"),
];

/// Adds the conventions of API.md to every operation: the bearer scheme, the
/// `Idempotency-Key` / `If-Match` headers of commands, `Gather-Min-Position` of
/// queries, and the problem answers each may give.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        for (status, description) in COMMON_PROBLEMS.iter().chain(COMMAND_PROBLEMS) {
            let response = ResponseBuilder::new()
                .description(*description)
                .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))))
                .build();
            components.responses.insert(format!("Problem{status}"), RefOr::T(response));
        }
    }
}

/// Applies [`Conventions`] to the operations of the paths (after the routers are merged:
/// the derive's modifiers run before any path is added).
pub fn apply_conventions(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let ops = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
            (&mut item.delete, true),
        ];
        for (op, command) in ops {
            if let Some(op) = op.as_mut() {
                conventions_of(op, command);
            }
        }
    }
}

fn header(name: &str, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn conventions_of(op: &mut Operation, command: bool) {
    let params = op.parameters.get_or_insert_with(Vec::new);
    let has = |params: &Vec<RefOr<Parameter>>, name: &str| {
        params.iter().any(|p| matches!(p, RefOr::T(p) if p.name.eq_ignore_ascii_case(name)))
    };
    let webhook = op.operation_id.as_deref() == Some("payment_webhook");
    if command && !webhook {
        if !has(params, "Idempotency-Key") {
            params.push(RefOr::T(header(
                "Idempotency-Key",
                "A repeat within 24 h answers the first answer and appends nothing; another body with the same key is a 422",
                ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(200)).pattern(Some("^[!-~]+$")),
            )));
        }
        if !has(params, "If-Match") {
            params.push(RefOr::T(header(
                "If-Match",
                "`\"<version>\"`: refused with 412 if the stream has moved on",
                ObjectBuilder::new().schema_type(Type::String).pattern(Some("^\"[0-9]{1,18}\"$")),
            )));
        }
    } else if !command && !has(params, "Gather-Min-Position") {
        params.push(RefOr::T(header(
            "Gather-Min-Position",
            "Wait (≤ 5 s) until the read models of this query have applied this global position, else 503",
            ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(1_000_000_000_000_i64)),
        )));
    }
    let problems: Vec<&(&str, &str)> = if command {
        COMMON_PROBLEMS.iter().chain(COMMAND_PROBLEMS).collect()
    } else {
        COMMON_PROBLEMS.iter().collect()
    };
    for (status, _) in problems {
        op.responses
            .responses
            .entry((*status).to_string())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(format!("Problem{status}"))));
    }
}

// ---- answer shapes --------------------------------------------------------------

/// An RFC 9457 problem (`application/problem+json`).
#[derive(ToSchema)]
#[schema(example = json!({"type": "https://gather.example/problems/activity_full", "title": "Conflict",
    "status": 409, "detail": "the activity is full", "code": "activity_full"}))]
pub struct Problem {
    /// A URI naming the problem.
    #[schema(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// A stable code for programs (`validation_failed`, `activity_full`, …).
    pub code: String,
    /// Per-field errors of a 400.
    pub errors: Option<Vec<FieldError>>,
}

/// The answer of a command: `201` or `202`, with `ETag` and `Gather-Position`.
#[derive(ToSchema)]
#[schema(example = json!({"id": "0190f5a4-8b7e-7c3d-9a51-3f2e8d6c4b10", "position": 1042, "version": 3}))]
pub struct CommandAnswer {
    /// The resource the command created or changed.
    pub id: Uuid,
    /// The global position of its last event (wait for it with `Gather-Min-Position`).
    pub position: i64,
    /// The stream's version after the command.
    pub version: i64,
}

/// `201` of `POST /v1/auth/register`.
#[derive(ToSchema)]
pub struct Registered {
    /// The member id.
    pub id: Uuid,
    /// Global position.
    pub position: i64,
    /// Stream version.
    pub version: i64,
    /// The member id (again, as API.md names it).
    pub member_id: Uuid,
    /// A bearer token.
    pub token: String,
}

/// `200` of `POST /v1/auth/login`.
#[derive(ToSchema)]
#[schema(example = json!({"member_id": "0190f5a4-8b7e-7c3d-9a51-3f2e8d6c4b10", "token": "eyJhbGciOiJIUzI1NiJ9…", "roles": ["member", "organiser"]}))]
pub struct LoggedIn {
    /// The member id.
    pub member_id: Uuid,
    /// A bearer token (HS256).
    pub token: String,
    /// `member`, `organiser`, `moderator`, `auditor`.
    pub roles: Vec<String>,
}

/// `GET /v1/me`.
#[derive(ToSchema)]
pub struct Profile {
    /// The member id.
    pub member_id: Uuid,
    /// The email address.
    pub email: String,
    /// The display name.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Children: `{id, name, birth_date}`.
    pub children: Vec<Value>,
    /// `{organisation_name}` once the member is an organiser.
    pub organiser: Option<Value>,
    /// Whether a moderator suspended the member.
    pub suspended: bool,
}

/// A booking's `201`: the command answer and the booking's status.
#[derive(ToSchema)]
pub struct BookingCreated {
    /// The booking id.
    pub id: Uuid,
    /// Global position.
    pub position: i64,
    /// Stream version.
    pub version: i64,
    /// `confirmed`, `waitlisted` or `reserved` (paid activities).
    pub status: Option<String>,
}

/// One invitation sent.
#[derive(ToSchema)]
pub struct InvitationSent {
    /// The invitation id.
    pub id: Uuid,
    /// The address it went to.
    pub email: String,
}

/// `201` of `POST /v1/activities/{id}/invitations`.
#[derive(ToSchema)]
pub struct InvitationsCreated {
    /// The activity id.
    pub id: Uuid,
    /// Global position.
    pub position: i64,
    /// Stream version.
    pub version: i64,
    /// One per address.
    pub invitations: Vec<InvitationSent>,
}

/// `201` of `POST /v1/activities/{id}/media`.
#[derive(ToSchema)]
#[schema(example = json!({"id": "0190f5a4-8b7e-7c3d-9a51-3f2e8d6c4b10", "url": "/v1/media/0190f5a4-8b7e-7c3d-9a51-3f2e8d6c4b10", "position": 1043, "version": 4}))]
pub struct MediaCreated {
    /// The media id.
    pub id: Uuid,
    /// Where it is served.
    pub url: String,
    /// Global position.
    pub position: i64,
    /// The activity stream's version.
    pub version: i64,
}

/// An activity: the details as created, with its live figures.
#[derive(ToSchema)]
pub struct ActivityView {
    /// The activity id.
    pub id: Uuid,
    /// The organiser.
    pub organiser_id: Uuid,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Category.
    pub category: String,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Start (UTC).
    pub starts_at: DateTime<Utc>,
    /// End (UTC).
    pub ends_at: DateTime<Utc>,
    /// Seats.
    pub capacity: Option<i64>,
    /// `{amount, currency}`; `amount` 0 is free.
    pub price: Option<Value>,
    /// `public` or `invite_only`.
    pub visibility: Option<String>,
    /// `{kind: "venue", name, address, lat, lng}` or `{kind: "online", url}`.
    pub location: Option<Value>,
    /// Youngest age, if limited.
    pub age_min: Option<i64>,
    /// Oldest age, if limited.
    pub age_max: Option<i64>,
    /// Whether a full activity takes a waitlist.
    pub waitlist: Option<bool>,
    /// `{id, kind, content_type, bytes, url}` each.
    pub media: Option<Vec<Value>>,
    /// The series it is an occurrence of.
    pub series_id: Option<Uuid>,
    /// Its index in the series.
    pub index: Option<i64>,
    /// `draft`, `pending`, `approved`, `rejected`, `published`, `cancelled`, `completed`.
    pub status: String,
    /// Seats left.
    pub seats_left: Option<i64>,
    /// Favourites.
    pub favourites: Option<i64>,
    /// Confirmed bookings.
    pub confirmed_bookings: Option<i64>,
    /// Confirmed bookings plus favourites.
    pub popularity: Option<i64>,
    /// The stream version (`If-Match`).
    pub version: i64,
}

/// An activity as lists show it.
#[derive(ToSchema)]
pub struct ActivitySummary {
    /// The activity id.
    pub id: Option<Uuid>,
    /// Title.
    pub title: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Start.
    pub starts_at: Option<DateTime<Utc>>,
    /// End.
    pub ends_at: Option<DateTime<Utc>>,
    /// `{amount, currency}`.
    pub price: Option<Value>,
    /// Where.
    pub location: Option<Value>,
    /// `public` or `invite_only`.
    pub visibility: Option<String>,
    /// The organiser.
    pub organiser_id: Option<Uuid>,
    /// Status.
    pub status: Option<String>,
    /// Seats left.
    pub seats_left: Option<i64>,
}

macro_rules! page {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(ToSchema)]
        pub struct $name {
            /// This page.
            pub items: Vec<$item>,
            /// The next page's `cursor`, or null on the last.
            pub next_cursor: Option<String>,
        }
    };
}

page!(ActivityPage, ActivitySummary, "A page of activities.");
page!(BookingPage, BookingView, "A page of bookings, each with its activity summary.");
page!(InvitationPage, InvitationView, "A page of invitations.");
page!(ChatPage, ChatSummary, "A page of chats, most recently active first.");
page!(MessagePage, MessageView, "A page of messages, newest first.");
page!(AuditPage, LoggedEvent, "A page of events in global order.");
page!(ProjectionList, ProjectionView, "Every projection.");

/// A search result page.
#[derive(ToSchema)]
pub struct SearchPage {
    /// Matching activities.
    pub items: Vec<ActivitySummary>,
    /// The next page's `cursor`.
    pub next_cursor: Option<String>,
    /// `{category: {name: count}}` over every match.
    pub facets: Value,
}

/// A booking.
#[derive(ToSchema)]
pub struct BookingView {
    /// The booking id.
    pub id: Uuid,
    /// The activity.
    pub activity_id: Uuid,
    /// The member who booked.
    pub member_id: Uuid,
    /// Seats.
    pub seats: i64,
    /// Who attends: the member and the children.
    pub attendees: Option<Value>,
    /// Child ids.
    pub children: Option<Value>,
    /// `reserved`, `confirmed`, `waitlisted`, `cancelled`, `expired`, `released`.
    pub status: String,
    /// The provider's payment reference.
    pub payment_ref: Option<String>,
    /// The invitation it came from.
    pub invitation_id: Option<Uuid>,
    /// Booked at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: Option<DateTime<Utc>>,
    /// The activity (in a member's list).
    pub activity: Option<ActivitySummary>,
}

/// An invitation addressed to the member's email.
#[derive(ToSchema)]
pub struct InvitationView {
    /// The invitation id.
    pub id: Uuid,
    /// The activity.
    pub activity_id: Uuid,
    /// `pending`, `accepted`, `declined`.
    pub status: String,
    /// When it was sent.
    pub invited_at: DateTime<Utc>,
    /// The activity's summary.
    pub activity: Option<ActivitySummary>,
}

/// A message.
#[derive(ToSchema)]
pub struct MessageView {
    /// The message id.
    pub id: Uuid,
    /// Who wrote it.
    pub sender_id: Uuid,
    /// The text; null once deleted.
    pub text: Option<String>,
    /// Posted by the activity's organiser in its room.
    pub as_organiser: Option<bool>,
    /// Posted at.
    pub created_at: DateTime<Utc>,
    /// Edited or deleted at.
    pub updated_at: Option<DateTime<Utc>>,
    /// Edited.
    pub edited: bool,
    /// Deleted.
    pub deleted: bool,
}

/// A chat in the member's list.
#[derive(ToSchema)]
pub struct ChatSummary {
    /// The chat id (an activity room has the activity's id).
    pub id: Uuid,
    /// `group` or `activity`.
    pub kind: String,
    /// Title.
    pub title: Option<String>,
    /// Last message or change.
    pub last_activity_at: Option<DateTime<Utc>>,
    /// The newest message.
    pub last_message: Option<MessageView>,
}

/// A chat member.
#[derive(ToSchema)]
pub struct ChatMember {
    /// The member.
    pub member_id: Uuid,
    /// Their display name.
    pub display_name: String,
}

/// `GET /v1/chats/{id}`.
#[derive(ToSchema)]
pub struct ChatView {
    /// The chat id.
    pub id: Uuid,
    /// Title.
    pub title: Option<String>,
    /// `group` or `activity`.
    pub kind: String,
    /// Members.
    pub members: Vec<ChatMember>,
    /// The newest message.
    pub last_message: Option<MessageView>,
    /// Last message or change.
    pub last_activity_at: Option<DateTime<Utc>>,
}

/// `GET /v1/activities/{id}/attendees`.
#[derive(ToSchema)]
pub struct Attendees {
    /// The activity.
    pub activity_id: Uuid,
    /// Seats of confirmed bookings.
    pub seats_confirmed: i64,
    /// `{booking_id, member_id, name, seats, children: [{id, name}]}` in booking order.
    pub attendees: Vec<Value>,
    /// The waitlist, in order.
    pub waitlist: Vec<Value>,
}

/// Metadata of a logged event.
#[derive(ToSchema)]
pub struct EventMetadata {
    /// The event id.
    pub event_id: Uuid,
    /// The command that appended it.
    pub command_id: Option<Uuid>,
    /// The request it came from.
    pub correlation_id: Option<Uuid>,
    /// The event or command that caused it.
    pub causation_id: Option<Uuid>,
    /// Who (`{id, roles}` or a system actor).
    pub actor: Option<Value>,
    /// When it was appended.
    pub recorded_at: DateTime<Utc>,
    /// The schema version it was written with.
    pub schema_version: Option<i64>,
}

/// An event of the log.
#[derive(ToSchema)]
pub struct LoggedEvent {
    /// Global position.
    pub position: i64,
    /// `{category}-{id}`.
    pub stream: String,
    /// Version in the stream.
    pub version: i64,
    /// Event type.
    #[schema(rename = "type")]
    pub kind: String,
    /// The payload (personal fields of forgotten members redacted).
    pub data: Value,
    /// Metadata.
    pub metadata: EventMetadata,
}

/// `GET /v1/activities/{id}/history`.
#[derive(ToSchema)]
pub struct History {
    /// The activity.
    pub activity_id: Uuid,
    /// The version of the last event shown.
    pub version: Option<i64>,
    /// The events up to the point asked for.
    pub events: Vec<LoggedEvent>,
    /// The activity's state folded up to that point.
    pub state: Value,
}

/// A series with its next occurrences.
#[derive(ToSchema)]
pub struct SeriesView {
    /// The series id.
    pub id: Uuid,
    /// The organiser.
    pub organiser_id: Uuid,
    /// Status.
    pub status: String,
    /// Visibility.
    pub visibility: Option<String>,
    /// The last date it runs, once ended.
    pub ended_after: Option<NaiveDate>,
    /// Why a moderator rejected it.
    pub rejection_reason: Option<String>,
    /// Stream version.
    pub version: i64,
    /// `[{index, activity_id?, starts_at, ends_at, status}]`.
    pub occurrences: Option<Vec<Value>>,
}

/// A projection's state.
#[derive(ToSchema)]
pub struct ProjectionView {
    /// Its stable name.
    pub name: String,
    /// Its checkpoint.
    pub position: i64,
    /// Events behind the log's head.
    pub lag_events: Option<i64>,
    /// Age of its oldest unapplied event.
    pub lag_ms: Option<i64>,
    /// Running, caught up, failed.
    pub state: Value,
    /// Whether it can be rebuilt.
    pub rebuildable: Option<bool>,
    /// `{progress, position, target_position, …}` while rebuilding.
    pub rebuilding: Option<Value>,
    /// The event it stopped at, if it failed.
    pub fault: Option<Value>,
}

/// `202` of a rebuild.
#[derive(ToSchema)]
pub struct RebuildStarted {
    /// The projection.
    pub name: String,
    /// `rebuilding`.
    pub status: String,
}

/// A health answer.
#[derive(ToSchema)]
pub struct Health {
    /// `live`, `ready` or `not_ready`.
    pub status: String,
}

// ---- query parameters -----------------------------------------------------------

/// Keyset paging.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /v1/activities`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Free text over title, description, tags and category (≤ 500 characters).
    pub q: Option<String>,
    /// A category.
    pub category: Option<String>,
    /// Starting at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Starting at or before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// A child's age the activity admits (0–18).
    #[param(minimum = 0, maximum = 18)]
    pub age: Option<i64>,
    /// Free activities only (or paid only, with false).
    pub free: Option<bool>,
    /// Online activities only (or venues only, with false).
    pub online: Option<bool>,
    /// `LAT,LNG`: venues within `radius_km`.
    #[param(example = "52.37,4.89")]
    pub near: Option<String>,
    /// Radius around `near` (default 25).
    pub radius_km: Option<f64>,
    /// At least this many seats left.
    #[param(minimum = 1, maximum = 100000)]
    pub seats: Option<i64>,
    /// `relevance` (needs q; the default with q), `soonest` (the default), `popular`, `newest`.
    pub sort: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /v1/organiser/activities`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusParams {
    /// `draft`, `pending`, `published`, `rejected`, `cancelled`, `completed`.
    pub status: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /v1/me/bookings`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhenParams {
    /// `upcoming` (default) or `past`.
    pub when: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /v1/activities/{id}/history`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Up to and including this stream version.
    #[param(minimum = 0)]
    pub as_of_version: Option<i64>,
    /// Up to and including events recorded at this time.
    pub as_of_time: Option<DateTime<Utc>>,
}

/// `GET /v1/audit/events`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Events after this global position (default: from the start).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// One stream, `{category}-{id}`.
    pub stream: Option<String>,
    /// Categories, comma-separated.
    pub category: Option<String>,
    /// Event types, comma-separated.
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// The actor's member id.
    pub actor: Option<Uuid>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded at or before.
    pub to: Option<DateTime<Utc>>,
    /// With `Accept: application/x-ndjson`: stream live, never ending.
    pub follow: Option<bool>,
}

/// `GET /v1/stream`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// The token, for clients that cannot set `Authorization`.
    pub access_token: Option<String>,
    /// `activity:<id>`: also watch an activity's public updates.
    pub subscribe: Option<String>,
    /// SSE resume point (as the `Last-Event-ID` header).
    pub last_event_id: Option<String>,
}
