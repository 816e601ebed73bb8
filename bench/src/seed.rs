//! Generated logs for the read-side sections, decided by the domain (so seats left,
//! versions and statuses are consistent) and appended straight through the event store
//! in large multi-stream appends, never through HTTP.

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use gather_commands::codec::encode;
use gather_commands::store::{AppendMeta, EventStore, ExpectedVersion, NewEvent, StreamAppend};
use gather_domain::activity::{
    Activity, ActivityCommand, ActivityDetails, RawActivityDetails, RawLocation, Visibility,
};
use gather_domain::member::MemberEvent;
use gather_domain::values::{DisplayName, Email, OrganisationName, PaymentRef, TimeRange};
use gather_domain::{Actor, Aggregate, Context, Role};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// A small deterministic generator (SplitMix64): the same seed, the same log.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Uniform in `[-r, r]`.
    pub fn jitter(&mut self, r: f64) -> f64 {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * r
    }
}

/// (title word, category, tags): what the generated activities are about.
pub const KINDS: &[(&str, &str, &[&str])] = &[
    ("pottery", "workshop", &["clay", "art"]),
    ("yoga", "sports", &["wellness", "stretching"]),
    ("board games", "social", &["games", "strategy"]),
    ("painting", "workshop", &["art", "watercolour"]),
    ("running", "sports", &["fitness", "outdoors"]),
    ("chess", "social", &["games", "strategy"]),
    ("coding", "education", &["programming", "rust"]),
    ("photography", "workshop", &["camera", "art"]),
    ("cooking", "food", &["kitchen", "recipes"]),
    ("wine tasting", "food", &["wine", "tasting"]),
    ("hiking", "outdoors", &["nature", "walking"]),
    ("climbing", "outdoors", &["bouldering", "fitness"]),
    ("salsa dance", "sports", &["dance", "music"]),
    ("book club", "culture", &["books", "reading"]),
    ("jazz concert", "music", &["jazz", "live"]),
    ("language exchange", "education", &["languages", "conversation"]),
];

const ADJECTIVES: &[&str] =
    &["Evening", "Morning", "Weekend", "Beginners", "Advanced", "Family", "Kids", "Community", "Open", "Friday"];

/// (name, lat, lng).
pub const CITIES: &[(&str, f64, f64)] = &[
    ("Amsterdam", 52.37, 4.89),
    ("Berlin", 52.52, 13.40),
    ("Paris", 48.85, 2.35),
    ("London", 51.51, -0.13),
    ("Madrid", 40.42, -3.70),
    ("Rome", 41.90, 12.50),
    ("Vienna", 48.21, 16.37),
    ("Prague", 50.08, 14.44),
    ("Copenhagen", 55.68, 12.57),
    ("Lisbon", 38.72, -9.14),
];

const FILLER: &[&str] = &[
    "friendly",
    "relaxed",
    "hands-on",
    "small group",
    "all levels welcome",
    "bring a friend",
    "snacks included",
    "experienced host",
    "equipment provided",
    "meet new people",
];

/// Public details of a random activity starting 2 to 360 days after `now`.
pub fn details(rng: &mut Rng, now: DateTime<Utc>, capacity: i64) -> anyhow::Result<ActivityDetails> {
    let (kind, category, tags) = *rng.pick(KINDS);
    let adjective = *rng.pick(ADJECTIVES);
    let online = rng.chance(0.25);
    let (city, lat, lng) = *rng.pick(CITIES);
    let title = if online { format!("{adjective} {kind} online") } else { format!("{adjective} {kind} in {city}") };
    let description = format!(
        "Join us for {kind}: {}, {}. {}.",
        rng.pick(FILLER),
        rng.pick(FILLER),
        if online { "Online, link after booking".to_owned() } else { format!("Central {city}") }
    );
    let starts_at = now + Duration::days(2 + rng.below(358) as i64) + Duration::minutes(15 * rng.below(64) as i64);
    let free = rng.chance(0.6);
    let aged = rng.chance(0.2);
    let location = if online {
        RawLocation::Online { url: "https://example.com/room".into() }
    } else {
        RawLocation::Venue {
            name: format!("{city} studio"),
            address: format!("{} Main Street, {city}", 1 + rng.below(200)),
            lat: lat + rng.jitter(0.15),
            lng: lng + rng.jitter(0.15),
        }
    };
    Ok(ActivityDetails::parse(RawActivityDetails {
        title,
        description,
        category: category.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        starts_at,
        ends_at: starts_at + Duration::hours(2),
        capacity,
        price_amount: if free { 0 } else { 500 + 100 * rng.below(45) as i64 },
        price_currency: "EUR".into(),
        visibility: Visibility::Public,
        location,
        age_min: aged.then_some(6),
        age_max: aged.then_some(12),
        waitlist: false,
    })?)
}

/// Runs one command through the domain on `state`, returning its events.
fn decide(
    state: &mut <Activity as Aggregate>::State,
    cmd: ActivityCommand,
    actor: &Actor,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<NewEvent>> {
    let events = Activity::decide(state, cmd, &Context::new(actor.clone(), now))?;
    let mut out = Vec::with_capacity(events.len());
    for e in &events {
        *state = Activity::evolve(std::mem::take(state), e);
        out.push(encode(e)?);
    }
    Ok(out)
}

/// Members (the first tenth of them organisers), registered in the first appends.
pub struct Members {
    pub ids: Vec<Uuid>,
    pub organisers: usize,
}

/// One append call (several streams).
pub type Call = Vec<StreamAppend>;

fn member_calls(rng: &mut Rng, members: usize) -> anyhow::Result<(Members, Vec<Call>)> {
    let ids: Vec<Uuid> = (0..members).map(|_| Uuid::now_v7()).collect();
    let organisers = (members / 10).max(1);
    let mut calls = Vec::new();
    for (c, chunk) in ids.chunks(250).enumerate() {
        let mut call = Vec::new();
        for (k, id) in chunk.iter().enumerate() {
            let i = c * 250 + k;
            let mut events = vec![encode(&MemberEvent::MemberRegistered {
                member_id: *id,
                email: (Email::parse(&format!("m{}@example.com", id.simple()))?).into(),
                display_name: (DisplayName::parse(&format!("Member {i}"))?).into(),
            })?];
            if i < organisers {
                let org = format!("{} {} club {i}", rng.pick(CITIES).0, rng.pick(KINDS).0);
                events.push(encode(&MemberEvent::OrganiserProfileCreated {
                    organisation_name: OrganisationName::parse(&org)?,
                })?);
            }
            call.push(StreamAppend { stream: format!("member-{id}"), expected: ExpectedVersion::NoStream, events });
        }
        calls.push(call);
    }
    Ok((Members { ids, organisers }, calls))
}

/// Groups favourites (member → activities) into one stream append per member.
fn favourite_appends(favs: &mut Vec<(Uuid, Uuid)>) -> anyhow::Result<Vec<StreamAppend>> {
    let mut by_member: HashMap<Uuid, Vec<NewEvent>> = HashMap::new();
    for (member, activity) in favs.drain(..) {
        by_member.entry(member).or_default().push(encode(&MemberEvent::ActivityFavourited { activity_id: activity })?);
    }
    Ok(by_member
        .into_iter()
        .map(|(m, events)| StreamAppend { stream: format!("member-{m}"), expected: ExpectedVersion::Any, events })
        .collect())
}

/// The rebuild mix: `activities` drafted, submitted and published, each then about 9
/// bookings by distinct members (30 % paid: reserved, then paid), 2 of them cancelled,
/// one reschedule, and about 2 favourites from member streams. Returns the append calls
/// (members first) and the number of events.
pub fn activity_mix(activities: usize, members: usize, seed: u64) -> anyhow::Result<(Vec<Call>, usize)> {
    let mut rng = Rng::new(seed);
    let now = Utc::now();
    let (m, mut calls) = member_calls(&mut rng, members)?;
    let moderator = Actor::new(Uuid::now_v7(), [Role::Member, Role::Moderator]);
    let mut call = Vec::new();
    let mut favs = Vec::new();
    for i in 0..activities {
        let id = Uuid::now_v7();
        let organiser = Actor::new(m.ids[i % m.organisers], [Role::Member, Role::Organiser]);
        let mut state = Default::default();
        let d = details(&mut rng, now, 50)?;
        let paid = !d.price.is_zero();
        let price = d.price.clone();
        let starts = d.time;
        let mut events = decide(&mut state, ActivityCommand::Create { activity_id: id, details: d }, &organiser, now)?;
        events.extend(decide(&mut state, ActivityCommand::Submit, &organiser, now)?);
        events.extend(decide(&mut state, ActivityCommand::Approve, &moderator, now)?);
        let bookings = 7 + rng.below(5);
        let first = rng.below(members);
        let mut booked = Vec::new();
        for b in 0..bookings {
            let member = Actor::new(m.ids[(first + b * 7) % members], [Role::Member]);
            let booking_id = Uuid::now_v7();
            let seats = 1 + rng.below(3) as u32;
            let cmd = ActivityCommand::BookSeats { booking_id, seats, children: vec![] };
            events.extend(decide(&mut state, cmd, &member, now)?);
            if paid {
                // Confirmed by the payment provider's webhook (the system), for the amount due.
                let cmd = ActivityCommand::ConfirmPayment {
                    booking_id,
                    payment_ref: PaymentRef::parse(&format!("pay-{}", booking_id.simple()))?,
                    amount: price.times(seats),
                };
                events.extend(decide(&mut state, cmd, &Actor::system(), now)?);
            }
            booked.push((booking_id, member));
        }
        for (booking_id, member) in booked.iter().take(2) {
            events.extend(decide(&mut state, ActivityCommand::CancelBooking { booking_id: *booking_id }, member, now)?);
        }
        let later = TimeRange::parse(starts.starts_at() + Duration::days(1), starts.ends_at() + Duration::days(1))?;
        events.extend(decide(&mut state, ActivityCommand::Reschedule { time: later }, &organiser, now)?);
        let fan = rng.below(members);
        for k in 0..1 + rng.below(3) {
            favs.push((m.ids[(fan + k * 13) % members], id));
        }
        call.push(StreamAppend { stream: format!("activity-{id}"), expected: ExpectedVersion::NoStream, events });
        if call.len() == 25 {
            call.extend(favourite_appends(&mut favs)?);
            calls.push(std::mem::take(&mut call));
        }
    }
    call.extend(favourite_appends(&mut favs)?);
    if !call.is_empty() {
        calls.push(call);
    }
    let events = calls.iter().flatten().map(|a| a.events.len()).sum();
    Ok((calls, events))
}

/// The search corpus: `activities` published public activities (drafted, submitted,
/// approved) over 16 kinds, 10 cities (a quarter online), 60 % free, a fifth with an
/// age range; about a fifth get 1 to 5 favourites (for `sort=popular`).
pub fn search_corpus(activities: usize, seed: u64) -> anyhow::Result<(Vec<Call>, usize)> {
    let mut rng = Rng::new(seed);
    let now = Utc::now();
    let members = (activities / 20).clamp(50, 5_000);
    let (m, mut calls) = member_calls(&mut rng, members)?;
    let moderator = Actor::new(Uuid::now_v7(), [Role::Member, Role::Moderator]);
    let mut call = Vec::new();
    let mut favs = Vec::new();
    for i in 0..activities {
        let id = Uuid::now_v7();
        let organiser = Actor::new(m.ids[i % m.organisers], [Role::Member, Role::Organiser]);
        let mut state = Default::default();
        let capacity = 10 + rng.below(190) as i64;
        let d = details(&mut rng, now, capacity)?;
        let mut events = decide(&mut state, ActivityCommand::Create { activity_id: id, details: d }, &organiser, now)?;
        events.extend(decide(&mut state, ActivityCommand::Submit, &organiser, now)?);
        events.extend(decide(&mut state, ActivityCommand::Approve, &moderator, now)?);
        if rng.chance(0.2) {
            let first = rng.below(members);
            for k in 0..1 + rng.below(5) {
                favs.push((m.ids[(first + k * 13) % members], id));
            }
        }
        call.push(StreamAppend { stream: format!("activity-{id}"), expected: ExpectedVersion::NoStream, events });
        if call.len() == 150 {
            call.extend(favourite_appends(&mut favs)?);
            calls.push(std::mem::take(&mut call));
        }
    }
    call.extend(favourite_appends(&mut favs)?);
    if !call.is_empty() {
        calls.push(call);
    }
    let events = calls.iter().flatten().map(|a| a.events.len()).sum();
    Ok((calls, events))
}

/// Appends `calls` in order for the first `ordered` (the member registrations), then
/// `parallel` at a time. Returns events/s.
pub async fn append_all(store: Arc<dyn EventStore>, mut calls: Vec<Call>, ordered: usize) -> anyhow::Result<f64> {
    let events: usize = calls.iter().flatten().map(|a| a.events.len()).sum();
    let t = std::time::Instant::now();
    // One lock order for every call (activity streams sort before member streams, so a
    // favourite still lands after its activity): parallel calls sharing member streams
    // cannot deadlock.
    for call in &mut calls {
        call.sort_by(|a, b| a.stream.cmp(&b.stream));
    }
    let rest = calls.split_off(ordered.min(calls.len()));
    for call in calls {
        store.append(&AppendMeta::new(Uuid::now_v7(), None), call).await.context("append members")?;
    }
    let results: Vec<_> = futures::stream::iter(rest)
        .map(|call| {
            let store = store.clone();
            async move { store.append(&AppendMeta::new(Uuid::now_v7(), None), call).await }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for r in results {
        r.context("append")?;
    }
    Ok(events as f64 / t.elapsed().as_secs_f64())
}

/// How many of the first calls register members (they must land before the rest).
pub fn member_call_count(members: usize) -> usize {
    members.div_ceil(250)
}
