//! One spec per behaviour of the read models.

use chrono::{DateTime, Duration, TimeZone, Utc};
use gather_domain::DomainEvent;
use gather_domain::activity::BookingStatus;
use gather_domain::activity::{
    ActivityDetails, ActivityEvent as A, InvitationRequest, RawActivityDetails, RawLocation, ReleasedBooking,
    Visibility,
};
use gather_domain::chat::{ChatEvent as C, ChatKind};
use gather_domain::member::MemberEvent as M;
use gather_domain::values::{DisplayName, Email, MessageText, OrganisationName, Reason};
use gather_projections::queries;
use gather_projections::runtime::{Target, apply_events};
use gather_projections::search::{SearchQuery, Sort, search};
use gather_store::codec::encode;
use gather_store::db::Db;
use gather_store::postgres::PostgresStore;
use gather_store::sqlite::SqliteStore;
use gather_store::{AppendMeta, Checkpoint, EventStore, ExpectedVersion, LogFilter, StreamAppend};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

/// Where a spec runs.
#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The log a spec is given, applied to every projection that owns tables.
struct Given {
    db: Db,
    store: Arc<dyn EventStore>,
    applied: Checkpoint,
}

async fn open(backend: Backend) -> (Db, Arc<dyn EventStore>) {
    let url = match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("gather-spec-{}", Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            format!("sqlite://{}", dir.join("spec.db").display())
        }
        Backend::Postgres => {
            let base = std::env::var("GATHER_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let name = format!("gather_it_{}", Uuid::new_v4().simple());
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/postgres"))
                .await
                .expect("Postgres must run on 127.0.0.1:5432 (scripts/test starts it)");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await.unwrap();
            format!("{base}/{name}")
        }
    };
    let db = Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let store: Arc<dyn EventStore> = match &db {
        Db::Postgres(p) => Arc::new(PostgresStore::new(p.clone())),
        Db::Sqlite { writer, reader } => Arc::new(SqliteStore::new(writer.clone(), reader.clone())),
    };
    (db, store)
}

impl Given {
    async fn new(backend: Backend) -> Given {
        let (db, store) = open(backend).await;
        Given { db, store, applied: Checkpoint::START }
    }

    /// Appends events to a stream (one command each) and applies them.
    async fn events<E: DomainEvent>(&mut self, stream: String, events: &[E]) -> &mut Self {
        let mut last = 0;
        for e in events {
            let meta = AppendMeta::new(Uuid::now_v7(), None);
            let append = StreamAppend {
                stream: stream.clone(),
                expected: ExpectedVersion::Any,
                events: vec![encode(e).unwrap()],
            };
            last = self.store.append(&meta, vec![append]).await.unwrap().streams[0].last_position;
        }
        self.apply(last).await;
        self
    }

    /// Applies the log up to `position` to every projection that owns tables. On
    /// Postgres an event becomes readable only once every older transaction of the
    /// cluster has ended (ADR 01): wait for it rather than apply half the given log.
    async fn apply(&mut self, position: i64) {
        let mut wake = self.store.wake();
        loop {
            let page = self.store.read_log_page(self.applied, &LogFilter::all(), 500).await.unwrap();
            let Some(last) = page.last().map(|e| e.checkpoint()) else {
                if self.applied.position >= position {
                    return;
                }
                let _ = tokio::time::timeout(std::time::Duration::from_millis(50), wake.changed()).await;
                continue;
            };
            for p in gather_projections::all().iter().filter(|p| !p.tables().is_empty()) {
                let mut tx = self.db.begin().await.unwrap();
                apply_events(&mut tx, p.as_ref(), Target::Live, &page).await.unwrap();
                tx.commit().await.unwrap();
            }
            self.applied = last;
            if last.position >= position {
                return;
            }
        }
    }
}

fn at(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 3, 1, 10, 0, 0).unwrap() + Duration::hours(h)
}

fn details(title: &str, capacity: i64, visibility: Visibility) -> ActivityDetails {
    ActivityDetails::parse(RawActivityDetails {
        title: title.into(),
        description: "An afternoon of it.".into(),
        category: "workshop".into(),
        tags: vec!["kids".into()],
        starts_at: at(0),
        ends_at: at(2),
        capacity,
        price_amount: 0,
        price_currency: "EUR".into(),
        visibility,
        location: RawLocation::Venue { name: "Hall".into(), address: "1 Main St".into(), lat: 52.0, lng: 4.0 },
        age_min: None,
        age_max: None,
        waitlist: true,
    })
    .unwrap()
}

fn activity_stream(id: Uuid) -> String {
    format!("activity-{id}")
}

/// An activity drafted and published (public, capacity 2 unless said otherwise).
fn published(id: Uuid, organiser: Uuid, title: &str, capacity: i64) -> Vec<A> {
    let d = details(title, capacity, Visibility::Public);
    vec![
        A::ActivityDrafted { series: None, activity_id: id, organiser_id: organiser, details: d.clone() },
        A::ActivitySubmitted {},
        A::ActivityPublished {
            series: None,
            organiser_id: organiser,
            time: d.time,
            visibility: Visibility::Public,
            approved_by: None,
        },
    ]
}

fn confirmed(booking: Uuid, member: Uuid, seats_left: u32) -> A {
    A::BookingConfirmed {
        booking_id: booking,
        member_id: member,
        seats: 1,
        children: vec![],
        seats_left,
        payment_ref: None,
        invitation_id: None,
    }
}

fn query(q: Option<&str>, sort: Sort) -> SearchQuery {
    SearchQuery {
        q: q.map(str::to_owned),
        category: None,
        from: None,
        to: None,
        age: None,
        free: None,
        online: None,
        near: None,
        seats: None,
        sort,
        after: None,
        limit: 100,
    }
}

async fn search_ids(g: &Given, q: Option<&str>, sort: Sort) -> Vec<String> {
    let page = search(&g.db, &query(q, sort)).await.unwrap();
    page.items.iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

macro_rules! specs {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    super::$name(super::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    super::$name(super::Backend::Postgres).await;
                }
            }
        )*
    };
}

specs!(
    seats_left_after_a_cancellation_is_the_one_the_event_carries,
    a_promoted_waitlist_entry_moves_to_the_attendees,
    a_deleted_message_shows_as_deleted_and_an_edited_one_as_edited,
    a_cancelled_activity_leaves_the_search_index,
    popularity_counts_confirmed_bookings_and_favourites_only,
    a_resubmitted_activity_goes_to_the_back_of_the_moderation_queue,
    an_answered_invitation_shows_its_answer_to_the_invited_address,
    the_organisers_name_is_searchable_until_the_organiser_is_forgotten,
    unfavouriting_removes_the_activity_from_the_members_list,
    a_revoked_role_leaves_the_members_roles,
    an_occurrence_shows_its_series_and_index,
    the_series_read_model_follows_occurrences_skips_updates_and_the_end,
    a_forgotten_members_invitations_lose_their_address,
    a_forgotten_members_messages_not_yet_relayed_are_scrubbed,
    a_queued_invitation_to_a_forgotten_address_is_not_sent,
);

async fn seats_left_after_a_cancellation_is_the_one_the_event_carries(b: Backend) {
    let (id, org, m1, b1) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut g = Given::new(b).await;
    g.events(activity_stream(id), &published(id, org, "Clay", 2)).await;
    g.events(
        activity_stream(id),
        &[
            confirmed(b1, m1, 1),
            A::BookingCancelled { booking_id: b1, member_id: m1, seats: 1, released_seats: 1, seats_left: 2 },
        ],
    )
    .await;
    let row = queries::activity(&g.db, id).await.unwrap().unwrap();
    assert_eq!(row.seats_left, 2);
    assert_eq!(row.confirmed, 0);
    assert_eq!(queries::booking(&g.db, id, b1).await.unwrap().unwrap().status, "cancelled");
}

async fn a_promoted_waitlist_entry_moves_to_the_attendees(b: Backend) {
    let (id, org) = (Uuid::now_v7(), Uuid::now_v7());
    let (m1, m2, m3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (b1, b2, b3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut g = Given::new(b).await;
    g.events(activity_stream(id), &published(id, org, "Clay", 1)).await;
    let waiting = |booking, member, position| A::WaitlistJoined {
        booking_id: booking,
        member_id: member,
        seats: 1,
        children: vec![],
        position,
    };
    g.events(activity_stream(id), &[confirmed(b1, m1, 0), waiting(b2, m2, 1), waiting(b3, m3, 2)]).await;
    let (att, wait) = queries::attendees(&g.db, id).await.unwrap();
    assert_eq!((att.len(), wait.len()), (1, 2));
    assert_eq!(wait[0]["member_id"], json!(m2), "the waitlist keeps its order");
    g.events(
        activity_stream(id),
        &[
            A::BookingCancelled { booking_id: b1, member_id: m1, seats: 1, released_seats: 1, seats_left: 1 },
            A::WaitlistPromoted { booking_id: b2, member_id: m2, seats: 1 },
            confirmed(b2, m2, 0),
        ],
    )
    .await;
    let (att, wait) = queries::attendees(&g.db, id).await.unwrap();
    assert_eq!(att.iter().map(|a| a["member_id"].clone()).collect::<Vec<_>>(), vec![json!(m2)]);
    assert_eq!(wait.iter().map(|a| a["member_id"].clone()).collect::<Vec<_>>(), vec![json!(m3)]);
    assert_eq!(queries::activity(&g.db, id).await.unwrap().unwrap().seats_left, 0);
}

async fn a_deleted_message_shows_as_deleted_and_an_edited_one_as_edited(b: Backend) {
    let (chat, a, bm) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (m1, m2) = (Uuid::now_v7(), Uuid::now_v7());
    let text = |t: &str| MessageText::parse(t).unwrap();
    let mut g = Given::new(b).await;
    g.events(
        format!("chat-{chat}"),
        &[
            C::ChatStarted {
                chat_id: chat,
                kind: ChatKind::Group,
                title: None,
                started_by: a,
                member_ids: vec![a, bm],
            },
            C::MessagePosted {
                message_id: m1,
                sender_id: a,
                text: text("first").into(),
                posted_at: at(0),
                as_organiser: false,
            },
            C::MessagePosted {
                message_id: m2,
                sender_id: bm,
                text: text("second").into(),
                posted_at: at(1),
                as_organiser: false,
            },
            C::MessageEdited { message_id: m1, sender_id: a, text: (text("first, edited")).into(), edited_at: at(2) },
            C::MessageDeleted { message_id: m2, deleted_by: bm },
        ],
    )
    .await;
    let page = queries::chat_messages(&g.db, chat, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 2, "a deleted message keeps its place");
    assert_eq!(page.items[0]["id"], json!(m2));
    assert_eq!((page.items[0]["deleted"].clone(), page.items[0]["text"].clone()), (json!(true), json!(null)));
    assert_eq!((page.items[1]["edited"].clone(), page.items[1]["text"].clone()), (json!(true), json!("first, edited")));
}

async fn a_cancelled_activity_leaves_the_search_index(b: Backend) {
    let (id, other, org) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut g = Given::new(b).await;
    g.events(activity_stream(id), &published(id, org, "Pottery morning", 5)).await;
    g.events(activity_stream(other), &published(other, org, "Pottery evening", 5)).await;
    assert_eq!(search_ids(&g, Some("pottery"), Sort::Relevance).await.len(), 2);
    let reason = Reason::parse("the kiln broke").unwrap();
    g.events(activity_stream(id), &[A::ActivityCancelled { reason, cancelled_by: org, released: vec![] }]).await;
    assert_eq!(search_ids(&g, Some("pottery"), Sort::Relevance).await, vec![other.to_string()]);
    assert_eq!(search_ids(&g, None, Sort::Soonest).await, vec![other.to_string()]);
}

async fn popularity_counts_confirmed_bookings_and_favourites_only(b: Backend) {
    let (id, org) = (Uuid::now_v7(), Uuid::now_v7());
    let (m1, m2, m3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (b1, b2, b3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut g = Given::new(b).await;
    g.events(activity_stream(id), &published(id, org, "Clay", 10)).await;
    let reserved = A::BookingReserved {
        booking_id: b3,
        member_id: m3,
        seats: 1,
        children: vec![],
        amount_due: gather_domain::values::Money::parse(0, "EUR").unwrap(),
        expires_at: at(-1),
        seats_left: 7,
    };
    g.events(
        activity_stream(id),
        &[
            confirmed(b1, m1, 9),
            confirmed(b2, m2, 8),
            reserved,
            A::ReservationExpired { booking_id: b3, member_id: m3, seats: 1, seats_left: 8 },
        ],
    )
    .await;
    g.events(format!("member-{m1}"), &[M::ActivityFavourited { activity_id: id }]).await;
    let row = queries::activity(&g.db, id).await.unwrap().unwrap();
    assert_eq!((row.confirmed, row.favourites), (2, 1), "a lapsed reservation never counted");
    let page = search(&g.db, &query(None, Sort::Popular)).await.unwrap();
    assert_eq!(page.items[0]["popularity"], json!(3));
    // The activity is cancelled: its released bookings stop counting.
    let released = vec![
        ReleasedBooking { booking_id: b1, member_id: m1, seats: 1, status: BookingStatus::Confirmed },
        ReleasedBooking { booking_id: b2, member_id: m2, seats: 1, status: BookingStatus::Confirmed },
    ];
    g.events(
        activity_stream(id),
        &[A::ActivityCancelled { reason: Reason::parse("rain").unwrap(), cancelled_by: org, released }],
    )
    .await;
    let row = queries::activity(&g.db, id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.confirmed), ("cancelled", 0));
    assert_eq!(queries::booking(&g.db, id, b1).await.unwrap().unwrap().status, "released");
}

async fn a_resubmitted_activity_goes_to_the_back_of_the_moderation_queue(b: Backend) {
    let (x, y, org) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut g = Given::new(b).await;
    let d = details("Clay", 5, Visibility::Public);
    g.events(
        activity_stream(x),
        &[
            A::ActivityDrafted { series: None, activity_id: x, organiser_id: org, details: d.clone() },
            A::ActivitySubmitted {},
        ],
    )
    .await;
    g.events(
        activity_stream(y),
        &[A::ActivityDrafted { series: None, activity_id: y, organiser_id: org, details: d }, A::ActivitySubmitted {}],
    )
    .await;
    let ids = |p: queries::Page| p.items.iter().map(|i| i["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(queries::moderation_queue(&g.db, None, 10).await.unwrap()), vec![json!(x), json!(y)]);
    let reason = Reason::parse("add a photo").unwrap();
    g.events(activity_stream(x), &[A::ActivityRejected { organiser_id: org, reason }, A::ActivitySubmitted {}]).await;
    assert_eq!(ids(queries::moderation_queue(&g.db, None, 10).await.unwrap()), vec![json!(y), json!(x)]);
}

async fn an_answered_invitation_shows_its_answer_to_the_invited_address(b: Backend) {
    let (id, org, member, inv) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut g = Given::new(b).await;
    let d = details("VIP evening", 5, Visibility::InviteOnly);
    let email = Email::parse("Guest@Example.com").unwrap();
    g.events(
        activity_stream(id),
        &[
            A::ActivityDrafted { series: None, activity_id: id, organiser_id: org, details: d.clone() },
            A::ActivityPublished {
                series: None,
                organiser_id: org,
                time: d.time,
                visibility: Visibility::InviteOnly,
                approved_by: None,
            },
            A::GuestsInvited {
                invitations: vec![InvitationRequest { invitation_id: inv, email: email.clone() }.into()],
            },
            A::InvitationDeclined { invitation_id: inv, member_id: member },
        ],
    )
    .await;
    let page = queries::invitations_to(&g.db, &email.normalized(), None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0]["status"], json!("declined"));
    assert_eq!(page.items[0]["activity"]["title"], json!("VIP evening"));
    assert!(queries::is_invited(&g.db, id, &email.normalized()).await.unwrap());
    assert!(search_ids(&g, None, Sort::Soonest).await.is_empty(), "invite-only is never listed");
}

async fn the_organisers_name_is_searchable_until_the_organiser_is_forgotten(b: Backend) {
    let (id, org) = (Uuid::now_v7(), Uuid::now_v7());
    let mut g = Given::new(b).await;
    g.events(
        format!("member-{org}"),
        &[
            M::MemberRegistered {
                member_id: org,
                email: Email::parse("studio@example.com").unwrap().into(),
                display_name: DisplayName::parse("Studio").unwrap().into(),
            },
            M::OrganiserProfileCreated { organisation_name: OrganisationName::parse("Kilnworks").unwrap() },
        ],
    )
    .await;
    g.events(activity_stream(id), &published(id, org, "Open studio", 5)).await;
    assert_eq!(search_ids(&g, Some("kilnworks"), Sort::Relevance).await, vec![id.to_string()]);
    g.events(format!("member-{org}"), &[M::MemberForgotten { member_id: org }]).await;
    assert!(search_ids(&g, Some("kilnworks"), Sort::Relevance).await.is_empty());
}

async fn unfavouriting_removes_the_activity_from_the_members_list(b: Backend) {
    let (x, y, org, m) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut g = Given::new(b).await;
    g.events(activity_stream(x), &published(x, org, "Clay", 5)).await;
    g.events(activity_stream(y), &published(y, org, "Jazz", 5)).await;
    g.events(
        format!("member-{m}"),
        &[
            M::ActivityFavourited { activity_id: x },
            M::ActivityFavourited { activity_id: y },
            M::ActivityUnfavourited { activity_id: x },
        ],
    )
    .await;
    let page = queries::member_favourites(&g.db, m, None, 10).await.unwrap();
    assert_eq!(page.items.iter().map(|i| i["id"].clone()).collect::<Vec<_>>(), vec![json!(y)]);
    assert_eq!(queries::activity(&g.db, x).await.unwrap().unwrap().favourites, 0);
}

async fn a_revoked_role_leaves_the_members_roles(b: Backend) {
    use gather_domain::Role;
    let m = Uuid::now_v7();
    let mut g = Given::new(b).await;
    g.events(
        format!("member-{m}"),
        &[
            M::MemberRegistered {
                member_id: m,
                email: Email::parse("roles@example.com").unwrap().into(),
                display_name: DisplayName::parse("Roles").unwrap().into(),
            },
            M::RoleGranted { role: Role::Moderator },
            M::RoleGranted { role: Role::Auditor },
            M::RoleRevoked { role: Role::Moderator },
        ],
    )
    .await;
    let member = queries::member(&g.db, m).await.unwrap().unwrap();
    assert_eq!(member.roles.0, vec!["member".to_owned(), "auditor".to_owned()]);
}

async fn an_occurrence_shows_its_series_and_index(b: Backend) {
    use gather_domain::activity::SeriesLink;
    let (id, org, series) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let link = Some(SeriesLink { series_id: series, index: 4 });
    let d = details("Board games", 10, Visibility::Public);
    let mut g = Given::new(b).await;
    g.events(
        activity_stream(id),
        &[
            A::ActivityDrafted { activity_id: id, organiser_id: org, details: d.clone(), series: link },
            A::ActivityPublished {
                organiser_id: org,
                time: d.time,
                visibility: Visibility::Public,
                approved_by: None,
                series: link,
            },
            A::ActivityDetailsUpdated { details: d, changed: vec!["title".into()], seats_left: 10 },
        ],
    )
    .await;
    let row = queries::activity(&g.db, id).await.unwrap().unwrap();
    assert_eq!(row.details.0["series_id"], json!(series), "kept across a details update");
    assert_eq!(row.details.0["index"], json!(4));
    let (one_off, _) = (Uuid::now_v7(), ());
    g.events(activity_stream(one_off), &published(one_off, org, "Once", 2)).await;
    let row = queries::activity(&g.db, one_off).await.unwrap().unwrap();
    assert_eq!(row.details.0["series_id"], serde_json::Value::Null);
}

async fn the_series_read_model_follows_occurrences_skips_updates_and_the_end(b: Backend) {
    use gather_domain::series::{
        MovedOccurrence, Rule, Schedule, SeriesEvent as S, SeriesTemplate, occurrence_id, parse_local_start,
        parse_timezone,
    };
    use gather_domain::values::TimeRange;
    let (series, org) = (Uuid::now_v7(), Uuid::now_v7());
    let d = details("Board games", 10, Visibility::Public);
    let template = SeriesTemplate {
        title: d.title.clone(),
        description: d.description.clone(),
        category: d.category.clone(),
        tags: d.tags.clone(),
        capacity: d.capacity,
        price: d.price.clone(),
        visibility: d.visibility,
        location: d.location.clone(),
        age_range: d.age_range,
        waitlist: d.waitlist,
    };
    let schedule = Schedule::new(
        Rule::parse("FREQ=MONTHLY;BYDAY=2TU;COUNT=6").unwrap(),
        parse_timezone("Europe/Amsterdam").unwrap(),
        parse_local_start("19:00").unwrap(),
        120,
        chrono::NaiveDate::from_ymd_opt(2031, 3, 1).unwrap(),
    )
    .unwrap();
    let scheduled = |index: u32| {
        let o = schedule.occurrence(index).unwrap();
        S::OccurrenceScheduled {
            activity_id: occurrence_id(series, index),
            index,
            starts_at: o.starts_at,
            ends_at: o.ends_at,
            organiser_id: org,
            details: template.at(TimeRange::parse(o.starts_at, o.ends_at).unwrap()),
            approved_by: None,
        }
    };
    let later = TimeRange::parse(at(24), at(26)).unwrap();
    let mut g = Given::new(b).await;
    g.events(
        format!("series-{series}"),
        &[
            S::SeriesDrafted {
                series_id: series,
                organiser_id: org,
                template: template.clone(),
                schedule: schedule.clone(),
            },
            S::SeriesSubmitted {},
            S::SeriesPublished { organiser_id: org, visibility: Visibility::Public, approved_by: None },
            scheduled(0),
            scheduled(1),
            S::OccurrenceSkipped {
                index: 1,
                date: schedule.occurrence(1).unwrap().date,
                activity_id: Some(occurrence_id(series, 1)),
            },
            S::SeriesUpdated {
                template: template.clone(),
                schedule: schedule.clone(),
                changed: vec!["local_start".into()],
                occurrences: vec![MovedOccurrence { index: 0, activity_id: occurrence_id(series, 0), time: later }],
                dropped: vec![],
            },
        ],
    )
    .await;
    let (row, occurrences, skipped) = queries::series(&g.db, series).await.unwrap().unwrap();
    assert_eq!(row.status, "published");
    assert!(row.was_published);
    assert_eq!(row.template.0["title"], json!("Board games"));
    assert_eq!(row.schedule.0["rule"], json!("FREQ=MONTHLY;INTERVAL=1;BYDAY=2TU;COUNT=6"));
    assert_eq!(
        occurrences.iter().map(|o| (o.idx, o.activity_id)).collect::<Vec<_>>(),
        vec![(0, occurrence_id(series, 0)), (1, occurrence_id(series, 1))]
    );
    assert_eq!(occurrences[0].starts_at, at(24), "the update moved occurrence 0");
    assert_eq!(skipped, vec![1]);
    g.events(
        format!("series-{series}"),
        &[S::SeriesEnded {
            after: chrono::NaiveDate::from_ymd_opt(2031, 5, 1).unwrap(),
            ended_by: org,
            cancelled: vec![],
        }],
    )
    .await;
    let (row, _, _) = queries::series(&g.db, series).await.unwrap().unwrap();
    assert_eq!(row.status, "ended");
    assert_eq!(row.ended_after.as_deref(), Some("2031-05-01"));
}

/// A member invited at their address, then forgotten: the invitation stays (its
/// activity still counts it) but no longer holds or matches the address.
async fn a_forgotten_members_invitations_lose_their_address(b: Backend) {
    let (id, org, member, inv) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut g = Given::new(b).await;
    let email = Email::parse("Forget.Me@Example.com").unwrap();
    let registered = M::MemberRegistered {
        member_id: member,
        email: email.clone().into(),
        display_name: DisplayName::parse("F").unwrap().into(),
    };
    g.events(format!("member-{member}"), &[registered]).await;
    let d = details("VIP evening", 5, Visibility::InviteOnly);
    g.events(
        activity_stream(id),
        &[
            A::ActivityDrafted { series: None, activity_id: id, organiser_id: org, details: d.clone() },
            A::GuestsInvited {
                invitations: vec![InvitationRequest { invitation_id: inv, email: email.clone() }.into()],
            },
        ],
    )
    .await;
    assert!(queries::is_invited(&g.db, id, &email.normalized()).await.unwrap());
    g.events(format!("member-{member}"), &[M::MemberForgotten { member_id: member }]).await;
    assert!(!queries::is_invited(&g.db, id, &email.normalized()).await.unwrap());
    let page = queries::invitations_to(&g.db, &email.normalized(), None, 10).await.unwrap();
    assert!(page.items.is_empty(), "{:?}", page.items);
    let left: Vec<(String,)> = gather_store::on_db_read!(&g.db, p =>
        sqlx::query_as("SELECT email FROM invitations UNION ALL SELECT email FROM invitation_member_emails")
            .fetch_all(p).await)
    .unwrap();
    assert_eq!(left, vec![(format!("forgotten:{inv}"),)], "only the scrubbed invitation is left");
    // A rebuild after the forget reads the address as forgotten (its key is shredded):
    // it ends with the same rows as the live copy.
    let mut rebuilt = Given::new(b).await;
    let forgotten = M::MemberRegistered {
        member_id: member,
        email: gather_domain::Personal::Forgotten,
        display_name: gather_domain::Personal::Forgotten,
    };
    rebuilt.events(format!("member-{member}"), &[forgotten]).await;
    let invited =
        gather_domain::activity::InvitedGuest { invitation_id: inv, email: gather_domain::Personal::Forgotten };
    rebuilt
        .events(
            activity_stream(id),
            &[
                A::ActivityDrafted { series: None, activity_id: id, organiser_id: org, details: d },
                A::GuestsInvited { invitations: vec![invited] },
            ],
        )
        .await;
    rebuilt.events(format!("member-{member}"), &[M::MemberForgotten { member_id: member }]).await;
    let rows = |db: Db| async move {
        let rows: Vec<(Uuid, Uuid, String, String)> = gather_store::on_db_read!(&db, p =>
            sqlx::query_as("SELECT invitation_id, activity_id, email, status FROM invitations").fetch_all(p).await)
        .unwrap();
        rows
    };
    assert_eq!(rows(rebuilt.db.clone()).await, rows(g.db.clone()).await, "rebuilt and live invitations differ");
}

/// Messages waiting in the outbox when their member is forgotten: the welcome to their
/// address and their own updates go; an invitation that also went to someone else
/// stays for the other address, without theirs. (Messages already relayed are
/// dropped at send time by the notifier.)
async fn a_forgotten_members_messages_not_yet_relayed_are_scrubbed(b: Backend) {
    let (id, org, member) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let g = Given::new(b).await;
    let email = Email::parse("Forget.Me@Example.com").unwrap();
    let other = Email::parse("stays@example.com").unwrap();
    let d = details("VIP evening", 5, Visibility::InviteOnly);
    let invitations = vec![
        InvitationRequest { invitation_id: Uuid::now_v7(), email: email.clone() },
        InvitationRequest { invitation_id: Uuid::now_v7(), email: other.clone() },
    ];
    let log: Vec<(String, gather_store::NewEvent)> = vec![
        (
            format!("member-{member}"),
            encode(&M::MemberRegistered {
                member_id: member,
                email: email.clone().into(),
                display_name: (DisplayName::parse("Zed Forgotten").unwrap()).into(),
            })
            .unwrap(),
        ),
        (
            activity_stream(id),
            encode(&A::ActivityDrafted { series: None, activity_id: id, organiser_id: org, details: d.clone() })
                .unwrap(),
        ),
        (
            activity_stream(id),
            encode(&A::GuestsInvited { invitations: invitations.into_iter().map(Into::into).collect() }).unwrap(),
        ),
    ];
    // Only the updates projection runs: nothing relays, so every message waits.
    let updates = gather_projections::outbox::UpdatesProjection;
    let apply = |events: Vec<(String, gather_store::NewEvent)>| {
        let (g, updates) = (&g, &updates);
        async move {
            let mut last = Checkpoint::START;
            let mut written = 0;
            for (stream, e) in events {
                let append = StreamAppend { stream, expected: ExpectedVersion::Any, events: vec![e] };
                written =
                    g.store.append(&AppendMeta::new(Uuid::now_v7(), None), vec![append]).await.unwrap().last_position();
            }
            let mut wake = g.store.wake();
            // Up to the last append's own position: the readable head may trail it on
            // Postgres while another transaction in the cluster is open.
            loop {
                let page = g.store.read_log_page(last, &LogFilter::all(), 500).await.unwrap();
                if let Some(end) = page.last().map(|e| e.checkpoint()) {
                    let mut tx = g.db.begin().await.unwrap();
                    apply_events(&mut tx, updates, Target::Live, &page).await.unwrap();
                    // The audit exchange's copies wait in the outbox too.
                    apply_events(&mut tx, &gather_projections::outbox::AuditProjection, Target::Live, &page)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                    last = end;
                }
                if last.position >= written {
                    return last;
                }
                let _ = tokio::time::timeout(std::time::Duration::from_millis(50), wake.changed()).await;
            }
        }
    };
    let last = apply(log).await;
    let outbox = || async {
        let rows: Vec<(String,)> = gather_store::on_db_read!(&g.db, p =>
            sqlx::query_as("SELECT message FROM outbox ORDER BY seq").fetch_all(p).await)
        .unwrap();
        rows.into_iter().map(|(m,)| m).collect::<Vec<_>>()
    };
    let before = outbox().await.join("\n").to_lowercase();
    assert!(before.contains("forget.me@example.com") && before.contains("zed forgotten"), "{before}");
    // Forgotten: appended after what was applied, then applied from there.
    let forgot = encode(&M::MemberForgotten { member_id: member }).unwrap();
    let append =
        StreamAppend { stream: format!("member-{member}"), expected: ExpectedVersion::Any, events: vec![forgot] };
    g.store.append(&AppendMeta::new(Uuid::now_v7(), None), vec![append]).await.unwrap();
    let mut wake = g.store.wake();
    loop {
        let page = g.store.read_log_page(last, &LogFilter::all(), 500).await.unwrap();
        if !page.is_empty() {
            let mut tx = g.db.begin().await.unwrap();
            apply_events(&mut tx, &updates, Target::Live, &page).await.unwrap();
            tx.commit().await.unwrap();
            break;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), wake.changed()).await;
    }
    let after = outbox().await;
    // Only the notice to the push workers is left for them (ids only).
    let (notice, rest): (Vec<_>, Vec<_>) = after.iter().partition(|m| m.contains("\"type\":\"member.forgotten\""));
    assert_eq!(notice.len(), 1, "{after:?}");
    let all = rest.iter().map(|m| m.to_lowercase()).collect::<Vec<_>>().join("\n");
    assert!(!notice[0].to_lowercase().contains("forget.me@example.com") && !notice[0].contains("Zed"), "{notice:?}");
    assert!(!all.contains("forget.me@example.com"), "{all}");
    assert!(!all.contains("zed forgotten"), "{all}");
    assert!(!all.contains(&format!("member:{member}")), "{all}");
    assert!(all.contains("stays@example.com"), "the other invitee's message stays: {all}");
    let audit_invited = rest.iter().find(|m| m.contains("\"type\":\"activity.GuestsInvited\"")).expect("audit copy");
    assert!(
        audit_invited.contains("stays@example.com"),
        "the audit copy stays, without their address: {audit_invited}"
    );
    assert!(!rest.iter().any(|m| m.contains(&format!("\"topic\":\"member-{member}\""))), "{rest:?}");
}

/// An invitation already relayed (queued for the notifier) when its address's member is
/// forgotten is dropped at send time: the address's key is shredded. Another address
/// still gets its invitation, and so does the forgotten address once it is invited
/// again (the new invitation makes it a new key).
async fn a_queued_invitation_to_a_forgotten_address_is_not_sent(b: Backend) {
    use gather_projections::bus::Update;
    use gather_projections::mail::Mailer;
    use gather_projections::notifier::Notifier;
    use gather_store::vault::{Kek, NewKeys, Vault};
    let (db, _) = open(b).await;
    let vault = Vault::open(db.clone(), &Kek::from_bytes([7; 32]), &[9; 32]).await.unwrap();
    let dir = std::env::temp_dir().join(format!("gather-spec-mail-{}", Uuid::new_v4().simple()));
    let notifier = Notifier::new(db.clone(), Mailer::files(dir.clone()).unwrap(), "http://gather.test")
        .with_vault(Some(vault.clone()));
    // Inviting an address seals it under the address's own key.
    let invite = |address: &str| {
        let (vault, address) = (vault.clone(), address.to_owned());
        async move {
            let mut doc = json!({ "email": address });
            vault
                .seal_fields(Uuid::now_v7(), &mut doc, &["email"], (Uuid::nil(), true), NewKeys::Always)
                .await
                .unwrap();
            let start = at(48);
            Update {
                id: Uuid::now_v7(),
                topic: format!("activity:{}", Uuid::now_v7()),
                kind: "invitation.sent".into(),
                position: 1,
                correlation_id: Uuid::now_v7(),
                recipients: Vec::new(),
                email: Some(address),
                data: json!({
                    "activity_id": Uuid::now_v7(), "invitation_id": Uuid::now_v7(), "title": "VIP evening",
                    "starts_at": start, "ends_at": start + Duration::hours(2)
                }),
            }
        }
    };
    let (gone, stays) = (invite("Forget.Me@Example.com").await, invite("stays@example.com").await);
    // Forgetting their member shreds the key of the address they registered with.
    vault.shred_member(Uuid::now_v7(), Some("forget.me@example.com")).await.unwrap();
    assert_eq!(notifier.deliver(&gone).await.unwrap(), 0, "nothing goes to a forgotten address");
    assert_eq!(notifier.deliver(&stays).await.unwrap(), 1, "the other address gets its invitation");
    let again = invite("forget.me@example.com").await;
    assert_eq!(notifier.deliver(&again).await.unwrap(), 1, "a later invitation to the address goes");
    let mails: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap().to_lowercase())
        .collect();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert_eq!(mails.iter().filter(|m| m.contains("forget.me@example.com")).count(), 1, "{mails:?}");
}
