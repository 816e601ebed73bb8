//! The activity aggregate — stream `activity-{id}`: details, moderation
//! lifecycle, media, bookings with waitlist and paid reservations, invitations
//! and the attendee list.
//!
//! Lifecycle: `draft → pending → published → completed`, `pending → rejected →
//! (edit) → pending`, invite-only activities go `draft → published` directly,
//! and `cancelled` is reachable from every non-final state.
//!
//! Bookings live in this stream so that capacity is checked under the same
//! optimistic lock as every other change: seats are never oversold.
//! `seats_taken` counts confirmed and reserved seats; every event that changes
//! it carries `seats_left` for projections.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::{Aggregate, Context, DomainEvent, Personal, Role};
use crate::errors::DomainError;
use crate::specs::fixtures::{name, names};
use crate::specs::when;
use crate::testkit::{AggregateCommand, AggregateEvent, Describe};
use crate::values::{
    AgeRange, Capacity, Category, Description, Email, Location, MediaFile, Money, PaymentRef, Reason, Tags, TimeRange,
    Title,
};

mod specs;
pub use specs::sections as spec_sections;

/// The activity aggregate (stream category `activity`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Activity;

/// How long a paid reservation holds its seats.
pub const RESERVATION_HOLD_MINUTES: i64 = 15;
/// The most media an activity may have.
pub const MAX_MEDIA: usize = 20;
/// The most invitations one `InviteGuests` may carry.
pub const MAX_INVITATIONS_PER_COMMAND: usize = 500;
/// How long before the start the organiser receives the attendee list.
pub const ATTENDEE_LIST_LEAD_HOURS: i64 = 1;

/// Who may discover and book an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Searchable and bookable by every member once approved by a moderator.
    Public,
    /// Published by the organiser directly; seats through invitations only.
    InviteOnly,
}

impl Visibility {
    /// The wire name (`public`, `invite_only`).
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::InviteOnly => "invite_only",
        }
    }
}

/// The series an activity is an occurrence of, and which one (0 = the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeriesLink {
    /// The series.
    pub series_id: Uuid,
    /// The occurrence's index in the series' rule (0 = the first occurrence).
    pub index: u32,
}

/// Everything an organiser describes about an activity, already parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityDetails {
    /// 3–120 characters.
    pub title: Title,
    /// At most 5,000 characters.
    pub description: Description,
    /// The search facet.
    pub category: Category,
    /// At most 10 tags.
    pub tags: Tags,
    /// `starts_at < ends_at`.
    pub time: TimeRange,
    /// 1–100,000 seats.
    pub capacity: Capacity,
    /// The price per seat; an amount of 0 means free.
    pub price: Money,
    /// Public or invite-only.
    pub visibility: Visibility,
    /// A venue or a URL.
    pub location: Location,
    /// For children's activities: the ages admitted (0–18).
    pub age_range: Option<AgeRange>,
    /// Whether bookings beyond capacity join a waitlist (else they are refused).
    pub waitlist: bool,
}

/// Unparsed activity details, as a request carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct RawActivityDetails {
    /// Title text.
    pub title: String,
    /// Description text.
    pub description: String,
    /// Category name.
    pub category: String,
    /// Tag texts.
    pub tags: Vec<String>,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Seats.
    pub capacity: i64,
    /// Price per seat in minor units (0 = free).
    pub price_amount: i64,
    /// ISO 4217 currency code.
    pub price_currency: String,
    /// Visibility.
    pub visibility: Visibility,
    /// Where.
    pub location: RawLocation,
    /// Youngest age admitted, if any.
    pub age_min: Option<i64>,
    /// Oldest age admitted, if any.
    pub age_max: Option<i64>,
    /// Waitlist on or off.
    pub waitlist: bool,
}

/// An unparsed location.
#[derive(Debug, Clone, PartialEq)]
pub enum RawLocation {
    /// A venue.
    Venue {
        /// Name.
        name: String,
        /// Address.
        address: String,
        /// Latitude.
        lat: f64,
        /// Longitude.
        lng: f64,
    },
    /// An online place.
    Online {
        /// URL.
        url: String,
    },
}

impl RawLocation {
    /// Parses into a [`Location`].
    pub fn parse(&self) -> Result<Location, DomainError> {
        match self {
            RawLocation::Venue { name, address, lat, lng } => Location::venue(name, address, *lat, *lng),
            RawLocation::Online { url } => Location::online(url),
        }
    }
}

impl ActivityDetails {
    /// Parses every field, failing on the first one out of its limits.
    ///
    /// An age range needs both bounds; one alone is refused.
    pub fn parse(raw: RawActivityDetails) -> Result<Self, DomainError> {
        let age_range = match (raw.age_min, raw.age_max) {
            (None, None) => None,
            (Some(min), Some(max)) => Some(AgeRange::parse(min, max)?),
            (None, Some(_)) => return Err(DomainError::invalid("age_min", "is required with age_max")),
            (Some(_), None) => return Err(DomainError::invalid("age_max", "is required with age_min")),
        };
        Ok(ActivityDetails {
            title: Title::parse(&raw.title)?,
            description: Description::parse(&raw.description)?,
            category: Category::parse(&raw.category)?,
            tags: Tags::parse(&raw.tags)?,
            time: TimeRange::parse(raw.starts_at, raw.ends_at)?,
            capacity: Capacity::parse(raw.capacity)?,
            price: Money::parse(raw.price_amount, &raw.price_currency)?,
            visibility: raw.visibility,
            location: raw.location.parse()?,
            age_range,
            waitlist: raw.waitlist,
        })
    }

    /// Whether seats cost money (and bookings go through a reservation).
    pub fn is_paid(&self) -> bool {
        !self.price.is_zero()
    }
}

/// A partial change of details (`PATCH`): `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityPatch {
    /// New title.
    pub title: Option<Title>,
    /// New description.
    pub description: Option<Description>,
    /// New category.
    pub category: Option<Category>,
    /// New tags.
    pub tags: Option<Tags>,
    /// New time (draft or rejected only; published activities are rescheduled).
    pub time: Option<TimeRange>,
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
}

impl ActivityPatch {
    /// A patch setting every field but the time to `details`' values.
    pub fn every_field_of(details: &ActivityDetails) -> Self {
        let d = details.clone();
        ActivityPatch {
            title: Some(d.title),
            description: Some(d.description),
            category: Some(d.category),
            tags: Some(d.tags),
            time: None,
            capacity: Some(d.capacity),
            price: Some(d.price),
            visibility: Some(d.visibility),
            location: Some(d.location),
            age_range: Some(d.age_range),
            waitlist: Some(d.waitlist),
        }
    }
}

/// Applies the fields an activity shares with a series' template from `$patch` (an
/// `Option` per field) to `$target`, pushing each changed field's name onto
/// `$changed`. Once `$published`, the fields a published activity (or series) locks
/// are refused with `FieldLockedAfterPublish` (a `return` from the caller). The one
/// list of those fields and their locks, for activities and series alike.
macro_rules! apply_template_patch {
    ($patch:expr, $target:expr, $changed:expr, $published:expr) => {{
        let patch = $patch;
        macro_rules! field {
            ($field:ident, $locked:expr) => {
                if let Some(value) = patch.$field
                    && value != $target.$field
                {
                    if $published && $locked {
                        return Err(DomainError::FieldLockedAfterPublish { field: stringify!($field) });
                    }
                    $target.$field = value;
                    $changed.push(stringify!($field).to_owned());
                }
            };
        }
        field!(title, false);
        field!(description, false);
        field!(tags, false);
        field!(capacity, false);
        field!(category, true);
        field!(price, true);
        field!(visibility, true);
        field!(location, true);
        field!(age_range, true);
        field!(waitlist, true);
    }};
}
pub(crate) use apply_template_patch;

/// Where an activity is in its lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityStatus {
    /// Being written by its organiser.
    #[default]
    Draft,
    /// Submitted for review.
    Pending,
    /// Visible (public) or open to invitees (invite-only); bookable.
    Published,
    /// Refused by a moderator; the organiser may edit and resubmit.
    Rejected,
    /// Called off (final).
    Cancelled,
    /// Took place (final).
    Completed,
}

impl ActivityStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::Draft => "draft",
            ActivityStatus::Pending => "pending",
            ActivityStatus::Published => "published",
            ActivityStatus::Rejected => "rejected",
            ActivityStatus::Cancelled => "cancelled",
            ActivityStatus::Completed => "completed",
        }
    }

    /// Whether nothing can happen to the activity any more.
    pub fn is_final(self) -> bool {
        matches!(self, ActivityStatus::Cancelled | ActivityStatus::Completed)
    }
}

/// A child a booking is for, with the birth date the handler looked up on the member's profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookedChild {
    /// The child's id on the member's profile.
    pub child_id: Uuid,
    /// Its birth date, to check the age range.
    pub birth_date: NaiveDate,
}

/// One invitation to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationRequest {
    /// The invitation's id (also the id of the booking it becomes once accepted).
    pub invitation_id: Uuid,
    /// The invited address.
    pub email: Email,
}

/// One invitation as recorded in `GuestsInvited`: the address is personal data, keyed
/// by the address itself (forgetting the member who owns it shreds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitedGuest {
    /// The invitation's id (also the id of the booking it becomes once accepted).
    pub invitation_id: Uuid,
    /// The invited address, or forgotten.
    pub email: Personal<Email>,
}

impl From<InvitationRequest> for InvitedGuest {
    fn from(request: InvitationRequest) -> Self {
        InvitedGuest { invitation_id: request.invitation_id, email: request.email.into() }
    }
}

/// What an organiser, a member, a moderator or the scheduler asks of an activity.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivityCommand {
    /// `CreateActivity` (organiser): a new draft.
    Create {
        /// The new activity's id (the stream id).
        activity_id: Uuid,
        /// Its details.
        details: ActivityDetails,
    },
    /// `UpdateActivityDetails` (organiser).
    UpdateDetails {
        /// The fields to change.
        patch: ActivityPatch,
    },
    /// `SubmitActivity` (organiser, public activities): ask for review.
    Submit,
    /// `ApproveActivity` (moderator): publish a pending activity.
    Approve,
    /// `RejectActivity` (moderator).
    Reject {
        /// Why, shown to the organiser.
        reason: Reason,
    },
    /// `PublishActivity` (organiser, invite-only activities).
    Publish,
    /// `RescheduleActivity` (organiser).
    Reschedule {
        /// The new time.
        time: TimeRange,
    },
    /// `CancelActivity` (organiser or moderator): releases every booking.
    Cancel {
        /// Why, shown to attendees.
        reason: Reason,
    },
    /// `AttachMedia` (organiser): a photo or video already stored in the blob store.
    AttachMedia {
        /// The media's id.
        media_id: Uuid,
        /// Kind, content type and size.
        file: MediaFile,
    },
    /// `CompleteActivity` (scheduler, at `ends_at`).
    Complete,
    /// `BookSeats` (the acting member).
    BookSeats {
        /// The new booking's id.
        booking_id: Uuid,
        /// Seats wanted (at least one, at least one per child).
        seats: u32,
        /// Children attending, with their birth dates.
        children: Vec<BookedChild>,
    },
    /// `ConfirmPayment` (the payment provider's signed webhook, as the system): the
    /// member only reports a reference (the `payment` aggregate), never confirms.
    ConfirmPayment {
        /// The reserved booking.
        booking_id: Uuid,
        /// The provider's reference.
        payment_ref: PaymentRef,
        /// The amount paid; must equal the amount due, currency included (a
        /// confirmation that does not report it is refused).
        amount: Option<Money>,
    },
    /// `FailPayment` (the payment webhook, as the system): the payment failed, the
    /// reservation is released as if it had expired.
    FailPayment {
        /// The reserved booking.
        booking_id: Uuid,
    },
    /// `ExpireReservation` (scheduler, 15 minutes after the reservation).
    ExpireReservation {
        /// The reserved booking.
        booking_id: Uuid,
    },
    /// `CancelBooking` (the booking's member, before the start).
    CancelBooking {
        /// The booking.
        booking_id: Uuid,
    },
    /// `InviteGuests` (organiser, invite-only, published, before the start).
    InviteGuests {
        /// 1–500 invitations.
        invitations: Vec<InvitationRequest>,
    },
    /// `AcceptInvitation` (the acting member, whose email the handler matched).
    AcceptInvitation {
        /// The invitation.
        invitation_id: Uuid,
    },
    /// `DeclineInvitation` (the acting member).
    DeclineInvitation {
        /// The invitation.
        invitation_id: Uuid,
    },
    /// `SendAttendeeList` (scheduler, one hour before the start).
    SendAttendeeList,
    /// `CreateOccurrence` (system): an occurrence of a published series becomes a
    /// published activity (drafted and published at once: the series was approved).
    CreateOccurrence {
        /// The occurrence's activity id (derived from the series id and the index).
        activity_id: Uuid,
        /// The series' organiser.
        organiser_id: Uuid,
        /// Which series and occurrence.
        series: SeriesLink,
        /// The series' template at the occurrence's time.
        details: ActivityDetails,
        /// The moderator who approved the series (public series).
        approved_by: Option<Uuid>,
    },
    /// `UpdateOccurrence` (system): a series update reaches an occurrence; one with
    /// live bookings keeps its time and details.
    UpdateOccurrence {
        /// The series' template at the occurrence's (new) time.
        details: ActivityDetails,
    },
    /// `CancelOccurrence` (system): a skipped occurrence, one after a series' end, or
    /// one a series update dropped (`only_unbooked`: spared if it has live bookings).
    CancelOccurrence {
        /// Why, shown to the attendees.
        reason: Reason,
        /// Leave the occurrence alone if it has live bookings.
        only_unbooked: bool,
    },
}

/// A booking released by a cancellation of the activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedBooking {
    /// The booking.
    pub booking_id: Uuid,
    /// Its member, to notify.
    pub member_id: Uuid,
    /// Its seats.
    pub seats: u32,
    /// What it was before the release.
    pub status: BookingStatus,
}

/// One line of the attendee list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendeeLine {
    /// The booking.
    pub booking_id: Uuid,
    /// The booking member.
    pub member_id: Uuid,
    /// Seats held.
    pub seats: u32,
    /// Children attending.
    pub children: Vec<Uuid>,
}

/// What happened to an activity. Serialized as `{"type": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ActivityEvent {
    /// A draft was created.
    ActivityDrafted {
        /// The activity.
        activity_id: Uuid,
        /// Its organiser.
        organiser_id: Uuid,
        /// Its details.
        details: ActivityDetails,
        /// The series it is an occurrence of (absent for a one-off activity).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        series: Option<SeriesLink>,
    },
    /// Details changed; carries the whole new details and the names of the changed fields.
    ActivityDetailsUpdated {
        /// The details after the change.
        details: ActivityDetails,
        /// The changed fields (`title`, `capacity`, …).
        changed: Vec<String>,
        /// Seats left after the change.
        seats_left: u32,
    },
    /// Submitted for review (now pending).
    ActivitySubmitted {},
    /// Published (by approval or directly); timers start from `time`.
    ActivityPublished {
        /// The organiser (to notify).
        organiser_id: Uuid,
        /// When it happens.
        time: TimeRange,
        /// Public or invite-only.
        visibility: Visibility,
        /// The approving moderator, for public activities.
        approved_by: Option<Uuid>,
        /// The series it is an occurrence of (absent for a one-off activity).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        series: Option<SeriesLink>,
    },
    /// Refused by a moderator.
    ActivityRejected {
        /// The organiser (to notify).
        organiser_id: Uuid,
        /// Why.
        reason: Reason,
    },
    /// Moved in time; timers move and attendees are notified.
    ActivityRescheduled {
        /// The new time.
        time: TimeRange,
        /// The previous time.
        previous: TimeRange,
    },
    /// Called off; every live booking is released.
    ActivityCancelled {
        /// Why.
        reason: Reason,
        /// Who cancelled.
        cancelled_by: Uuid,
        /// The bookings released (to notify their members).
        released: Vec<ReleasedBooking>,
    },
    /// A photo or video was attached.
    MediaAttached {
        /// The media.
        media_id: Uuid,
        /// Kind, content type, size.
        #[serde(flatten)]
        file: MediaFile,
    },
    /// The activity took place.
    ActivityCompleted {
        /// Seats confirmed at the end.
        seats_taken: u32,
    },
    /// Seats are held for a paid booking until `expires_at`.
    BookingReserved {
        /// The booking.
        booking_id: Uuid,
        /// Its member.
        member_id: Uuid,
        /// Seats held.
        seats: u32,
        /// Children attending.
        children: Vec<Uuid>,
        /// Price × seats.
        amount_due: Money,
        /// When the hold lapses.
        expires_at: DateTime<Utc>,
        /// Seats left after the hold.
        seats_left: u32,
    },
    /// A booking holds its seats for good.
    BookingConfirmed {
        /// The booking.
        booking_id: Uuid,
        /// Its member.
        member_id: Uuid,
        /// Seats held.
        seats: u32,
        /// Children attending.
        children: Vec<Uuid>,
        /// Seats left after the confirmation.
        seats_left: u32,
        /// The payment, for paid activities.
        payment_ref: Option<PaymentRef>,
        /// The invitation it came from, if any.
        invitation_id: Option<Uuid>,
    },
    /// The activity was full: the booking waits for seats.
    WaitlistJoined {
        /// The booking.
        booking_id: Uuid,
        /// Its member.
        member_id: Uuid,
        /// Seats wanted.
        seats: u32,
        /// Children attending.
        children: Vec<Uuid>,
        /// Its place in the waitlist (1 = next).
        position: u32,
    },
    /// A waitlisted booking now fits; a `BookingConfirmed` (free) or `BookingReserved` (paid) follows.
    WaitlistPromoted {
        /// The booking.
        booking_id: Uuid,
        /// Its member.
        member_id: Uuid,
        /// Seats.
        seats: u32,
    },
    /// The member cancelled a booking (confirmed, reserved or waitlisted).
    BookingCancelled {
        /// The booking.
        booking_id: Uuid,
        /// Its member.
        member_id: Uuid,
        /// Its seats.
        seats: u32,
        /// Seats given back (0 for a waitlisted booking).
        released_seats: u32,
        /// Seats left after the release (before any promotion that follows).
        seats_left: u32,
    },
    /// A reservation lapsed unpaid (not paid in time, or the payment failed); its seats
    /// are released.
    ReservationExpired {
        /// The booking.
        booking_id: Uuid,
        /// Its member.
        member_id: Uuid,
        /// Seats released.
        seats: u32,
        /// Seats left after the release.
        seats_left: u32,
    },
    /// Invitations were sent. Personal: `invitations[].email`.
    GuestsInvited {
        /// The new invitations.
        invitations: Vec<InvitedGuest>,
    },
    /// An invitee accepted; a booking event for `booking_id` follows.
    InvitationAccepted {
        /// The invitation.
        invitation_id: Uuid,
        /// The accepting member.
        member_id: Uuid,
        /// The booking created for it.
        booking_id: Uuid,
    },
    /// An invitee declined.
    InvitationDeclined {
        /// The invitation.
        invitation_id: Uuid,
        /// The declining member.
        member_id: Uuid,
    },
    /// The organiser was sent the attendee list.
    AttendeeListSent {
        /// The recipient.
        organiser_id: Uuid,
        /// Confirmed bookings.
        attendees: Vec<AttendeeLine>,
        /// Total confirmed seats.
        seats_confirmed: u32,
    },
}

impl DomainEvent for ActivityEvent {
    fn event_type(&self) -> &'static str {
        use ActivityEvent as E;
        match self {
            E::ActivityDrafted { .. } => "ActivityDrafted",
            E::ActivityDetailsUpdated { .. } => "ActivityDetailsUpdated",
            E::ActivitySubmitted { .. } => "ActivitySubmitted",
            E::ActivityPublished { .. } => "ActivityPublished",
            E::ActivityRejected { .. } => "ActivityRejected",
            E::ActivityRescheduled { .. } => "ActivityRescheduled",
            E::ActivityCancelled { .. } => "ActivityCancelled",
            E::MediaAttached { .. } => "MediaAttached",
            E::ActivityCompleted { .. } => "ActivityCompleted",
            E::BookingReserved { .. } => "BookingReserved",
            E::BookingConfirmed { .. } => "BookingConfirmed",
            E::WaitlistJoined { .. } => "WaitlistJoined",
            E::WaitlistPromoted { .. } => "WaitlistPromoted",
            E::BookingCancelled { .. } => "BookingCancelled",
            E::ReservationExpired { .. } => "ReservationExpired",
            E::GuestsInvited { .. } => "GuestsInvited",
            E::InvitationAccepted { .. } => "InvitationAccepted",
            E::InvitationDeclined { .. } => "InvitationDeclined",
            E::AttendeeListSent { .. } => "AttendeeListSent",
        }
    }

    fn personal_fields(&self) -> &'static [&'static str] {
        match self {
            ActivityEvent::GuestsInvited { .. } => &["invitations[].email"],
            _ => &[],
        }
    }

    fn personal_data_keyed_by_address(&self) -> bool {
        matches!(self, ActivityEvent::GuestsInvited { .. })
    }
}

/// Where a booking stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// Seats held awaiting payment.
    Reserved,
    /// Seats held.
    Confirmed,
    /// Waiting for seats.
    Waitlisted,
    /// Cancelled by its member.
    Cancelled,
    /// The reservation lapsed unpaid.
    Expired,
    /// Released by the activity's cancellation.
    Released,
}

impl BookingStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Reserved => "reserved",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Waitlisted => "waitlisted",
            BookingStatus::Cancelled => "cancelled",
            BookingStatus::Expired => "expired",
            BookingStatus::Released => "released",
        }
    }

    /// Whether the booking still counts (holds or waits for seats).
    pub fn is_live(self) -> bool {
        matches!(self, BookingStatus::Reserved | BookingStatus::Confirmed | BookingStatus::Waitlisted)
    }

    /// Whether the booking holds seats.
    pub fn holds_seats(self) -> bool {
        matches!(self, BookingStatus::Reserved | BookingStatus::Confirmed)
    }
}

/// A booking as the activity knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// The booking member.
    pub member_id: Uuid,
    /// Seats.
    pub seats: u32,
    /// Children attending.
    pub children: Vec<Uuid>,
    /// Where it stands.
    pub status: BookingStatus,
    /// For reservations: when the hold lapses.
    pub reserved_until: Option<DateTime<Utc>>,
    /// For reservations: what to pay.
    pub amount_due: Option<Money>,
    /// The invitation it came from.
    pub invitation_id: Option<Uuid>,
    /// The payment that confirmed it, for paid activities.
    pub payment_ref: Option<PaymentRef>,
}

/// An invitation's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    /// Not answered yet.
    Pending,
    /// Accepted by `member_id`.
    Accepted,
    /// Declined.
    Declined,
}

/// An invitation as the activity knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The invited address (forgotten once its owner was).
    pub email: Personal<Email>,
    /// The answer so far.
    pub status: InvitationStatus,
    /// Who answered.
    pub member_id: Option<Uuid>,
}

/// The folded activity stream (serializable for snapshots only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivityState {
    /// Whether `ActivityDrafted` happened.
    pub created: bool,
    /// The activity's id.
    pub activity_id: Uuid,
    /// Its organiser.
    pub organiser_id: Uuid,
    /// Lifecycle status (`Draft` also before creation: check `created`).
    pub status: ActivityStatus,
    /// The details (`None` before creation).
    pub details: Option<ActivityDetails>,
    /// Seats held by confirmed and reserved bookings.
    pub seats_taken: u32,
    /// Every booking ever made, by id.
    pub bookings: BTreeMap<Uuid, Booking>,
    /// Waitlisted booking ids, first come first served.
    pub waitlist: Vec<Uuid>,
    /// Invitations by id.
    pub invitations: BTreeMap<Uuid, Invitation>,
    /// Attached media, in order.
    pub media: Vec<(Uuid, MediaFile)>,
    /// Whether the attendee list went out for the current schedule.
    pub attendee_list_sent: bool,
    /// The last rejection's reason.
    pub rejection_reason: Option<Reason>,
    /// The series it is an occurrence of, if any.
    pub series: Option<SeriesLink>,
}

impl ActivityState {
    /// The capacity (0 before creation).
    pub fn capacity(&self) -> u32 {
        self.details.as_ref().map_or(0, |d| d.capacity.get())
    }

    /// Seats neither confirmed nor reserved.
    pub fn seats_left(&self) -> u32 {
        self.capacity().saturating_sub(self.seats_taken)
    }

    /// The member's live booking, if any.
    pub fn live_booking_of(&self, member_id: Uuid) -> Option<(Uuid, &Booking)> {
        self.bookings.iter().find(|(_, b)| b.member_id == member_id && b.status.is_live()).map(|(id, b)| (*id, b))
    }
}

impl Aggregate for Activity {
    const CATEGORY: &'static str = "activity";
    /// 2: invited addresses are sealed in snapshots (version 1 held them in clear).
    const STATE_VERSION: u32 = 2;
    const PERSONAL_STATE: &'static [&'static str] = &["invitations{}.email"];
    const PERSONAL_STATE_BY_ADDRESS: bool = true;
    type State = ActivityState;
    type Command = ActivityCommand;
    type Event = ActivityEvent;

    fn decide(
        state: &ActivityState,
        command: ActivityCommand,
        ctx: &Context,
    ) -> Result<Vec<ActivityEvent>, DomainError> {
        use ActivityCommand as C;
        if let C::Create { activity_id, details } = command {
            return create(state, activity_id, details, ctx);
        }
        if let C::CreateOccurrence { activity_id, organiser_id, series, details, approved_by } = command {
            return create_occurrence(state, activity_id, organiser_id, series, details, approved_by, ctx);
        }
        let Some(details) = state.details.as_ref().filter(|_| state.created) else {
            return Err(DomainError::ActivityNotFound);
        };
        let d = Decision { state, details, ctx };
        match command {
            C::Create { .. } => Err(DomainError::ActivityAlreadyExists),
            C::CreateOccurrence { .. } => Ok(vec![]),
            C::UpdateOccurrence { details } => d.update_occurrence(details),
            C::CancelOccurrence { reason, only_unbooked } => d.cancel_occurrence(reason, only_unbooked),
            C::UpdateDetails { patch } => d.update_details(patch),
            C::Submit => d.submit(),
            C::Approve => d.approve(),
            C::Reject { reason } => d.reject(reason),
            C::Publish => d.publish(),
            C::Reschedule { time } => d.reschedule(time),
            C::Cancel { reason } => d.cancel(reason),
            C::AttachMedia { media_id, file } => d.attach_media(media_id, file),
            C::Complete => d.complete(),
            C::BookSeats { booking_id, seats, children } => d.book_seats(booking_id, seats, children),
            C::ConfirmPayment { booking_id, payment_ref, amount } => d.confirm_payment(booking_id, payment_ref, amount),
            C::FailPayment { booking_id } => d.fail_payment(booking_id),
            C::ExpireReservation { booking_id } => d.expire_reservation(booking_id),
            C::CancelBooking { booking_id } => d.cancel_booking(booking_id),
            C::InviteGuests { invitations } => d.invite_guests(invitations),
            C::AcceptInvitation { invitation_id } => d.accept_invitation(invitation_id),
            C::DeclineInvitation { invitation_id } => d.decline_invitation(invitation_id),
            C::SendAttendeeList => d.send_attendee_list(),
        }
    }

    fn evolve(mut state: ActivityState, event: &ActivityEvent) -> ActivityState {
        use ActivityEvent as E;
        match event {
            E::ActivityDrafted { activity_id, organiser_id, details, series } => {
                state.created = true;
                state.series = *series;
                state.activity_id = *activity_id;
                state.organiser_id = *organiser_id;
                state.status = ActivityStatus::Draft;
                state.details = Some(details.clone());
            }
            E::ActivityDetailsUpdated { details, .. } => state.details = Some(details.clone()),
            E::ActivitySubmitted {} => {
                state.status = ActivityStatus::Pending;
                state.rejection_reason = None;
            }
            E::ActivityPublished { .. } => state.status = ActivityStatus::Published,
            E::ActivityRejected { reason, .. } => {
                state.status = ActivityStatus::Rejected;
                state.rejection_reason = Some(reason.clone());
            }
            E::ActivityRescheduled { time, .. } => {
                if let Some(details) = state.details.as_mut() {
                    details.time = *time;
                }
                state.attendee_list_sent = false;
            }
            E::ActivityCancelled { .. } => {
                state.status = ActivityStatus::Cancelled;
                for booking in state.bookings.values_mut() {
                    if booking.status.is_live() {
                        booking.status = BookingStatus::Released;
                    }
                }
                state.waitlist.clear();
                state.seats_taken = 0;
            }
            E::MediaAttached { media_id, file } => state.media.push((*media_id, file.clone())),
            E::ActivityCompleted { .. } => state.status = ActivityStatus::Completed,
            E::BookingReserved { booking_id, member_id, seats, children, amount_due, expires_at, .. } => {
                let previous = state.bookings.get(booking_id);
                let invitation_id = invitation_of(&state, *booking_id);
                if !previous.is_some_and(|b| b.status.holds_seats()) {
                    state.seats_taken = state.seats_taken.saturating_add(*seats);
                }
                state.bookings.insert(
                    *booking_id,
                    Booking {
                        member_id: *member_id,
                        seats: *seats,
                        children: children.clone(),
                        status: BookingStatus::Reserved,
                        reserved_until: Some(*expires_at),
                        amount_due: Some(amount_due.clone()),
                        invitation_id,
                        payment_ref: None,
                    },
                );
            }
            E::BookingConfirmed { booking_id, member_id, seats, children, invitation_id, payment_ref, .. } => {
                let previous = state.bookings.get(booking_id);
                if !previous.is_some_and(|b| b.status.holds_seats()) {
                    state.seats_taken = state.seats_taken.saturating_add(*seats);
                }
                let amount_due = previous.and_then(|b| b.amount_due.clone());
                let invitation_id = invitation_id.or(invitation_of(&state, *booking_id));
                state.bookings.insert(
                    *booking_id,
                    Booking {
                        member_id: *member_id,
                        seats: *seats,
                        children: children.clone(),
                        status: BookingStatus::Confirmed,
                        reserved_until: None,
                        amount_due,
                        invitation_id,
                        payment_ref: payment_ref.clone(),
                    },
                );
            }
            E::WaitlistJoined { booking_id, member_id, seats, children, .. } => {
                let invitation_id = invitation_of(&state, *booking_id);
                state.bookings.insert(
                    *booking_id,
                    Booking {
                        member_id: *member_id,
                        seats: *seats,
                        children: children.clone(),
                        status: BookingStatus::Waitlisted,
                        reserved_until: None,
                        amount_due: None,
                        invitation_id,
                        payment_ref: None,
                    },
                );
                state.waitlist.push(*booking_id);
            }
            E::WaitlistPromoted { booking_id, .. } => state.waitlist.retain(|id| id != booking_id),
            E::BookingCancelled { booking_id, .. } => {
                release(&mut state, *booking_id, BookingStatus::Cancelled);
            }
            E::ReservationExpired { booking_id, .. } => {
                release(&mut state, *booking_id, BookingStatus::Expired);
            }
            E::GuestsInvited { invitations } => {
                for invitation in invitations {
                    state.invitations.insert(
                        invitation.invitation_id,
                        Invitation {
                            email: invitation.email.clone(),
                            status: InvitationStatus::Pending,
                            member_id: None,
                        },
                    );
                }
            }
            E::InvitationAccepted { invitation_id, member_id, .. } => {
                if let Some(invitation) = state.invitations.get_mut(invitation_id) {
                    invitation.status = InvitationStatus::Accepted;
                    invitation.member_id = Some(*member_id);
                }
            }
            E::InvitationDeclined { invitation_id, member_id } => {
                if let Some(invitation) = state.invitations.get_mut(invitation_id) {
                    invitation.status = InvitationStatus::Declined;
                    invitation.member_id = Some(*member_id);
                }
            }
            E::AttendeeListSent { .. } => state.attendee_list_sent = true,
        }
        state
    }
}

/// A booking made by accepting an invitation has the invitation's id.
fn invitation_of(state: &ActivityState, booking_id: Uuid) -> Option<Uuid> {
    state.invitations.contains_key(&booking_id).then_some(booking_id)
}

/// Ends a live booking, giving back its seats and its waitlist place.
fn release(state: &mut ActivityState, booking_id: Uuid, status: BookingStatus) {
    if let Some(booking) = state.bookings.get_mut(&booking_id) {
        if booking.status.holds_seats() {
            state.seats_taken = state.seats_taken.saturating_sub(booking.seats);
        }
        booking.status = status;
        booking.reserved_until = None;
    }
    state.waitlist.retain(|id| *id != booking_id);
}

fn create(
    state: &ActivityState,
    activity_id: Uuid,
    details: ActivityDetails,
    ctx: &Context,
) -> Result<Vec<ActivityEvent>, DomainError> {
    if !ctx.has(Role::Organiser) {
        return Err(DomainError::NotAnOrganiser);
    }
    if state.created {
        return Err(DomainError::ActivityAlreadyExists);
    }
    starts_in_the_future(details.time, ctx)?;
    Ok(vec![ActivityEvent::ActivityDrafted { activity_id, organiser_id: ctx.actor.id, details, series: None }])
}

/// A series occurrence: drafted and published in one decision, by the system. Creating
/// it again (a replay, a second scheduler) decides nothing.
fn create_occurrence(
    state: &ActivityState,
    activity_id: Uuid,
    organiser_id: Uuid,
    series: SeriesLink,
    details: ActivityDetails,
    approved_by: Option<Uuid>,
    ctx: &Context,
) -> Result<Vec<ActivityEvent>, DomainError> {
    if !ctx.is_system() {
        return Err(DomainError::NotTheSystem);
    }
    if state.created {
        return Ok(vec![]);
    }
    starts_in_the_future(details.time, ctx)?;
    let (time, visibility) = (details.time, details.visibility);
    Ok(vec![
        ActivityEvent::ActivityDrafted { activity_id, organiser_id, details, series: Some(series) },
        ActivityEvent::ActivityPublished { organiser_id, time, visibility, approved_by, series: Some(series) },
    ])
}

fn starts_in_the_future(time: TimeRange, ctx: &Context) -> Result<(), DomainError> {
    if time.starts_at() <= ctx.now {
        return Err(DomainError::invalid("starts_at", "must be in the future"));
    }
    Ok(())
}

/// One decision on an existing activity.
struct Decision<'a> {
    state: &'a ActivityState,
    details: &'a ActivityDetails,
    ctx: &'a Context,
}

type Decided = Result<Vec<ActivityEvent>, DomainError>;

impl Decision<'_> {
    fn status(&self) -> ActivityStatus {
        self.state.status
    }

    fn transition(&self, action: &'static str) -> DomainError {
        DomainError::InvalidTransition { from: self.status().as_str(), action }
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

    fn system_only(&self) -> Result<(), DomainError> {
        if !self.ctx.is_system() {
            return Err(DomainError::NotTheSystem);
        }
        Ok(())
    }

    fn not_started(&self) -> Result<(), DomainError> {
        if self.ctx.now >= self.details.time.starts_at() {
            return Err(DomainError::ActivityStarted);
        }
        Ok(())
    }

    fn update_details(&self, patch: ActivityPatch) -> Decided {
        self.organiser_only()?;
        let published = match self.status() {
            ActivityStatus::Draft | ActivityStatus::Rejected => false,
            ActivityStatus::Published => true,
            _ => return Err(self.transition("edit")),
        };
        let old = self.details;
        let mut new = old.clone();
        let mut changed: Vec<String> = Vec::new();
        if let Some(time) = patch.time
            && time != old.time
        {
            if published {
                return Err(DomainError::TimeChangeNeedsReschedule);
            }
            starts_in_the_future(time, self.ctx)?;
            new.time = time;
            changed.push("time".to_owned());
        }
        apply_template_patch!(patch, new, changed, published);
        if changed.is_empty() {
            return Ok(vec![]);
        }
        let capacity = new.capacity.get();
        if capacity < self.state.seats_taken {
            return Err(DomainError::CapacityBelowSeatsTaken { capacity, seats_taken: self.state.seats_taken });
        }
        let seats_left = capacity - self.state.seats_taken;
        let mut events = vec![ActivityEvent::ActivityDetailsUpdated { details: new.clone(), changed, seats_left }];
        if published && capacity > old.capacity.get() {
            events.extend(promote(self.state, &new, self.state.seats_taken, None, self.ctx.now));
        }
        Ok(events)
    }

    fn submit(&self) -> Decided {
        self.organiser_only()?;
        if self.details.visibility != Visibility::Public {
            return Err(DomainError::NotPublic);
        }
        if !matches!(self.status(), ActivityStatus::Draft | ActivityStatus::Rejected) {
            return Err(self.transition("submit"));
        }
        self.not_started()?;
        Ok(vec![ActivityEvent::ActivitySubmitted {}])
    }

    fn approve(&self) -> Decided {
        self.moderator_only()?;
        if self.status() != ActivityStatus::Pending {
            return Err(self.transition("approve"));
        }
        self.not_started()?;
        Ok(vec![ActivityEvent::ActivityPublished {
            organiser_id: self.state.organiser_id,
            time: self.details.time,
            visibility: self.details.visibility,
            approved_by: Some(self.ctx.actor.id),
            series: self.state.series,
        }])
    }

    fn reject(&self, reason: Reason) -> Decided {
        self.moderator_only()?;
        if self.status() != ActivityStatus::Pending {
            return Err(self.transition("reject"));
        }
        Ok(vec![ActivityEvent::ActivityRejected { organiser_id: self.state.organiser_id, reason }])
    }

    fn publish(&self) -> Decided {
        self.organiser_only()?;
        if self.details.visibility != Visibility::InviteOnly {
            return Err(DomainError::NotInviteOnly);
        }
        if !matches!(self.status(), ActivityStatus::Draft | ActivityStatus::Rejected) {
            return Err(self.transition("publish"));
        }
        self.not_started()?;
        Ok(vec![ActivityEvent::ActivityPublished {
            organiser_id: self.state.organiser_id,
            time: self.details.time,
            visibility: self.details.visibility,
            approved_by: None,
            series: self.state.series,
        }])
    }

    fn reschedule(&self, time: TimeRange) -> Decided {
        self.organiser_only()?;
        if self.status().is_final() {
            return Err(self.transition("reschedule"));
        }
        if self.status() == ActivityStatus::Published {
            self.not_started()?;
        }
        if time == self.details.time {
            return Ok(vec![]);
        }
        starts_in_the_future(time, self.ctx)?;
        Ok(vec![ActivityEvent::ActivityRescheduled { time, previous: self.details.time }])
    }

    /// Whether any booking still holds or waits for seats.
    fn has_live_bookings(&self) -> bool {
        self.state.bookings.values().any(|b| b.status.is_live())
    }

    /// A series update reaching this occurrence: only a published occurrence that has
    /// not started and has no live bookings takes it (the rest keep their time and details).
    fn update_occurrence(&self, new: ActivityDetails) -> Decided {
        self.system_only()?;
        if self.status() != ActivityStatus::Published || self.ctx.now >= self.details.time.starts_at() {
            return Ok(vec![]);
        }
        if self.has_live_bookings() {
            return Ok(vec![]);
        }
        let old = self.details;
        let mut changed: Vec<String> = Vec::new();
        let mut details = old.clone();
        // The system applies every template field (no field is locked for it).
        apply_template_patch!(ActivityPatch::every_field_of(&new), details, changed, false);
        let mut events = Vec::new();
        if !changed.is_empty() {
            let seats_left = details.capacity.get().saturating_sub(self.state.seats_taken);
            events.push(ActivityEvent::ActivityDetailsUpdated { details, changed, seats_left });
        }
        if new.time != old.time {
            starts_in_the_future(new.time, self.ctx)?;
            events.push(ActivityEvent::ActivityRescheduled { time: new.time, previous: old.time });
        }
        Ok(events)
    }

    /// A skipped or ended occurrence is cancelled through the normal path (its
    /// bookings are released and their members notified).
    fn cancel_occurrence(&self, reason: Reason, only_unbooked: bool) -> Decided {
        self.system_only()?;
        if self.status().is_final() || (only_unbooked && self.has_live_bookings()) {
            return Ok(vec![]);
        }
        self.cancel(reason)
    }

    fn cancel(&self, reason: Reason) -> Decided {
        if self.ctx.actor.id != self.state.organiser_id && !self.ctx.has(Role::Moderator) && !self.ctx.is_system() {
            return Err(DomainError::NotTheOrganiser);
        }
        if self.status().is_final() {
            return Err(self.transition("cancel"));
        }
        let released = self
            .state
            .bookings
            .iter()
            .filter(|(_, b)| b.status.is_live())
            .map(|(id, b)| ReleasedBooking {
                booking_id: *id,
                member_id: b.member_id,
                seats: b.seats,
                status: b.status,
            })
            .collect();
        Ok(vec![ActivityEvent::ActivityCancelled { reason, cancelled_by: self.ctx.actor.id, released }])
    }

    fn attach_media(&self, media_id: Uuid, file: MediaFile) -> Decided {
        self.organiser_only()?;
        if self.status().is_final() {
            return Err(self.transition("attach media to"));
        }
        if self.state.media.iter().any(|(id, _)| *id == media_id) {
            return Err(DomainError::MediaAlreadyAttached);
        }
        if self.state.media.len() >= MAX_MEDIA {
            return Err(DomainError::TooManyMedia { max: MAX_MEDIA });
        }
        Ok(vec![ActivityEvent::MediaAttached { media_id, file }])
    }

    fn complete(&self) -> Decided {
        self.system_only()?;
        match self.status() {
            ActivityStatus::Published => {}
            // The timer may race with a cancellation or fire twice: nothing to do.
            ActivityStatus::Completed | ActivityStatus::Cancelled => return Ok(vec![]),
            _ => return Err(self.transition("complete")),
        }
        if self.ctx.now < self.details.time.ends_at() {
            return Err(DomainError::ActivityNotEnded);
        }
        Ok(vec![ActivityEvent::ActivityCompleted { seats_taken: self.state.seats_taken }])
    }

    /// Checks shared by direct bookings and accepted invitations.
    fn bookable(&self, action: &'static str, booking_id: Uuid) -> Result<(), DomainError> {
        if self.status() != ActivityStatus::Published {
            return Err(self.transition(action));
        }
        self.not_started()?;
        if self.state.bookings.contains_key(&booking_id) {
            return Err(DomainError::BookingIdTaken);
        }
        if self.state.live_booking_of(self.ctx.actor.id).is_some() {
            return Err(DomainError::AlreadyBooked);
        }
        Ok(())
    }

    fn book_seats(&self, booking_id: Uuid, seats: u32, children: Vec<BookedChild>) -> Decided {
        if self.details.visibility == Visibility::InviteOnly {
            return Err(DomainError::InvitationRequired);
        }
        self.bookable("book", booking_id)?;
        if seats == 0 {
            return Err(DomainError::invalid("seats", "must be at least 1"));
        }
        if seats > self.details.capacity.get() {
            return Err(DomainError::invalid("seats", "must not exceed the activity's capacity"));
        }
        if (seats as usize) < children.len() {
            return Err(DomainError::invalid("seats", "must be at least one per child"));
        }
        let mut child_ids: Vec<Uuid> = Vec::with_capacity(children.len());
        for child in &children {
            if child_ids.contains(&child.child_id) {
                return Err(DomainError::invalid("child_ids", "must not repeat a child"));
            }
            child_ids.push(child.child_id);
        }
        if let Some(range) = self.details.age_range {
            let day = self.details.time.starts_at().date_naive();
            if children.iter().any(|c| !range.admits(c.birth_date, day)) {
                return Err(DomainError::AgeOutOfRange);
            }
        }
        self.seat(booking_id, seats, child_ids, None)
    }

    /// Confirms, reserves or waitlists a new booking, or refuses it when full.
    fn seat(&self, booking_id: Uuid, seats: u32, children: Vec<Uuid>, invitation_id: Option<Uuid>) -> Decided {
        let member_id = self.ctx.actor.id;
        let left = self.state.seats_left();
        if seats <= left {
            return Ok(vec![seat_event(
                self.details,
                booking_id,
                member_id,
                seats,
                children,
                left - seats,
                invitation_id,
                self.ctx.now,
            )?]);
        }
        if !self.details.waitlist {
            return Err(DomainError::ActivityFull);
        }
        let position = u32::try_from(self.state.waitlist.len()).unwrap_or(u32::MAX).saturating_add(1);
        Ok(vec![ActivityEvent::WaitlistJoined { booking_id, member_id, seats, children, position }])
    }

    fn booking(&self, booking_id: Uuid) -> Result<&Booking, DomainError> {
        self.state.bookings.get(&booking_id).ok_or(DomainError::BookingNotFound)
    }

    fn confirm_payment(&self, booking_id: Uuid, payment_ref: PaymentRef, amount: Option<Money>) -> Decided {
        self.system_only()?;
        let booking = self.booking(booking_id)?;
        match booking.status {
            BookingStatus::Reserved => {}
            // A redelivered payment notification changes nothing; a second payment is refused.
            BookingStatus::Confirmed if booking.payment_ref.as_ref() == Some(&payment_ref) => return Ok(vec![]),
            BookingStatus::Expired => return Err(DomainError::ReservationExpired),
            _ => return Err(DomainError::NotAwaitingPayment),
        }
        if amount.is_none() || booking.amount_due != amount {
            return Err(DomainError::PaymentMismatch);
        }
        Ok(vec![ActivityEvent::BookingConfirmed {
            booking_id,
            member_id: booking.member_id,
            seats: booking.seats,
            children: booking.children.clone(),
            seats_left: self.state.seats_left(),
            payment_ref: Some(payment_ref),
            invitation_id: booking.invitation_id,
        }])
    }

    fn expire_reservation(&self, booking_id: Uuid) -> Decided {
        self.system_only()?;
        let booking = self.booking(booking_id)?;
        if booking.status != BookingStatus::Reserved {
            // Paid, cancelled or released meanwhile: the timer has nothing to do.
            return Ok(vec![]);
        }
        if booking.reserved_until.is_some_and(|until| self.ctx.now < until) {
            return Err(DomainError::ReservationNotExpired);
        }
        self.release_reservation(booking_id, booking)
    }

    fn fail_payment(&self, booking_id: Uuid) -> Decided {
        self.system_only()?;
        let booking = self.booking(booking_id)?;
        if booking.status != BookingStatus::Reserved {
            // Confirmed by another payment (payments are not refunded), or released
            // meanwhile: a failure reported now changes nothing.
            return Ok(vec![]);
        }
        self.release_reservation(booking_id, booking)
    }

    /// Releases a reservation's seats and promotes the waitlist into them.
    fn release_reservation(&self, booking_id: Uuid, booking: &Booking) -> Decided {
        let taken = self.state.seats_taken.saturating_sub(booking.seats);
        let mut events = vec![ActivityEvent::ReservationExpired {
            booking_id,
            member_id: booking.member_id,
            seats: booking.seats,
            seats_left: self.details.capacity.get().saturating_sub(taken),
        }];
        events.extend(promote(self.state, self.details, taken, Some(booking_id), self.ctx.now));
        Ok(events)
    }

    fn cancel_booking(&self, booking_id: Uuid) -> Decided {
        let booking = self.booking(booking_id)?;
        if booking.member_id != self.ctx.actor.id {
            return Err(DomainError::NotTheBookingHolder);
        }
        if !booking.status.is_live() {
            return Err(DomainError::BookingNotLive);
        }
        self.not_started()?;
        let released_seats = if booking.status.holds_seats() { booking.seats } else { 0 };
        let taken = self.state.seats_taken.saturating_sub(released_seats);
        let mut events = vec![ActivityEvent::BookingCancelled {
            booking_id,
            member_id: booking.member_id,
            seats: booking.seats,
            released_seats,
            seats_left: self.details.capacity.get().saturating_sub(taken),
        }];
        if released_seats > 0 {
            events.extend(promote(self.state, self.details, taken, Some(booking_id), self.ctx.now));
        }
        Ok(events)
    }

    fn invite_guests(&self, invitations: Vec<InvitationRequest>) -> Decided {
        self.organiser_only()?;
        if self.details.visibility != Visibility::InviteOnly {
            return Err(DomainError::NotInviteOnly);
        }
        if self.status() != ActivityStatus::Published {
            return Err(self.transition("invite guests to"));
        }
        self.not_started()?;
        if invitations.is_empty() {
            return Err(DomainError::invalid("invitations", "must not be empty"));
        }
        if invitations.len() > MAX_INVITATIONS_PER_COMMAND {
            return Err(DomainError::TooManyInvitations { max: MAX_INVITATIONS_PER_COMMAND });
        }
        let mut invited: Vec<String> =
            self.state.invitations.values().filter_map(|i| i.email.known()).map(|e| e.normalized()).collect();
        let mut ids: Vec<Uuid> = Vec::new();
        let mut fresh = Vec::new();
        for invitation in invitations {
            if self.state.invitations.contains_key(&invitation.invitation_id) || ids.contains(&invitation.invitation_id)
            {
                return Err(DomainError::InvitationIdTaken);
            }
            ids.push(invitation.invitation_id);
            // An address already invited is skipped, so an organiser can paste a list again.
            let email = invitation.email.normalized();
            if !invited.contains(&email) {
                invited.push(email);
                fresh.push(InvitedGuest::from(invitation));
            }
        }
        if fresh.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![ActivityEvent::GuestsInvited { invitations: fresh }])
    }

    fn invitation(&self, invitation_id: Uuid) -> Result<&Invitation, DomainError> {
        let invitation = self.state.invitations.get(&invitation_id).ok_or(DomainError::InvitationNotFound)?;
        if invitation.status != InvitationStatus::Pending {
            return Err(DomainError::InvitationAlreadyAnswered);
        }
        Ok(invitation)
    }

    fn accept_invitation(&self, invitation_id: Uuid) -> Decided {
        self.invitation(invitation_id)?;
        self.bookable("accept an invitation to", invitation_id)?;
        let mut events = vec![ActivityEvent::InvitationAccepted {
            invitation_id,
            member_id: self.ctx.actor.id,
            booking_id: invitation_id,
        }];
        events.extend(self.seat(invitation_id, 1, Vec::new(), Some(invitation_id))?);
        Ok(events)
    }

    fn decline_invitation(&self, invitation_id: Uuid) -> Decided {
        self.invitation(invitation_id)?;
        Ok(vec![ActivityEvent::InvitationDeclined { invitation_id, member_id: self.ctx.actor.id }])
    }

    fn send_attendee_list(&self) -> Decided {
        self.system_only()?;
        match self.status() {
            ActivityStatus::Published => {}
            ActivityStatus::Completed | ActivityStatus::Cancelled => return Ok(vec![]),
            _ => return Err(self.transition("send the attendee list of")),
        }
        if self.state.attendee_list_sent {
            return Ok(vec![]);
        }
        if self.ctx.now < self.details.time.starts_at() - Duration::hours(ATTENDEE_LIST_LEAD_HOURS) {
            return Err(DomainError::AttendeeListNotDue);
        }
        let attendees: Vec<AttendeeLine> = self
            .state
            .bookings
            .iter()
            .filter(|(_, b)| b.status == BookingStatus::Confirmed)
            .map(|(id, b)| AttendeeLine {
                booking_id: *id,
                member_id: b.member_id,
                seats: b.seats,
                children: b.children.clone(),
            })
            .collect();
        let seats_confirmed = attendees.iter().map(|a| a.seats).sum();
        Ok(vec![ActivityEvent::AttendeeListSent { organiser_id: self.state.organiser_id, attendees, seats_confirmed }])
    }
}

/// `BookingConfirmed` for a free activity, `BookingReserved` for a paid one.
#[allow(clippy::too_many_arguments)]
fn seat_event(
    details: &ActivityDetails,
    booking_id: Uuid,
    member_id: Uuid,
    seats: u32,
    children: Vec<Uuid>,
    seats_left: u32,
    invitation_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<ActivityEvent, DomainError> {
    if details.is_paid() {
        let amount_due =
            details.price.times(seats).ok_or_else(|| DomainError::invalid("seats", "the total is too large"))?;
        return Ok(ActivityEvent::BookingReserved {
            booking_id,
            member_id,
            seats,
            children,
            amount_due,
            expires_at: now + Duration::minutes(RESERVATION_HOLD_MINUTES),
            seats_left,
        });
    }
    Ok(ActivityEvent::BookingConfirmed {
        booking_id,
        member_id,
        seats,
        children,
        seats_left,
        payment_ref: None,
        invitation_id,
    })
}

/// Promotes waitlisted bookings, first come first served, every one that fits
/// into the seats left once `taken` seats are held (skipping `except`).
fn promote(
    state: &ActivityState,
    details: &ActivityDetails,
    mut taken: u32,
    except: Option<Uuid>,
    now: DateTime<Utc>,
) -> Vec<ActivityEvent> {
    let capacity = details.capacity.get();
    let mut events = Vec::new();
    for booking_id in state.waitlist.iter().filter(|id| Some(**id) != except) {
        let Some(booking) = state.bookings.get(booking_id) else { continue };
        if booking.status != BookingStatus::Waitlisted || taken.saturating_add(booking.seats) > capacity {
            continue;
        }
        // A paid total that overflows cannot be reserved; leave it waiting.
        let Ok(seat) = seat_event(
            details,
            *booking_id,
            booking.member_id,
            booking.seats,
            booking.children.clone(),
            capacity - taken - booking.seats,
            booking.invitation_id,
            now,
        ) else {
            continue;
        };
        taken += booking.seats;
        events.push(ActivityEvent::WaitlistPromoted {
            booking_id: *booking_id,
            member_id: booking.member_id,
            seats: booking.seats,
        });
        events.push(seat);
    }
    events
}

impl AggregateEvent for ActivityEvent {
    type Aggregate = Activity;
}

impl AggregateCommand for ActivityCommand {
    type Aggregate = Activity;
}

pub(crate) fn describe_time(time: &TimeRange) -> String {
    let (starts, ends) = (time.starts_at(), time.ends_at());
    if starts.date_naive() == ends.date_naive() {
        format!("{}–{}", when(starts), ends.format("%H:%M"))
    } else {
        format!("{} – {}", when(starts), when(ends))
    }
}

fn describe_price(price: &Money) -> String {
    if price.is_zero() { "free".to_owned() } else { price.to_string() }
}

fn describe_location(location: &Location) -> String {
    match location {
        Location::Venue(venue) => format!("at \"{}\"", venue.name()),
        Location::Online(online) => format!("online ({})", online.url()),
    }
}

fn describe_age_range(range: &Option<AgeRange>) -> String {
    match range {
        Some(range) => format!("ages {}–{}", range.min(), range.max()),
        None => "all ages".to_owned(),
    }
}

/// One field of the details in words, for `ActivityDetailsUpdated`.
fn describe_field(details: &ActivityDetails, field: &str) -> String {
    match field {
        "title" => format!("title \"{}\"", details.title),
        "description" => format!("description \"{}\"", crate::chat::short(details.description.as_str())),
        "category" => format!("category {}", details.category.as_str()),
        "tags" => format!("tags [{}]", details.tags.as_slice().join(", ")),
        "time" => format!("time {}", describe_time(&details.time)),
        "capacity" => format!("capacity {}", details.capacity.get()),
        "price" => format!("price {}", describe_price(&details.price)),
        "visibility" => format!("visibility {}", details.visibility.as_str()),
        "location" => format!("location {}", describe_location(&details.location)),
        "age_range" => describe_age_range(&details.age_range),
        "waitlist" => format!("waitlist {}", if details.waitlist { "on" } else { "off" }),
        other => other.to_owned(),
    }
}

pub(crate) fn describe_details(d: &ActivityDetails) -> String {
    format!(
        "\"{}\" ({}), {}, {} seats, {}, {}, {}, {}, waitlist {}",
        d.title,
        d.category.as_str(),
        describe_time(&d.time),
        d.capacity.get(),
        describe_price(&d.price),
        d.visibility.as_str(),
        describe_location(&d.location),
        describe_age_range(&d.age_range),
        if d.waitlist { "on" } else { "off" }
    )
}

fn describe_patch(p: &ActivityPatch) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(v) = &p.title {
        parts.push(format!("title \"{v}\""));
    }
    if let Some(v) = &p.description {
        parts.push(format!("description \"{}\"", crate::chat::short(v.as_str())));
    }
    if let Some(v) = &p.category {
        parts.push(format!("category {}", v.as_str()));
    }
    if let Some(v) = &p.tags {
        parts.push(format!("tags [{}]", v.as_slice().join(", ")));
    }
    if let Some(v) = &p.time {
        parts.push(format!("time {}", describe_time(v)));
    }
    if let Some(v) = &p.capacity {
        parts.push(format!("capacity {}", v.get()));
    }
    if let Some(v) = &p.price {
        parts.push(format!("price {}", describe_price(v)));
    }
    if let Some(v) = &p.visibility {
        parts.push(format!("visibility {}", v.as_str()));
    }
    if let Some(v) = &p.location {
        parts.push(format!("location {}", describe_location(v)));
    }
    if let Some(v) = &p.age_range {
        parts.push(describe_age_range(v));
    }
    if let Some(v) = &p.waitlist {
        parts.push(format!("waitlist {}", if *v { "on" } else { "off" }));
    }
    if parts.is_empty() { "nothing".to_owned() } else { parts.join(", ") }
}

/// `1 seat`, `3 seats`.
fn n_seats(n: u32) -> String {
    if n == 1 { "1 seat".to_owned() } else { format!("{n} seats") }
}

fn describe_children(children: &[Uuid]) -> String {
    if children.is_empty() { String::new() } else { format!(" (children: {})", names(children)) }
}

impl Describe for ActivityEvent {
    fn describe(&self) -> String {
        use ActivityEvent as E;
        match self {
            E::ActivityDrafted { activity_id, organiser_id, details, series } => format!(
                "ActivityDrafted: {} by {}{}: {}",
                name(*activity_id),
                name(*organiser_id),
                describe_series(series),
                describe_details(details)
            ),
            E::ActivityDetailsUpdated { details, changed, seats_left } => format!(
                "ActivityDetailsUpdated: {}; {seats_left_s} left",
                changed.iter().map(|f| describe_field(details, f)).collect::<Vec<_>>().join(", "),
                seats_left_s = n_seats(*seats_left)
            ),
            E::ActivitySubmitted {} => "ActivitySubmitted for review".to_owned(),
            E::ActivityPublished { time, visibility, approved_by, series, .. } => match approved_by {
                Some(moderator) => format!(
                    "ActivityPublished ({}){}, approved by {}",
                    describe_time(time),
                    describe_series(series),
                    name(*moderator)
                ),
                None => format!(
                    "ActivityPublished ({}){} by its organiser, {}",
                    describe_time(time),
                    describe_series(series),
                    visibility.as_str()
                ),
            },
            E::ActivityRejected { reason, .. } => format!("ActivityRejected: \"{reason}\""),
            E::ActivityRescheduled { time, previous } => {
                format!("ActivityRescheduled from {} to {}", describe_time(previous), describe_time(time))
            }
            E::ActivityCancelled { reason, cancelled_by, released } => {
                let released = if released.is_empty() {
                    "no bookings released".to_owned()
                } else {
                    let list: Vec<String> = released
                        .iter()
                        .map(|r| {
                            format!(
                                "{} of {} ({}, {})",
                                name(r.booking_id),
                                name(r.member_id),
                                n_seats(r.seats),
                                r.status.as_str()
                            )
                        })
                        .collect();
                    format!("released {}", list.join(", "))
                };
                format!("ActivityCancelled by {}: \"{reason}\"; {released}", name(*cancelled_by))
            }
            E::MediaAttached { media_id, file } => format!(
                "MediaAttached: {} ({}, {}, {} bytes)",
                name(*media_id),
                file.kind().as_str(),
                file.content_type(),
                file.bytes()
            ),
            E::ActivityCompleted { seats_taken } => {
                format!("ActivityCompleted with {seats_taken_s} taken", seats_taken_s = n_seats(*seats_taken))
            }
            E::BookingReserved { booking_id, member_id, seats, children, amount_due, expires_at, seats_left } => {
                format!(
                    "BookingReserved: {} for {}, {seats_s}{}, {amount_due} due by {}; {seats_left_s} left",
                    name(*booking_id),
                    name(*member_id),
                    describe_children(children),
                    when(*expires_at),
                    seats_s = n_seats(*seats),
                    seats_left_s = n_seats(*seats_left)
                )
            }
            E::BookingConfirmed { booking_id, member_id, seats, children, seats_left, payment_ref, invitation_id } => {
                let mut via = String::new();
                if let Some(payment_ref) = payment_ref {
                    via.push_str(&format!(", paid ({payment_ref})"));
                }
                if let Some(invitation_id) = invitation_id {
                    via.push_str(&format!(", from invitation {}", name(*invitation_id)));
                }
                format!(
                    "BookingConfirmed: {} for {}, {seats_s}{}{via}; {seats_left_s} left",
                    name(*booking_id),
                    name(*member_id),
                    describe_children(children),
                    seats_s = n_seats(*seats),
                    seats_left_s = n_seats(*seats_left)
                )
            }
            E::WaitlistJoined { booking_id, member_id, seats, children, position } => format!(
                "WaitlistJoined: {} for {}, {seats_s}{}, position {position}",
                name(*booking_id),
                name(*member_id),
                describe_children(children),
                seats_s = n_seats(*seats)
            ),
            E::WaitlistPromoted { booking_id, member_id, seats } => {
                format!(
                    "WaitlistPromoted: {} of {}, {seats_s}",
                    name(*booking_id),
                    name(*member_id),
                    seats_s = n_seats(*seats)
                )
            }
            E::BookingCancelled { booking_id, member_id, seats, released_seats, seats_left } => format!(
                "BookingCancelled: {} of {} ({seats_s}), {released_seats_s} released; {seats_left_s} left",
                name(*booking_id),
                name(*member_id),
                seats_s = n_seats(*seats),
                released_seats_s = n_seats(*released_seats),
                seats_left_s = n_seats(*seats_left)
            ),
            E::ReservationExpired { booking_id, member_id, seats, seats_left } => format!(
                "ReservationExpired: {} of {}, {seats_s} released; {seats_left_s} left",
                name(*booking_id),
                name(*member_id),
                seats_s = n_seats(*seats),
                seats_left_s = n_seats(*seats_left)
            ),
            E::GuestsInvited { invitations } if invitations.len() > 5 => {
                format!("GuestsInvited: {} invitations", invitations.len())
            }
            E::GuestsInvited { invitations } => {
                let list: Vec<String> =
                    invitations.iter().map(|i| format!("{} {}", name(i.invitation_id), i.email)).collect();
                format!("GuestsInvited: {}", list.join(", "))
            }
            E::InvitationAccepted { invitation_id, member_id, .. } => {
                format!("InvitationAccepted: {} by {}", name(*invitation_id), name(*member_id))
            }
            E::InvitationDeclined { invitation_id, member_id } => {
                format!("InvitationDeclined: {} by {}", name(*invitation_id), name(*member_id))
            }
            E::AttendeeListSent { organiser_id, attendees, seats_confirmed } => {
                let list: Vec<String> = attendees
                    .iter()
                    .map(|a| format!("{} ({}{})", name(a.member_id), n_seats(a.seats), describe_children(&a.children)))
                    .collect();
                let list = if list.is_empty() { "nobody".to_owned() } else { list.join(", ") };
                format!(
                    "AttendeeListSent to {}: {list}; {seats_confirmed_s}",
                    name(*organiser_id),
                    seats_confirmed_s = n_seats(*seats_confirmed)
                )
            }
        }
    }
}

fn describe_series(series: &Option<SeriesLink>) -> String {
    series.map_or_else(String::new, |s| format!(" as occurrence #{} of {}", s.index, name(s.series_id)))
}

impl Describe for ActivityCommand {
    fn describe(&self) -> String {
        use ActivityCommand as C;
        match self {
            C::CreateOccurrence { activity_id, series, details, .. } => format!(
                "CreateOccurrence {}{}: {}",
                name(*activity_id),
                describe_series(&Some(*series)),
                describe_details(details)
            ),
            C::UpdateOccurrence { details } => format!("UpdateOccurrence: {}", describe_details(details)),
            C::CancelOccurrence { reason, only_unbooked } => {
                format!("CancelOccurrence: \"{reason}\"{}", if *only_unbooked { " unless it has bookings" } else { "" })
            }
            C::Create { activity_id, details } => {
                format!("CreateActivity {}: {}", name(*activity_id), describe_details(details))
            }
            C::UpdateDetails { patch } => format!("UpdateActivityDetails: {}", describe_patch(patch)),
            C::Submit => "SubmitActivity".to_owned(),
            C::Approve => "ApproveActivity".to_owned(),
            C::Reject { reason } => format!("RejectActivity: \"{reason}\""),
            C::Publish => "PublishActivity".to_owned(),
            C::Reschedule { time } => format!("RescheduleActivity to {}", describe_time(time)),
            C::Cancel { reason } => format!("CancelActivity: \"{reason}\""),
            C::AttachMedia { media_id, file } => format!(
                "AttachMedia {} ({}, {}, {} bytes)",
                name(*media_id),
                file.kind().as_str(),
                file.content_type(),
                file.bytes()
            ),
            C::Complete => "CompleteActivity".to_owned(),
            C::BookSeats { booking_id, seats, children } => {
                let kids: Vec<String> =
                    children.iter().map(|c| format!("{} born {}", name(c.child_id), c.birth_date)).collect();
                let kids = if kids.is_empty() { String::new() } else { format!(" for {}", kids.join(", ")) };
                format!("BookSeats {}: {seats_s}{kids}", name(*booking_id), seats_s = n_seats(*seats))
            }
            C::ConfirmPayment { booking_id, payment_ref, amount } => {
                let paid = amount.as_ref().map_or_else(|| "no amount reported".to_owned(), |a| format!("{a} paid"));
                format!("ConfirmPayment for {} ({payment_ref}, {paid})", name(*booking_id))
            }
            C::FailPayment { booking_id } => format!("FailPayment for {}", name(*booking_id)),
            C::ExpireReservation { booking_id } => format!("ExpireReservation {}", name(*booking_id)),
            C::CancelBooking { booking_id } => format!("CancelBooking {}", name(*booking_id)),
            C::InviteGuests { invitations } => {
                if invitations.len() > 5 {
                    return format!("InviteGuests: {} invitations", invitations.len());
                }
                let list: Vec<String> =
                    invitations.iter().map(|i| format!("{} {}", name(i.invitation_id), i.email)).collect();
                format!("InviteGuests: {}", if list.is_empty() { "nobody".to_owned() } else { list.join(", ") })
            }
            C::AcceptInvitation { invitation_id } => format!("AcceptInvitation {}", name(*invitation_id)),
            C::DeclineInvitation { invitation_id } => format!("DeclineInvitation {}", name(*invitation_id)),
            C::SendAttendeeList => "SendAttendeeList".to_owned(),
        }
    }
}
