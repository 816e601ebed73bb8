//! The series aggregate — stream `series-{id}`: a recurring activity (seed 004: "when
//! you create a meetup, make it recur on a schedule — monthly first").
//!
//! An organiser gives a template (an activity's details without their time), an IANA
//! time zone, a local start time, a duration and a rule ([`rule`]: a subset of RFC 5545
//! RRULE). The series goes through the activity's lifecycle once for all its
//! occurrences: `draft → pending → published` (public), `draft → published`
//! (invite-only), `pending → rejected → (edit) → pending`, and `ended` from anywhere.
//!
//! A published series is materialized a horizon ahead ([`HORIZON_OCCURRENCES`] within
//! [`HORIZON_DAYS`]): `Materialize` (the scheduler, on publication and then daily)
//! records `OccurrenceScheduled` for each occurrence that should exist and does not
//! yet; the process manager turns each into an ordinary activity
//! (`ActivityCommand::CreateOccurrence`), whose id is derived from the series id and
//! the occurrence's index ([`occurrence_id`]), so a replay or a second scheduler
//! materializes nothing twice. Occurrence indexes count every occurrence of the rule
//! from the series' anchor (the day it was drafted), skipped and past ones included.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::activity::{ActivityDetails, Visibility, apply_template_patch, describe_details, describe_time};
use crate::core::{Aggregate, Context, DomainEvent, Role};
use crate::errors::DomainError;
use crate::specs::fixtures::name;
use crate::testkit::{AggregateCommand, AggregateEvent, Describe};
use crate::values::{AgeRange, Capacity, Category, Description, Location, Money, Reason, Tags, TimeRange, Title};

pub mod rule;
mod specs;

pub use rule::{Occurrence, Rule, Schedule, parse_local_start, parse_timezone};
pub use specs::sections as spec_sections;

/// The series aggregate (stream category `series`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Series;

/// How many upcoming occurrences exist as activities at any time.
pub const HORIZON_OCCURRENCES: usize = 3;
/// How far ahead occurrences are materialized.
pub const HORIZON_DAYS: i64 = 90;

/// The activity id of a series' occurrence: the same series and index always name
/// the same activity (UUID v5 in the series' namespace).
pub fn occurrence_id(series_id: Uuid, index: u32) -> Uuid {
    Uuid::new_v5(&series_id, format!("occurrence:{index}").as_bytes())
}

/// Every occurrence's activity details except the time, already parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesTemplate {
    /// 3–120 characters.
    pub title: Title,
    /// At most 5,000 characters.
    pub description: Description,
    /// The search facet.
    pub category: Category,
    /// At most 10 tags.
    pub tags: Tags,
    /// 1–100,000 seats per occurrence.
    pub capacity: Capacity,
    /// The price per seat; 0 means free.
    pub price: Money,
    /// Public (approved once for the whole series) or invite-only.
    pub visibility: Visibility,
    /// A venue or a URL.
    pub location: Location,
    /// The ages admitted, for children's activities.
    pub age_range: Option<AgeRange>,
    /// Whether bookings beyond capacity join a waitlist.
    pub waitlist: bool,
}

/// An unparsed template, as a request carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeriesTemplate {
    /// Title text.
    pub title: String,
    /// Description text.
    pub description: String,
    /// Category name.
    pub category: String,
    /// Tag texts.
    pub tags: Vec<String>,
    /// Seats.
    pub capacity: i64,
    /// Price per seat in minor units.
    pub price_amount: i64,
    /// ISO 4217 currency code.
    pub price_currency: String,
    /// Visibility.
    pub visibility: Visibility,
    /// Where.
    pub location: crate::activity::RawLocation,
    /// Youngest age admitted, if any.
    pub age_min: Option<i64>,
    /// Oldest age admitted, if any.
    pub age_max: Option<i64>,
    /// Waitlist on or off.
    pub waitlist: bool,
}

impl SeriesTemplate {
    /// Parses every field with the activity's rules, failing on the first one out of its limits.
    pub fn parse(raw: RawSeriesTemplate) -> Result<Self, DomainError> {
        let age_range = match (raw.age_min, raw.age_max) {
            (None, None) => None,
            (Some(min), Some(max)) => Some(AgeRange::parse(min, max)?),
            (None, Some(_)) => return Err(DomainError::invalid("age_min", "is required with age_max")),
            (Some(_), None) => return Err(DomainError::invalid("age_max", "is required with age_min")),
        };
        Ok(SeriesTemplate {
            title: Title::parse(&raw.title)?,
            description: Description::parse(&raw.description)?,
            category: Category::parse(&raw.category)?,
            tags: Tags::parse(&raw.tags)?,
            capacity: Capacity::parse(raw.capacity)?,
            price: Money::parse(raw.price_amount, &raw.price_currency)?,
            visibility: raw.visibility,
            location: raw.location.parse()?,
            age_range,
            waitlist: raw.waitlist,
        })
    }

    /// The details of the occurrence at `time`.
    pub fn at(&self, time: TimeRange) -> ActivityDetails {
        ActivityDetails {
            title: self.title.clone(),
            description: self.description.clone(),
            category: self.category.clone(),
            tags: self.tags.clone(),
            time,
            capacity: self.capacity,
            price: self.price.clone(),
            visibility: self.visibility,
            location: self.location.clone(),
            age_range: self.age_range,
            waitlist: self.waitlist,
        }
    }
}

/// When occurrences happen, as the organiser gives it; the anchor (the first day the
/// rule considers) is the day the series is drafted, in its time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    /// The recurrence rule.
    pub rule: Rule,
    /// The IANA time zone the rule and the local start are in.
    pub timezone: chrono_tz::Tz,
    /// The local start time of every occurrence.
    pub local_start: chrono::NaiveTime,
    /// How long each occurrence lasts.
    pub duration_minutes: u32,
}

/// A partial change (`PATCH`): `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesPatch {
    /// New title.
    pub title: Option<Title>,
    /// New description.
    pub description: Option<Description>,
    /// New category.
    pub category: Option<Category>,
    /// New tags.
    pub tags: Option<Tags>,
    /// New capacity.
    pub capacity: Option<Capacity>,
    /// New price.
    pub price: Option<Money>,
    /// New visibility.
    pub visibility: Option<Visibility>,
    /// New location.
    pub location: Option<Location>,
    /// New age range: `Some(None)` removes it.
    pub age_range: Option<Option<AgeRange>>,
    /// Waitlist on or off.
    pub waitlist: Option<bool>,
    /// New rule.
    pub rule: Option<Rule>,
    /// New time zone.
    pub timezone: Option<chrono_tz::Tz>,
    /// New local start time.
    pub local_start: Option<chrono::NaiveTime>,
    /// New duration.
    pub duration_minutes: Option<u32>,
}

/// Where a series is in its lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesStatus {
    /// Being written by its organiser.
    #[default]
    Draft,
    /// Submitted for review.
    Pending,
    /// Approved (public) or published (invite-only): occurrences are materialized.
    Published,
    /// Refused by a moderator; the organiser may edit and resubmit.
    Rejected,
    /// Ended: nothing after its end date is materialized (final).
    Ended,
}

impl SeriesStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesStatus::Draft => "draft",
            SeriesStatus::Pending => "pending",
            SeriesStatus::Published => "published",
            SeriesStatus::Rejected => "rejected",
            SeriesStatus::Ended => "ended",
        }
    }
}

/// What an organiser, a moderator or the scheduler asks of a series.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesCommand {
    /// `CreateSeries` (organiser): a new draft anchored on today (in its time zone).
    Create {
        /// The new series' id (the stream id).
        series_id: Uuid,
        /// The occurrences' details.
        template: SeriesTemplate,
        /// When they happen.
        schedule: ScheduleSpec,
    },
    /// `UpdateSeries` (organiser): applies to occurrences not yet materialized and to
    /// materialized ones without bookings.
    Update {
        /// The fields to change.
        patch: SeriesPatch,
    },
    /// `SubmitSeries` (organiser, public series).
    Submit,
    /// `ApproveSeries` (moderator): publishes every occurrence to come.
    Approve,
    /// `RejectSeries` (moderator).
    Reject {
        /// Why, shown to the organiser.
        reason: Reason,
    },
    /// `PublishSeries` (organiser, invite-only series).
    Publish,
    /// `MaterializeSeries` (system: on publication, then daily): the occurrences due
    /// within the horizon are scheduled.
    Materialize,
    /// `SkipOccurrence` (organiser): the occurrence on that local date does not happen.
    Skip {
        /// The occurrence's local date.
        date: NaiveDate,
    },
    /// `EndSeries` (organiser, moderator): nothing after that local date happens.
    End {
        /// The last local date that may still have an occurrence.
        after: NaiveDate,
    },
}

/// One materialized occurrence whose time a series update moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedOccurrence {
    /// The occurrence's index.
    pub index: u32,
    /// Its activity.
    pub activity_id: Uuid,
    /// Its time under the updated schedule.
    pub time: TimeRange,
}

/// What happened to a series. Serialized as `{"type": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum SeriesEvent {
    /// A draft was created.
    SeriesDrafted {
        /// The series.
        series_id: Uuid,
        /// Its organiser.
        organiser_id: Uuid,
        /// The occurrences' details.
        template: SeriesTemplate,
        /// When they happen (with the anchor).
        schedule: Schedule,
    },
    /// Template or schedule changed; carries the whole new template and schedule and
    /// the upcoming materialized occurrences the change reaches, with their new times.
    SeriesUpdated {
        /// The template after the change.
        template: SeriesTemplate,
        /// The schedule after the change.
        schedule: Schedule,
        /// The changed fields (`title`, `rule`, …).
        changed: Vec<String>,
        /// Upcoming materialized occurrences, at their time under the new schedule
        /// (each takes it unless it has bookings).
        occurrences: Vec<MovedOccurrence>,
        /// Upcoming materialized occurrences the new rule no longer has (each is
        /// cancelled unless it has bookings).
        dropped: Vec<Uuid>,
    },
    /// Submitted for review.
    SeriesSubmitted {},
    /// Published (approved, or directly for invite-only series): materializing starts.
    SeriesPublished {
        /// The organiser (to notify).
        organiser_id: Uuid,
        /// Public or invite-only.
        visibility: Visibility,
        /// The approving moderator, for public series.
        approved_by: Option<Uuid>,
    },
    /// Refused by a moderator.
    SeriesRejected {
        /// The organiser (to notify).
        organiser_id: Uuid,
        /// Why.
        reason: Reason,
    },
    /// An occurrence is due within the horizon: it becomes the activity `activity_id`.
    OccurrenceScheduled {
        /// The occurrence's activity (derived from the series id and the index).
        activity_id: Uuid,
        /// The occurrence's index in the rule.
        index: u32,
        /// When it starts.
        starts_at: DateTime<Utc>,
        /// When it ends.
        ends_at: DateTime<Utc>,
        /// The series' organiser.
        organiser_id: Uuid,
        /// The activity's details (the template at this time).
        details: ActivityDetails,
        /// The moderator who approved the series (public series).
        approved_by: Option<Uuid>,
    },
    /// One occurrence does not happen; a materialized one is cancelled.
    OccurrenceSkipped {
        /// The occurrence's index.
        index: u32,
        /// Its local date.
        date: NaiveDate,
        /// Its activity, if materialized (to cancel).
        activity_id: Option<Uuid>,
    },
    /// The series ends after `after`: later materialized occurrences are cancelled.
    SeriesEnded {
        /// The last local date that may still have an occurrence.
        after: NaiveDate,
        /// Who ended it.
        ended_by: Uuid,
        /// The materialized occurrences cancelled.
        cancelled: Vec<Uuid>,
    },
}

impl DomainEvent for SeriesEvent {
    fn event_type(&self) -> &'static str {
        match self {
            SeriesEvent::SeriesDrafted { .. } => "SeriesDrafted",
            SeriesEvent::SeriesUpdated { .. } => "SeriesUpdated",
            SeriesEvent::SeriesSubmitted { .. } => "SeriesSubmitted",
            SeriesEvent::SeriesPublished { .. } => "SeriesPublished",
            SeriesEvent::SeriesRejected { .. } => "SeriesRejected",
            SeriesEvent::OccurrenceScheduled { .. } => "OccurrenceScheduled",
            SeriesEvent::OccurrenceSkipped { .. } => "OccurrenceSkipped",
            SeriesEvent::SeriesEnded { .. } => "SeriesEnded",
        }
    }
}

/// One materialized occurrence, as the series knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Materialized {
    /// Its activity.
    pub activity_id: Uuid,
    /// Its time as the series last set it (an occurrence with bookings may keep an earlier one).
    pub time: TimeRange,
}

/// The folded series stream (serializable for snapshots only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    /// Whether `SeriesDrafted` happened.
    pub created: bool,
    /// The series' id.
    pub series_id: Uuid,
    /// Its organiser.
    pub organiser_id: Uuid,
    /// Lifecycle status.
    pub status: SeriesStatus,
    /// The occurrences' details (`None` before creation).
    pub template: Option<SeriesTemplate>,
    /// When they happen (`None` before creation).
    pub schedule: Option<Schedule>,
    /// The approving moderator.
    pub approved_by: Option<Uuid>,
    /// Materialized occurrences by index.
    pub occurrences: BTreeMap<u32, Materialized>,
    /// Skipped indexes.
    pub skipped: BTreeSet<u32>,
    /// The end date, once ended.
    pub ended_after: Option<NaiveDate>,
    /// The last rejection's reason.
    pub rejection_reason: Option<Reason>,
}

impl Aggregate for Series {
    const CATEGORY: &'static str = "series";
    type State = SeriesState;
    type Command = SeriesCommand;
    type Event = SeriesEvent;

    fn decide(state: &SeriesState, command: SeriesCommand, ctx: &Context) -> Result<Vec<SeriesEvent>, DomainError> {
        use SeriesCommand as C;
        if let C::Create { series_id, template, schedule } = command {
            return create(state, series_id, template, schedule, ctx);
        }
        let (Some(template), Some(schedule)) = (state.template.as_ref(), state.schedule.as_ref()) else {
            return Err(DomainError::SeriesNotFound);
        };
        let d = Decision { state, template, schedule, ctx };
        match command {
            C::Create { .. } => Err(DomainError::SeriesAlreadyExists),
            C::Update { patch } => d.update(patch),
            C::Submit => d.submit(),
            C::Approve => d.approve(),
            C::Reject { reason } => d.reject(reason),
            C::Publish => d.publish(),
            C::Materialize => d.materialize(),
            C::Skip { date } => d.skip(date),
            C::End { after } => d.end(after),
        }
    }

    fn evolve(mut state: SeriesState, event: &SeriesEvent) -> SeriesState {
        use SeriesEvent as E;
        match event {
            E::SeriesDrafted { series_id, organiser_id, template, schedule } => {
                state.created = true;
                state.series_id = *series_id;
                state.organiser_id = *organiser_id;
                state.status = SeriesStatus::Draft;
                state.template = Some(template.clone());
                state.schedule = Some(schedule.clone());
            }
            E::SeriesUpdated { template, schedule, occurrences, dropped, .. } => {
                state.template = Some(template.clone());
                state.schedule = Some(schedule.clone());
                for moved in occurrences {
                    if let Some(m) = state.occurrences.get_mut(&moved.index) {
                        m.time = moved.time;
                    }
                }
                state.occurrences.retain(|_, m| !dropped.contains(&m.activity_id));
            }
            E::SeriesSubmitted {} => {
                state.status = SeriesStatus::Pending;
                state.rejection_reason = None;
            }
            E::SeriesPublished { approved_by, .. } => {
                state.status = SeriesStatus::Published;
                state.approved_by = *approved_by;
            }
            E::SeriesRejected { reason, .. } => {
                state.status = SeriesStatus::Rejected;
                state.rejection_reason = Some(reason.clone());
            }
            E::OccurrenceScheduled { activity_id, index, details, .. } => {
                state.occurrences.insert(*index, Materialized { activity_id: *activity_id, time: details.time });
            }
            E::OccurrenceSkipped { index, .. } => {
                state.skipped.insert(*index);
            }
            E::SeriesEnded { after, .. } => {
                state.status = SeriesStatus::Ended;
                state.ended_after = Some(*after);
            }
        }
        state
    }
}

fn create(
    state: &SeriesState,
    series_id: Uuid,
    template: SeriesTemplate,
    spec: ScheduleSpec,
    ctx: &Context,
) -> Result<Vec<SeriesEvent>, DomainError> {
    if !ctx.has(Role::Organiser) {
        return Err(DomainError::NotAnOrganiser);
    }
    if state.created {
        return Err(DomainError::SeriesAlreadyExists);
    }
    let anchor = ctx.now.with_timezone(&spec.timezone).date_naive();
    let schedule = Schedule::new(spec.rule, spec.timezone, spec.local_start, spec.duration_minutes, anchor)?;
    Ok(vec![SeriesEvent::SeriesDrafted { series_id, organiser_id: ctx.actor.id, template, schedule }])
}

/// One decision on an existing series.
struct Decision<'a> {
    state: &'a SeriesState,
    template: &'a SeriesTemplate,
    schedule: &'a Schedule,
    ctx: &'a Context,
}

type Decided = Result<Vec<SeriesEvent>, DomainError>;

impl Decision<'_> {
    fn status(&self) -> SeriesStatus {
        self.state.status
    }

    fn transition(&self, action: &'static str) -> DomainError {
        DomainError::SeriesTransition { from: self.status().as_str(), action }
    }

    fn organiser_only(&self) -> Result<(), DomainError> {
        if self.ctx.actor.id != self.state.organiser_id {
            return Err(DomainError::NotTheOrganiser);
        }
        Ok(())
    }

    fn moderator_only(&self) -> Result<(), DomainError> {
        if !self.ctx.has(Role::Moderator) {
            return Err(DomainError::NotAModerator);
        }
        Ok(())
    }

    fn not_ended(&self, action: &'static str) -> Result<(), DomainError> {
        if self.status() == SeriesStatus::Ended {
            return Err(self.transition(action));
        }
        Ok(())
    }

    /// The occurrence's time as an activity time range.
    fn time_of(occurrence: &Occurrence) -> Result<TimeRange, DomainError> {
        TimeRange::parse(occurrence.starts_at, occurrence.ends_at)
    }

    fn update(&self, patch: SeriesPatch) -> Decided {
        self.organiser_only()?;
        // As for an activity: a series under review does not change under the moderator.
        if matches!(self.status(), SeriesStatus::Pending | SeriesStatus::Ended) {
            return Err(self.transition("edit"));
        }
        let published = self.status() == SeriesStatus::Published;
        let mut template = self.template.clone();
        let mut changed: Vec<String> = Vec::new();
        let old = self.schedule;
        let rule = patch.rule.clone().unwrap_or_else(|| old.rule.clone());
        let timezone = patch.timezone.unwrap_or(old.timezone);
        let local_start = patch.local_start.unwrap_or(old.local_start);
        let duration = patch.duration_minutes.unwrap_or(old.duration_minutes);
        apply_template_patch!(patch, template, changed, published);
        for (field, differs) in [
            ("rule", rule != old.rule),
            ("timezone", timezone != old.timezone),
            ("local_start", local_start != old.local_start),
            ("duration_minutes", duration != old.duration_minutes),
        ] {
            if differs {
                changed.push(field.to_owned());
            }
        }
        if changed.is_empty() {
            return Ok(vec![]);
        }
        let schedule = Schedule::new(rule, timezone, local_start, duration, old.anchor)?;
        let mut occurrences = Vec::new();
        let mut dropped = Vec::new();
        for (index, m) in &self.state.occurrences {
            if self.state.skipped.contains(index) || m.time.starts_at() <= self.ctx.now {
                continue;
            }
            match schedule.occurrence(*index).filter(|o| o.starts_at > self.ctx.now) {
                Some(o) => occurrences.push(MovedOccurrence {
                    index: *index,
                    activity_id: m.activity_id,
                    time: Self::time_of(&o)?,
                }),
                None => dropped.push(m.activity_id),
            }
        }
        Ok(vec![SeriesEvent::SeriesUpdated { template, schedule, changed, occurrences, dropped }])
    }

    fn submit(&self) -> Decided {
        self.organiser_only()?;
        if self.template.visibility != Visibility::Public {
            return Err(DomainError::NotPublic);
        }
        if !matches!(self.status(), SeriesStatus::Draft | SeriesStatus::Rejected) {
            return Err(self.transition("submit"));
        }
        Ok(vec![SeriesEvent::SeriesSubmitted {}])
    }

    fn approve(&self) -> Decided {
        self.moderator_only()?;
        if self.status() != SeriesStatus::Pending {
            return Err(self.transition("approve"));
        }
        Ok(vec![SeriesEvent::SeriesPublished {
            organiser_id: self.state.organiser_id,
            visibility: self.template.visibility,
            approved_by: Some(self.ctx.actor.id),
        }])
    }

    fn reject(&self, reason: Reason) -> Decided {
        self.moderator_only()?;
        if self.status() != SeriesStatus::Pending {
            return Err(self.transition("reject"));
        }
        Ok(vec![SeriesEvent::SeriesRejected { organiser_id: self.state.organiser_id, reason }])
    }

    fn publish(&self) -> Decided {
        self.organiser_only()?;
        if self.template.visibility != Visibility::InviteOnly {
            return Err(DomainError::NotInviteOnly);
        }
        if !matches!(self.status(), SeriesStatus::Draft | SeriesStatus::Rejected) {
            return Err(self.transition("publish"));
        }
        Ok(vec![SeriesEvent::SeriesPublished {
            organiser_id: self.state.organiser_id,
            visibility: self.template.visibility,
            approved_by: None,
        }])
    }

    /// The next [`HORIZON_OCCURRENCES`] upcoming occurrences within [`HORIZON_DAYS`]
    /// (skipped ones and those after the end left out) that are not materialized yet.
    /// An ended series whose end date has passed refuses, which stops its daily timer.
    fn materialize(&self) -> Decided {
        if !self.ctx.is_system() {
            return Err(DomainError::NotTheSystem);
        }
        let now = self.ctx.now;
        let ended_after = self.state.ended_after;
        match self.status() {
            SeriesStatus::Published => {}
            SeriesStatus::Ended
                if ended_after.is_some_and(|a| now.with_timezone(&self.schedule.timezone).date_naive() <= a) => {}
            _ => return Err(self.transition("materialize")),
        }
        let horizon = now + Duration::days(HORIZON_DAYS);
        let mut events = Vec::new();
        let upcoming = self
            .schedule
            .occurrences()
            .filter(|o| o.starts_at > now)
            .take_while(|o| o.starts_at <= horizon && ended_after.is_none_or(|a| o.date <= a))
            .filter(|o| !self.state.skipped.contains(&o.index))
            .take(HORIZON_OCCURRENCES);
        for o in upcoming {
            if self.state.occurrences.contains_key(&o.index) {
                continue;
            }
            let time = Self::time_of(&o)?;
            events.push(SeriesEvent::OccurrenceScheduled {
                activity_id: occurrence_id(self.state.series_id, o.index),
                index: o.index,
                starts_at: o.starts_at,
                ends_at: o.ends_at,
                organiser_id: self.state.organiser_id,
                details: self.template.at(time),
                approved_by: self.state.approved_by,
            });
        }
        Ok(events)
    }

    fn skip(&self, date: NaiveDate) -> Decided {
        self.organiser_only()?;
        self.not_ended("skip an occurrence of")?;
        let Some(o) = self.schedule.occurrences().take_while(|o| o.date <= date).find(|o| o.date == date) else {
            return Err(DomainError::invalid("date", format!("the series has no occurrence on {date}")));
        };
        if self.state.skipped.contains(&o.index) {
            return Ok(vec![]);
        }
        let starts_at = self.state.occurrences.get(&o.index).map_or(o.starts_at, |m| m.time.starts_at());
        if starts_at <= self.ctx.now {
            return Err(DomainError::invalid("date", format!("the occurrence on {date} has already started")));
        }
        Ok(vec![SeriesEvent::OccurrenceSkipped {
            index: o.index,
            date,
            activity_id: self.state.occurrences.get(&o.index).map(|m| m.activity_id),
        }])
    }

    fn end(&self, after: NaiveDate) -> Decided {
        if self.ctx.actor.id != self.state.organiser_id && !self.ctx.has(Role::Moderator) {
            return Err(DomainError::NotTheOrganiser);
        }
        self.not_ended("end")?;
        let tz = self.schedule.timezone;
        let cancelled = self
            .state
            .occurrences
            .iter()
            .filter(|(index, m)| {
                !self.state.skipped.contains(index)
                    && m.time.starts_at() > self.ctx.now
                    && m.time.starts_at().with_timezone(&tz).date_naive() > after
            })
            .map(|(_, m)| m.activity_id)
            .collect();
        Ok(vec![SeriesEvent::SeriesEnded { after, ended_by: self.ctx.actor.id, cancelled }])
    }
}

impl AggregateEvent for SeriesEvent {
    type Aggregate = Series;
}

impl AggregateCommand for SeriesCommand {
    type Aggregate = Series;
}

fn describe_schedule(s: &Schedule) -> String {
    format!(
        "{} at {} {} for {} min from {}",
        s.rule,
        s.local_start.format("%H:%M"),
        s.timezone.name(),
        s.duration_minutes,
        s.anchor
    )
}

fn describe_template(t: &SeriesTemplate) -> String {
    format!("\"{}\" ({}), {} seats, {}", t.title, t.category.as_str(), t.capacity.get(), t.visibility.as_str())
}

fn describe_activity(id: Uuid) -> String {
    let shown = name(id);
    if shown == id.to_string() { format!("activity {}", &shown[..8]) } else { shown }
}

impl Describe for SeriesEvent {
    fn describe(&self) -> String {
        use SeriesEvent as E;
        match self {
            E::SeriesDrafted { series_id, organiser_id, template, schedule } => format!(
                "SeriesDrafted: {} by {}: {}, {}",
                name(*series_id),
                name(*organiser_id),
                describe_template(template),
                describe_schedule(schedule)
            ),
            E::SeriesUpdated { template, schedule, changed, occurrences, dropped } => {
                let moved: Vec<String> =
                    occurrences.iter().map(|m| format!("#{} to {}", m.index, describe_time(&m.time))).collect();
                format!(
                    "SeriesUpdated ({}): {}, {}; occurrences: {}; dropped: {}",
                    changed.join(", "),
                    describe_template(template),
                    describe_schedule(schedule),
                    if moved.is_empty() { "none".to_owned() } else { moved.join(", ") },
                    if dropped.is_empty() {
                        "none".to_owned()
                    } else {
                        dropped.iter().map(|id| describe_activity(*id)).collect::<Vec<_>>().join(", ")
                    }
                )
            }
            E::SeriesSubmitted {} => "SeriesSubmitted for review".to_owned(),
            E::SeriesPublished { approved_by, visibility, .. } => match approved_by {
                Some(moderator) => format!("SeriesPublished, approved by {}", name(*moderator)),
                None => format!("SeriesPublished by its organiser, {}", visibility.as_str()),
            },
            E::SeriesRejected { reason, .. } => format!("SeriesRejected: \"{reason}\""),
            E::OccurrenceScheduled { activity_id, index, details, .. } => format!(
                "OccurrenceScheduled #{index} as {}: {}",
                describe_activity(*activity_id),
                describe_details(details)
            ),
            E::OccurrenceSkipped { index, date, activity_id } => format!(
                "OccurrenceSkipped #{index} on {date}{}",
                activity_id.map_or_else(String::new, |id| format!(" (cancels {})", describe_activity(id)))
            ),
            E::SeriesEnded { after, ended_by, cancelled } => format!(
                "SeriesEnded after {after} by {}; cancels {}",
                name(*ended_by),
                if cancelled.is_empty() {
                    "nothing".to_owned()
                } else {
                    cancelled.iter().map(|id| describe_activity(*id)).collect::<Vec<_>>().join(", ")
                }
            ),
        }
    }
}

impl Describe for SeriesCommand {
    fn describe(&self) -> String {
        use SeriesCommand as C;
        match self {
            C::Create { series_id, template, schedule } => format!(
                "CreateSeries {}: {}, {} at {} {} for {} min",
                name(*series_id),
                describe_template(template),
                schedule.rule,
                schedule.local_start.format("%H:%M"),
                schedule.timezone.name(),
                schedule.duration_minutes
            ),
            C::Update { patch } => {
                let mut parts = Vec::new();
                if let Some(t) = &patch.title {
                    parts.push(format!("title \"{t}\""));
                }
                if let Some(c) = &patch.capacity {
                    parts.push(format!("capacity {}", c.get()));
                }
                if let Some(p) = &patch.price {
                    parts.push(format!("price {p}"));
                }
                if let Some(r) = &patch.rule {
                    parts.push(format!("rule {r}"));
                }
                if let Some(t) = &patch.local_start {
                    parts.push(format!("local start {}", t.format("%H:%M")));
                }
                if let Some(z) = &patch.timezone {
                    parts.push(format!("time zone {}", z.name()));
                }
                if let Some(d) = &patch.duration_minutes {
                    parts.push(format!("duration {d} min"));
                }
                format!("UpdateSeries: {}", if parts.is_empty() { "nothing".to_owned() } else { parts.join(", ") })
            }
            C::Submit => "SubmitSeries".to_owned(),
            C::Approve => "ApproveSeries".to_owned(),
            C::Reject { reason } => format!("RejectSeries: \"{reason}\""),
            C::Publish => "PublishSeries".to_owned(),
            C::Materialize => "MaterializeSeries".to_owned(),
            C::Skip { date } => format!("SkipOccurrence on {date}"),
            C::End { after } => format!("EndSeries after {after}"),
        }
    }
}
