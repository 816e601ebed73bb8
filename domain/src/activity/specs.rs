//! The activity's specs: lifecycle, editing, media, bookings, waitlist, paid
//! reservations, invitations and the attendee list.
//!
//! Unless a spec says otherwise the activity is Olivia's "Kids pottery":
//! 2030-06-01 10:00–12:00, 10 seats, free, public, ages 5–10, waitlist on;
//! and "now" is 2030-05-01 09:00.

use super::*;
use crate::specs::fixtures::*;
use crate::specs::{Section, spec_section};
use crate::testkit::{given, given_nothing};
use crate::values::MediaKind;

/// Every section of the activity's specs.
pub fn sections() -> Vec<Section> {
    vec![
        creation::section(),
        moderation::section(),
        editing::section(),
        rescheduling::section(),
        cancellation::section(),
        media::section(),
        completion::section(),
        booking::section(),
        waitlist::section(),
        cancelling_bookings::section(),
        paid_reservations::section(),
        invitations::section(),
        attendee_list::section(),
    ]
}

// ----- fixtures -----

fn title(raw: &str) -> Title {
    Title::parse(raw).expect("fixture title")
}

fn reason(raw: &str) -> Reason {
    Reason::parse(raw).expect("fixture reason")
}

fn capacity(seats: i64) -> Capacity {
    Capacity::parse(seats).expect("fixture capacity")
}

fn euros(cents: i64) -> Money {
    Money::parse(cents, "EUR").expect("fixture money")
}

fn time(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> TimeRange {
    TimeRange::parse(starts_at, ends_at).expect("fixture time")
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("fixture email")
}

fn details() -> ActivityDetails {
    ActivityDetails {
        title: title("Kids pottery"),
        description: Description::parse("Shape and glaze your first bowl.").expect("fixture"),
        category: Category::parse("crafts").expect("fixture"),
        tags: Tags::parse(["clay", "kids"]).expect("fixture"),
        time: time(starts(), ends()),
        capacity: capacity(10),
        price: euros(0),
        visibility: Visibility::Public,
        location: Location::venue("Clay Studio", "1 Kiln Street, Leeds", 53.8, -1.55).expect("fixture"),
        age_range: Some(AgeRange::parse(5, 10).expect("fixture")),
        waitlist: true,
    }
}

fn details_with(change: impl FnOnce(&mut ActivityDetails)) -> ActivityDetails {
    let mut details = details();
    change(&mut details);
    details
}

fn drafted_with(details: ActivityDetails) -> ActivityEvent {
    ActivityEvent::ActivityDrafted { series: None, activity_id: ACTIVITY, organiser_id: OLIVIA, details }
}

fn drafted() -> ActivityEvent {
    drafted_with(details())
}

fn submitted() -> ActivityEvent {
    ActivityEvent::ActivitySubmitted {}
}

fn approved() -> ActivityEvent {
    ActivityEvent::ActivityPublished {
        series: None,
        organiser_id: OLIVIA,
        time: time(starts(), ends()),
        visibility: Visibility::Public,
        approved_by: Some(MO),
    }
}

fn published_directly() -> ActivityEvent {
    ActivityEvent::ActivityPublished {
        series: None,
        organiser_id: OLIVIA,
        time: time(starts(), ends()),
        visibility: Visibility::InviteOnly,
        approved_by: None,
    }
}

fn rejected() -> ActivityEvent {
    ActivityEvent::ActivityRejected { organiser_id: OLIVIA, reason: reason("Please add the venue's accessibility") }
}

fn pending() -> Vec<ActivityEvent> {
    vec![drafted(), submitted()]
}

/// The default activity, approved and published.
fn published() -> Vec<ActivityEvent> {
    vec![drafted(), submitted(), approved()]
}

/// A published public activity with changed details.
fn published_with(change: impl FnOnce(&mut ActivityDetails)) -> Vec<ActivityEvent> {
    vec![drafted_with(details_with(change)), submitted(), approved()]
}

/// A published activity with `seats` seats and the waitlist on or off.
fn small(seats: i64, waitlist: bool) -> Vec<ActivityEvent> {
    published_with(|d| {
        d.capacity = capacity(seats);
        d.waitlist = waitlist;
    })
}

/// A published paid activity (12.50 EUR a seat) with `seats` seats and a waitlist.
fn paid(seats: i64) -> Vec<ActivityEvent> {
    published_with(|d| {
        d.capacity = capacity(seats);
        d.price = euros(1250);
    })
}

fn invite_only_with(change: impl FnOnce(&mut ActivityDetails)) -> Vec<ActivityEvent> {
    let details = details_with(|d| {
        d.visibility = Visibility::InviteOnly;
        d.age_range = None;
        change(d);
    });
    vec![drafted_with(details), published_directly()]
}

fn invite_only() -> Vec<ActivityEvent> {
    invite_only_with(|_| {})
}

fn draft_invite_only() -> Vec<ActivityEvent> {
    vec![drafted_with(details_with(|d| d.visibility = Visibility::InviteOnly))]
}

fn with(mut history: Vec<ActivityEvent>, more: impl IntoIterator<Item = ActivityEvent>) -> Vec<ActivityEvent> {
    history.extend(more);
    history
}

fn confirmed(booking_id: Uuid, member_id: Uuid, seats: u32, seats_left: u32) -> ActivityEvent {
    ActivityEvent::BookingConfirmed {
        booking_id,
        member_id,
        seats,
        children: vec![],
        seats_left,
        payment_ref: None,
        invitation_id: None,
    }
}

fn confirmed_with_children(
    booking_id: Uuid,
    member_id: Uuid,
    seats: u32,
    children: Vec<Uuid>,
    seats_left: u32,
) -> ActivityEvent {
    ActivityEvent::BookingConfirmed {
        booking_id,
        member_id,
        seats,
        children,
        seats_left,
        payment_ref: None,
        invitation_id: None,
    }
}

fn paid_confirmed(booking_id: Uuid, member_id: Uuid, seats: u32, seats_left: u32, payment: &str) -> ActivityEvent {
    ActivityEvent::BookingConfirmed {
        booking_id,
        member_id,
        seats,
        children: vec![],
        seats_left,
        payment_ref: Some(PaymentRef::parse(payment).expect("fixture")),
        invitation_id: None,
    }
}

fn reserved_at(booking_id: Uuid, member_id: Uuid, seats: u32, seats_left: u32, now: DateTime<Utc>) -> ActivityEvent {
    ActivityEvent::BookingReserved {
        booking_id,
        member_id,
        seats,
        children: vec![],
        amount_due: euros(1250 * i64::from(seats)),
        expires_at: now + Duration::minutes(15),
        seats_left,
    }
}

fn reserved(booking_id: Uuid, member_id: Uuid, seats: u32, seats_left: u32) -> ActivityEvent {
    reserved_at(booking_id, member_id, seats, seats_left, t0())
}

fn joined(booking_id: Uuid, member_id: Uuid, seats: u32, position: u32) -> ActivityEvent {
    ActivityEvent::WaitlistJoined { booking_id, member_id, seats, children: vec![], position }
}

fn promoted(booking_id: Uuid, member_id: Uuid, seats: u32) -> ActivityEvent {
    ActivityEvent::WaitlistPromoted { booking_id, member_id, seats }
}

fn cancelled(booking_id: Uuid, member_id: Uuid, seats: u32, released_seats: u32, seats_left: u32) -> ActivityEvent {
    ActivityEvent::BookingCancelled { booking_id, member_id, seats, released_seats, seats_left }
}

fn book(booking_id: Uuid, seats: u32) -> ActivityCommand {
    ActivityCommand::BookSeats { booking_id, seats, children: vec![] }
}

fn book_for(booking_id: Uuid, seats: u32, children: &[(Uuid, NaiveDate)]) -> ActivityCommand {
    ActivityCommand::BookSeats {
        booking_id,
        seats,
        children: children
            .iter()
            .map(|(child_id, birth_date)| BookedChild { child_id: *child_id, birth_date: *birth_date })
            .collect(),
    }
}

fn pay(booking_id: Uuid, payment: &str, amount: Money) -> ActivityCommand {
    ActivityCommand::ConfirmPayment {
        booking_id,
        payment_ref: PaymentRef::parse(payment).expect("fixture"),
        amount: Some(amount),
    }
}

fn payment_failed(booking_id: Uuid) -> ActivityCommand {
    ActivityCommand::FailPayment { booking_id }
}

fn patch(change: impl FnOnce(&mut ActivityPatch)) -> ActivityCommand {
    let mut patch = ActivityPatch::default();
    change(&mut patch);
    ActivityCommand::UpdateDetails { patch }
}

fn updated(details: ActivityDetails, changed: &[&str], seats_left: u32) -> ActivityEvent {
    ActivityEvent::ActivityDetailsUpdated {
        details,
        changed: changed.iter().map(|f| (*f).to_owned()).collect(),
        seats_left,
    }
}

fn photo(bytes: u64) -> MediaFile {
    MediaFile::parse(MediaKind::Photo, "image/jpeg", bytes).expect("fixture media")
}

fn video() -> MediaFile {
    MediaFile::parse(MediaKind::Video, "video/mp4", 40 * 1024 * 1024).expect("fixture media")
}

fn media_attached(media_id: Uuid) -> ActivityEvent {
    ActivityEvent::MediaAttached { media_id, file: photo(250_000) }
}

fn twenty_media() -> Vec<ActivityEvent> {
    (0..20u128).map(|n| media_attached(Uuid::from_u128(0x0e00 + n))).collect()
}

fn invitation(invitation_id: Uuid, address: &str) -> InvitationRequest {
    InvitationRequest { invitation_id, email: email(address) }
}

fn invited() -> ActivityEvent {
    ActivityEvent::GuestsInvited {
        invitations: vec![invitation(I1, "dan@example.org").into(), invitation(I2, "eve@example.org").into()],
    }
}

fn invite(invitations: Vec<InvitationRequest>) -> ActivityCommand {
    ActivityCommand::InviteGuests { invitations }
}

fn crowd_invitations(n: u128) -> Vec<InvitationRequest> {
    (0..n).map(|i| invitation(Uuid::from_u128(0x0f00_0000 + i), &format!("guest{i}@example.org"))).collect()
}

fn accepted(invitation_id: Uuid, member_id: Uuid) -> ActivityEvent {
    ActivityEvent::InvitationAccepted { invitation_id, member_id, booking_id: invitation_id }
}

fn invitation_confirmed(invitation_id: Uuid, member_id: Uuid, seats_left: u32) -> ActivityEvent {
    ActivityEvent::BookingConfirmed {
        booking_id: invitation_id,
        member_id,
        seats: 1,
        children: vec![],
        seats_left,
        payment_ref: None,
        invitation_id: Some(invitation_id),
    }
}

fn activity_cancelled(by: Uuid, released: Vec<ReleasedBooking>) -> ActivityEvent {
    ActivityEvent::ActivityCancelled { reason: reason("The kiln broke"), cancelled_by: by, released }
}

fn cancel() -> ActivityCommand {
    ActivityCommand::Cancel { reason: reason("The kiln broke") }
}

fn completed(seats_taken: u32) -> ActivityEvent {
    ActivityEvent::ActivityCompleted { seats_taken }
}

/// One hour before the start.
fn list_due() -> DateTime<Utc> {
    starts() - Duration::hours(1)
}

fn venue_elsewhere() -> Location {
    Location::venue("Town Hall", "2 Market Square, Leeds", 53.79, -1.54).expect("fixture")
}

// ----- specs -----

spec_section!(creation, "Activity — creation", {
    an_organiser_creates_a_draft_activity =>
        given_nothing().as_actor(olivia()).at(t0())
            .when(ActivityCommand::Create { activity_id: ACTIVITY, details: details() })
            .then([drafted()]),
    a_member_without_an_organiser_profile_cannot_create_activities =>
        given_nothing().as_actor(ben()).at(t0())
            .when(ActivityCommand::Create { activity_id: ACTIVITY, details: details() })
            .then_error(DomainError::NotAnOrganiser),
    an_activity_cannot_be_created_twice =>
        given([drafted()]).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Create { activity_id: ACTIVITY, details: details() })
            .then_error(DomainError::ActivityAlreadyExists),
    an_activity_must_start_in_the_future =>
        given_nothing().as_actor(olivia()).at(starts())
            .when(ActivityCommand::Create { activity_id: ACTIVITY, details: details() })
            .then_error(DomainError::invalid("starts_at", "must be in the future")),
    commands_on_an_activity_that_does_not_exist_are_refused =>
        given_nothing().as_actor(olivia()).at(t0())
            .when(ActivityCommand::Submit)
            .then_error(DomainError::ActivityNotFound),
});

spec_section!(moderation, "Activity — moderation lifecycle (draft → pending → published | rejected)", {
    the_organiser_submits_a_public_draft_for_review =>
        given([drafted()]).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Submit)
            .then([submitted()]),
    only_the_organiser_submits_their_activity =>
        given([drafted()]).as_actor(oscar()).at(t0())
            .when(ActivityCommand::Submit)
            .then_error(DomainError::NotTheOrganiser),
    an_invite_only_activity_is_not_submitted_for_review =>
        given(draft_invite_only()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Submit)
            .then_error(DomainError::NotPublic),
    a_pending_activity_cannot_be_submitted_again =>
        given(pending()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Submit)
            .then_error(DomainError::InvalidTransition { from: "pending", action: "submit" }),
    a_published_activity_cannot_be_submitted =>
        given(published()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Submit)
            .then_error(DomainError::InvalidTransition { from: "published", action: "submit" }),
    an_activity_that_has_started_cannot_be_submitted =>
        given([drafted()]).as_actor(olivia()).at(starts())
            .when(ActivityCommand::Submit)
            .then_error(DomainError::ActivityStarted),
    a_moderator_approves_a_pending_activity_which_publishes_it =>
        given(pending()).as_actor(mo()).at(t0())
            .when(ActivityCommand::Approve)
            .then([approved()]),
    only_moderators_approve_activities =>
        given(pending()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Approve)
            .then_error(DomainError::NotAModerator),
    only_pending_activities_are_approved =>
        given([drafted()]).as_actor(mo()).at(t0())
            .when(ActivityCommand::Approve)
            .then_error(DomainError::InvalidTransition { from: "draft", action: "approve" }),
    an_activity_whose_start_passed_while_pending_cannot_be_approved =>
        given(pending()).as_actor(mo()).at(starts())
            .when(ActivityCommand::Approve)
            .then_error(DomainError::ActivityStarted),
    a_moderator_rejects_a_pending_activity_with_a_reason =>
        given(pending()).as_actor(mo()).at(t0())
            .when(ActivityCommand::Reject { reason: reason("Please add the venue's accessibility") })
            .then([rejected()]),
    only_moderators_reject_activities =>
        given(pending()).as_actor(ben()).at(t0())
            .when(ActivityCommand::Reject { reason: reason("meh") })
            .then_error(DomainError::NotAModerator),
    a_published_activity_cannot_be_rejected =>
        given(published()).as_actor(mo()).at(t0())
            .when(ActivityCommand::Reject { reason: reason("too late") })
            .then_error(DomainError::InvalidTransition { from: "published", action: "reject" }),
    a_rejected_activity_is_edited_and_submitted_again =>
        given(with(pending(), [rejected(), updated(
            details_with(|d| d.description = Description::parse("Step-free access via the side door.").expect("fixture")),
            &["description"],
            10,
        )]))
            .as_actor(olivia()).at(t0())
            .when(ActivityCommand::Submit)
            .then([submitted()]),
    the_organiser_publishes_an_invite_only_activity_directly =>
        given(draft_invite_only()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Publish)
            .then([ActivityEvent::ActivityPublished { series: None,
                organiser_id: OLIVIA,
                time: time(starts(), ends()),
                visibility: Visibility::InviteOnly,
                approved_by: None,
            }]),
    a_public_activity_cannot_skip_moderation =>
        given([drafted()]).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Publish)
            .then_error(DomainError::NotInviteOnly),
    only_the_organiser_publishes_their_invite_only_activity =>
        given(draft_invite_only()).as_actor(oscar()).at(t0())
            .when(ActivityCommand::Publish)
            .then_error(DomainError::NotTheOrganiser),
    a_published_invite_only_activity_cannot_be_published_again =>
        given(invite_only()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Publish)
            .then_error(DomainError::InvalidTransition { from: "published", action: "publish" }),
    an_invite_only_activity_that_has_started_cannot_be_published =>
        given(draft_invite_only()).as_actor(olivia()).at(starts())
            .when(ActivityCommand::Publish)
            .then_error(DomainError::ActivityStarted),
});

spec_section!(editing, "Activity — editing details", {
    anything_goes_in_a_draft =>
        given([drafted()]).as_actor(olivia()).at(t0())
            .when(patch(|p| {
                p.time = Some(time(at(2030, 7, 1, 10, 0), at(2030, 7, 1, 12, 0)));
                p.capacity = Some(capacity(20));
                p.price = Some(euros(1500));
                p.visibility = Some(Visibility::InviteOnly);
            }))
            .then([updated(
                details_with(|d| {
                    d.time = time(at(2030, 7, 1, 10, 0), at(2030, 7, 1, 12, 0));
                    d.capacity = capacity(20);
                    d.price = euros(1500);
                    d.visibility = Visibility::InviteOnly;
                }),
                &["time", "capacity", "price", "visibility"],
                20,
            )]),
    anything_goes_in_a_rejected_activity =>
        given(with(pending(), [rejected()])).as_actor(olivia()).at(t0())
            .when(patch(|p| {
                p.location = Some(venue_elsewhere());
                p.age_range = Some(None);
            }))
            .then([updated(
                details_with(|d| {
                    d.location = venue_elsewhere();
                    d.age_range = None;
                }),
                &["location", "age_range"],
                10,
            )]),
    a_draft_cannot_be_moved_into_the_past =>
        given([drafted()]).as_actor(olivia()).at(t0())
            .when(patch(|p| p.time = Some(time(at(2030, 4, 1, 10, 0), at(2030, 4, 1, 12, 0)))))
            .then_error(DomainError::invalid("starts_at", "must be in the future")),
    a_pending_activity_cannot_be_edited_while_under_review =>
        given(pending()).as_actor(olivia()).at(t0())
            .when(patch(|p| p.title = Some(title("Kids pottery!"))))
            .then_error(DomainError::InvalidTransition { from: "pending", action: "edit" }),
    a_published_activity_changes_its_title_description_and_tags =>
        given(published()).as_actor(olivia()).at(t0())
            .when(patch(|p| {
                p.title = Some(title("Kids pottery: bowls"));
                p.description = Some(Description::parse("Now with glazes.").expect("fixture"));
                p.tags = Some(Tags::parse(["clay", "kids", "glaze"]).expect("fixture"));
            }))
            .then([updated(
                details_with(|d| {
                    d.title = title("Kids pottery: bowls");
                    d.description = Description::parse("Now with glazes.").expect("fixture");
                    d.tags = Tags::parse(["clay", "kids", "glaze"]).expect("fixture");
                }),
                &["title", "description", "tags"],
                10,
            )]),
    a_published_activitys_time_changes_only_by_rescheduling =>
        given(published()).as_actor(olivia()).at(t0())
            .when(patch(|p| p.time = Some(time(at(2030, 7, 1, 10, 0), at(2030, 7, 1, 12, 0)))))
            .then_error(DomainError::TimeChangeNeedsReschedule),
    a_published_activitys_price_is_locked =>
        given(published()).as_actor(olivia()).at(t0())
            .when(patch(|p| p.price = Some(euros(500))))
            .then_error(DomainError::FieldLockedAfterPublish { field: "price" }),
    a_published_activitys_visibility_is_locked =>
        given(published()).as_actor(olivia()).at(t0())
            .when(patch(|p| p.visibility = Some(Visibility::InviteOnly)))
            .then_error(DomainError::FieldLockedAfterPublish { field: "visibility" }),
    a_published_activitys_location_is_locked =>
        given(published()).as_actor(olivia()).at(t0())
            .when(patch(|p| p.location = Some(venue_elsewhere())))
            .then_error(DomainError::FieldLockedAfterPublish { field: "location" }),
    a_published_activitys_category_age_range_and_waitlist_are_locked =>
        given(published()).as_actor(olivia()).at(t0())
            .when(patch(|p| p.age_range = Some(Some(AgeRange::parse(3, 6).expect("fixture")))))
            .then_error(DomainError::FieldLockedAfterPublish { field: "age_range" }),
    a_patch_repeating_the_current_locked_values_is_accepted =>
        given(published()).as_actor(olivia()).at(t0())
            .when(patch(|p| {
                p.price = Some(euros(0));
                p.time = Some(time(starts(), ends()));
                p.title = Some(title("Kids pottery club"));
            }))
            .then([updated(details_with(|d| d.title = title("Kids pottery club")), &["title"], 10)]),
    a_published_activitys_capacity_can_grow =>
        given(with(published(), [confirmed(B1, BEN, 2, 8)])).as_actor(olivia()).at(t0())
            .when(patch(|p| p.capacity = Some(capacity(12))))
            .then([updated(details_with(|d| d.capacity = capacity(12)), &["capacity"], 10)]),
    capacity_may_not_drop_below_the_seats_taken =>
        given(with(published(), [confirmed(B1, BEN, 2, 8), confirmed(B2, CARA, 3, 5)])).as_actor(olivia()).at(t0())
            .when(patch(|p| p.capacity = Some(capacity(4))))
            .then_error(DomainError::CapacityBelowSeatsTaken { capacity: 4, seats_taken: 5 }),
    capacity_may_drop_to_exactly_the_seats_taken =>
        given(with(published(), [confirmed(B1, BEN, 2, 8), confirmed(B2, CARA, 3, 5)])).as_actor(olivia()).at(t0())
            .when(patch(|p| p.capacity = Some(capacity(5))))
            .then([updated(details_with(|d| d.capacity = capacity(5)), &["capacity"], 0)]),
    growing_the_capacity_promotes_waitlisted_bookings_that_now_fit =>
        given(with(small(2, true), [confirmed(B1, BEN, 2, 0), joined(B2, CARA, 1, 1)])).as_actor(olivia()).at(t0())
            .when(patch(|p| p.capacity = Some(capacity(3))))
            .then([
                updated(details_with(|d| d.capacity = capacity(3)), &["capacity"], 1),
                promoted(B2, CARA, 1),
                confirmed(B2, CARA, 1, 0),
            ]),
    an_edit_that_changes_nothing_emits_nothing =>
        given(published()).as_actor(olivia()).at(t0())
            .when(patch(|p| p.title = Some(title("Kids pottery"))))
            .then_nothing(),
    only_the_organiser_edits_their_activity =>
        given([drafted()]).as_actor(oscar()).at(t0())
            .when(patch(|p| p.title = Some(title("Mine now"))))
            .then_error(DomainError::NotTheOrganiser),
    a_cancelled_activity_cannot_be_edited =>
        given(with(published(), [activity_cancelled(OLIVIA, vec![])])).as_actor(olivia()).at(t0())
            .when(patch(|p| p.title = Some(title("Kids pottery (cancelled)"))))
            .then_error(DomainError::InvalidTransition { from: "cancelled", action: "edit" }),
});

spec_section!(rescheduling, "Activity — rescheduling", {
    the_organiser_reschedules_a_published_activity =>
        given(published()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Reschedule { time: time(at(2030, 6, 8, 10, 0), at(2030, 6, 8, 12, 0)) })
            .then([ActivityEvent::ActivityRescheduled {
                time: time(at(2030, 6, 8, 10, 0), at(2030, 6, 8, 12, 0)),
                previous: time(starts(), ends()),
            }]),
    a_draft_can_be_rescheduled_too =>
        given([drafted()]).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Reschedule { time: time(at(2030, 6, 8, 10, 0), at(2030, 6, 8, 12, 0)) })
            .then([ActivityEvent::ActivityRescheduled {
                time: time(at(2030, 6, 8, 10, 0), at(2030, 6, 8, 12, 0)),
                previous: time(starts(), ends()),
            }]),
    an_activity_cannot_be_rescheduled_into_the_past =>
        given(published()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Reschedule { time: time(at(2030, 4, 8, 10, 0), at(2030, 4, 8, 12, 0)) })
            .then_error(DomainError::invalid("starts_at", "must be in the future")),
    rescheduling_to_the_same_time_changes_nothing =>
        given(published()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::Reschedule { time: time(starts(), ends()) })
            .then_nothing(),
    an_activity_that_has_started_cannot_be_rescheduled =>
        given(published()).as_actor(olivia()).at(at(2030, 6, 1, 10, 30))
            .when(ActivityCommand::Reschedule { time: time(at(2030, 6, 8, 10, 0), at(2030, 6, 8, 12, 0)) })
            .then_error(DomainError::ActivityStarted),
    only_the_organiser_reschedules =>
        given(published()).as_actor(mo()).at(t0())
            .when(ActivityCommand::Reschedule { time: time(at(2030, 6, 8, 10, 0), at(2030, 6, 8, 12, 0)) })
            .then_error(DomainError::NotTheOrganiser),
    a_completed_activity_cannot_be_rescheduled =>
        given(with(published(), [completed(0)])).as_actor(olivia()).at(at(2030, 6, 2, 9, 0))
            .when(ActivityCommand::Reschedule { time: time(at(2030, 6, 8, 10, 0), at(2030, 6, 8, 12, 0)) })
            .then_error(DomainError::InvalidTransition { from: "completed", action: "reschedule" }),
});

spec_section!(cancellation, "Activity — cancellation", {
    the_organiser_cancels_a_draft =>
        given([drafted()]).as_actor(olivia()).at(t0())
            .when(cancel())
            .then([activity_cancelled(OLIVIA, vec![])]),
    a_pending_activity_can_be_cancelled =>
        given(pending()).as_actor(olivia()).at(t0())
            .when(cancel())
            .then([activity_cancelled(OLIVIA, vec![])]),
    a_rejected_activity_can_be_cancelled =>
        given(with(pending(), [rejected()])).as_actor(olivia()).at(t0())
            .when(cancel())
            .then([activity_cancelled(OLIVIA, vec![])]),
    a_moderator_cancels_any_activity =>
        given(published()).as_actor(mo()).at(t0())
            .when(cancel())
            .then([activity_cancelled(MO, vec![])]),
    another_organiser_cannot_cancel_an_activity =>
        given(published()).as_actor(oscar()).at(t0())
            .when(cancel())
            .then_error(DomainError::NotTheOrganiser),
    cancelling_releases_every_live_booking_and_the_waitlist =>
        given(with(small(3, true), [
            confirmed(B1, BEN, 2, 1),
            confirmed(B3, DAN, 1, 0),
            cancelled(B3, DAN, 1, 1, 1),
            joined(B2, CARA, 2, 1),
        ]))
            .as_actor(olivia()).at(t0())
            .when(cancel())
            .then([activity_cancelled(OLIVIA, vec![
                ReleasedBooking { booking_id: B1, member_id: BEN, seats: 2, status: BookingStatus::Confirmed },
                ReleasedBooking { booking_id: B2, member_id: CARA, seats: 2, status: BookingStatus::Waitlisted },
            ])]),
    a_cancelled_activity_cannot_be_cancelled_again =>
        given(with(published(), [activity_cancelled(OLIVIA, vec![])])).as_actor(mo()).at(t0())
            .when(cancel())
            .then_error(DomainError::InvalidTransition { from: "cancelled", action: "cancel" }),
    a_completed_activity_cannot_be_cancelled =>
        given(with(published(), [completed(0)])).as_actor(olivia()).at(at(2030, 6, 2, 9, 0))
            .when(cancel())
            .then_error(DomainError::InvalidTransition { from: "completed", action: "cancel" }),
    a_cancelled_activity_takes_no_bookings =>
        given(with(published(), [activity_cancelled(OLIVIA, vec![])])).as_actor(ben()).at(t0())
            .when(book(B1, 1))
            .then_error(DomainError::InvalidTransition { from: "cancelled", action: "book" }),
});

spec_section!(media, "Activity — media", {
    the_organiser_attaches_a_photo_to_a_draft =>
        given([drafted()]).as_actor(olivia()).at(t0())
            .when(ActivityCommand::AttachMedia { media_id: M1, file: photo(250_000) })
            .then([media_attached(M1)]),
    the_organiser_attaches_a_video_to_a_published_activity =>
        given(published()).as_actor(olivia()).at(t0())
            .when(ActivityCommand::AttachMedia { media_id: M2, file: video() })
            .then([ActivityEvent::MediaAttached { media_id: M2, file: video() }]),
    an_activity_has_at_most_20_media =>
        given(with(vec![drafted()], twenty_media())).as_actor(olivia()).at(t0())
            .when(ActivityCommand::AttachMedia { media_id: M1, file: photo(250_000) })
            .then_error(DomainError::TooManyMedia { max: 20 }),
    the_same_media_cannot_be_attached_twice =>
        given([drafted(), media_attached(M1)]).as_actor(olivia()).at(t0())
            .when(ActivityCommand::AttachMedia { media_id: M1, file: photo(250_000) })
            .then_error(DomainError::MediaAlreadyAttached),
    only_the_organiser_attaches_media =>
        given(published()).as_actor(ben()).at(t0())
            .when(ActivityCommand::AttachMedia { media_id: M1, file: photo(250_000) })
            .then_error(DomainError::NotTheOrganiser),
    media_cannot_be_attached_to_a_cancelled_activity =>
        given(with(published(), [activity_cancelled(OLIVIA, vec![])])).as_actor(olivia()).at(t0())
            .when(ActivityCommand::AttachMedia { media_id: M1, file: photo(250_000) })
            .then_error(DomainError::InvalidTransition { from: "cancelled", action: "attach media to" }),
});

spec_section!(completion, "Activity — completion", {
    the_scheduler_completes_a_published_activity_when_it_ends =>
        given(with(published(), [confirmed(B1, BEN, 2, 8)])).as_actor(system()).at(ends())
            .when(ActivityCommand::Complete)
            .then([completed(2)]),
    an_activity_does_not_complete_before_it_ends =>
        given(published()).as_actor(system()).at(at(2030, 6, 1, 11, 59))
            .when(ActivityCommand::Complete)
            .then_error(DomainError::ActivityNotEnded),
    only_the_scheduler_completes_activities =>
        given(published()).as_actor(olivia()).at(ends())
            .when(ActivityCommand::Complete)
            .then_error(DomainError::NotTheSystem),
    completing_twice_changes_nothing =>
        given(with(published(), [completed(0)])).as_actor(system()).at(ends())
            .when(ActivityCommand::Complete)
            .then_nothing(),
    completing_a_cancelled_activity_changes_nothing =>
        given(with(published(), [activity_cancelled(OLIVIA, vec![])])).as_actor(system()).at(ends())
            .when(ActivityCommand::Complete)
            .then_nothing(),
    a_draft_never_completes =>
        given([drafted()]).as_actor(system()).at(ends())
            .when(ActivityCommand::Complete)
            .then_error(DomainError::InvalidTransition { from: "draft", action: "complete" }),
});

spec_section!(booking, "Activity — booking seats", {
    a_member_books_seats_on_a_published_activity =>
        given(published()).as_actor(ben()).at(t0())
            .when(book(B1, 2))
            .then([confirmed(B1, BEN, 2, 8)]),
    a_member_books_for_a_child_within_the_age_range =>
        given(published()).as_actor(ben()).at(t0())
            .when(book_for(B1, 2, &[(MIA, mia_born())]))
            .then([confirmed_with_children(B1, BEN, 2, vec![MIA], 8)]),
    a_child_outside_the_age_range_is_refused =>
        given(published()).as_actor(ben()).at(t0())
            .when(book_for(B1, 3, &[(MIA, mia_born()), (LEO, leo_born())]))
            .then_error(DomainError::AgeOutOfRange),
    a_childs_age_counts_on_the_day_the_activity_starts =>
        given(published()).as_actor(ben()).at(t0())
            .when(book_for(B1, 1, &[(LEO, date(2025, 6, 1))]))
            .then([confirmed_with_children(B1, BEN, 1, vec![LEO], 9)]),
    a_child_who_turns_eleven_before_the_start_is_too_old =>
        given(published()).as_actor(ben()).at(t0())
            .when(book_for(B1, 1, &[(MIA, date(2019, 5, 31))]))
            .then_error(DomainError::AgeOutOfRange),
    a_booking_needs_a_seat_for_every_child =>
        given(published()).as_actor(ben()).at(t0())
            .when(book_for(B1, 1, &[(MIA, mia_born()), (LEO, date(2024, 1, 1))]))
            .then_error(DomainError::invalid("seats", "must be at least one per child")),
    a_child_listed_twice_is_refused =>
        given(published()).as_actor(ben()).at(t0())
            .when(book_for(B1, 2, &[(MIA, mia_born()), (MIA, mia_born())]))
            .then_error(DomainError::invalid("child_ids", "must not repeat a child")),
    a_booking_needs_at_least_one_seat =>
        given(published()).as_actor(ben()).at(t0())
            .when(book(B1, 0))
            .then_error(DomainError::invalid("seats", "must be at least 1")),
    a_booking_cannot_ask_for_more_seats_than_the_capacity =>
        given(published()).as_actor(ben()).at(t0())
            .when(book(B1, 11))
            .then_error(DomainError::invalid("seats", "must not exceed the activity's capacity")),
    the_last_seats_can_be_booked =>
        given(with(published(), [confirmed(B1, BEN, 8, 2)])).as_actor(cara()).at(t0())
            .when(book(B2, 2))
            .then([confirmed(B2, CARA, 2, 0)]),
    a_member_holds_at_most_one_live_booking_per_activity =>
        given(with(published(), [confirmed(B1, BEN, 2, 8)])).as_actor(ben()).at(t0())
            .when(book(B2, 1))
            .then_error(DomainError::AlreadyBooked),
    a_waitlisted_member_cannot_book_a_second_time =>
        given(with(small(2, true), [confirmed(B1, CARA, 2, 0), joined(B2, BEN, 1, 1)])).as_actor(ben()).at(t0())
            .when(book(B3, 1))
            .then_error(DomainError::AlreadyBooked),
    a_member_who_cancelled_can_book_again =>
        given(with(published(), [confirmed(B1, BEN, 2, 8), cancelled(B1, BEN, 2, 2, 10)])).as_actor(ben()).at(t0())
            .when(book(B2, 1))
            .then([confirmed(B2, BEN, 1, 9)]),
    a_booking_id_is_never_reused =>
        given(with(published(), [confirmed(B1, BEN, 2, 8)])).as_actor(cara()).at(t0())
            .when(book(B1, 1))
            .then_error(DomainError::BookingIdTaken),
    a_draft_cannot_be_booked =>
        given([drafted()]).as_actor(ben()).at(t0())
            .when(book(B1, 1))
            .then_error(DomainError::InvalidTransition { from: "draft", action: "book" }),
    a_pending_activity_cannot_be_booked =>
        given(pending()).as_actor(ben()).at(t0())
            .when(book(B1, 1))
            .then_error(DomainError::InvalidTransition { from: "pending", action: "book" }),
    bookings_close_when_the_activity_starts =>
        given(published()).as_actor(ben()).at(starts())
            .when(book(B1, 1))
            .then_error(DomainError::ActivityStarted),
    a_completed_activity_takes_no_bookings =>
        given(with(published(), [completed(0)])).as_actor(ben()).at(at(2030, 6, 2, 9, 0))
            .when(book(B1, 1))
            .then_error(DomainError::InvalidTransition { from: "completed", action: "book" }),
    an_invite_only_activity_is_booked_through_invitations_only =>
        given(invite_only()).as_actor(ben()).at(t0())
            .when(book(B1, 1))
            .then_error(DomainError::InvitationRequired),
});

spec_section!(waitlist, "Activity — capacity and waitlist", {
    a_full_activity_puts_the_next_booking_on_the_waitlist =>
        given(with(small(2, true), [confirmed(B1, BEN, 2, 0)])).as_actor(cara()).at(t0())
            .when(book(B2, 1))
            .then([joined(B2, CARA, 1, 1)]),
    a_booking_larger_than_the_seats_left_joins_the_waitlist =>
        given(with(small(3, true), [confirmed(B1, BEN, 2, 1)])).as_actor(cara()).at(t0())
            .when(book(B2, 2))
            .then([joined(B2, CARA, 2, 1)]),
    a_full_activity_without_a_waitlist_refuses_the_booking =>
        given(with(small(2, false), [confirmed(B1, BEN, 2, 0)])).as_actor(cara()).at(t0())
            .when(book(B2, 1))
            .then_error(DomainError::ActivityFull),
    waitlist_positions_follow_the_order_of_arrival =>
        given(with(small(2, true), [confirmed(B1, BEN, 2, 0), joined(B2, CARA, 1, 1)])).as_actor(dan()).at(t0())
            .when(book(B3, 1))
            .then([joined(B3, DAN, 1, 2)]),
    a_booking_that_fits_is_confirmed_even_while_larger_bookings_wait =>
        given(with(small(3, true), [confirmed(B1, BEN, 2, 1), joined(B2, CARA, 2, 1)])).as_actor(dan()).at(t0())
            .when(book(B3, 1))
            .then([confirmed(B3, DAN, 1, 0)]),
    cancelling_a_confirmed_booking_promotes_the_first_waitlisted_booking_that_fits =>
        given(with(small(3, true), [
            confirmed(B1, BEN, 2, 1),
            confirmed(B2, CARA, 1, 0),
            joined(B3, DAN, 2, 1),
            joined(B4, EVE, 1, 2),
        ]))
            .as_actor(ben()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then([cancelled(B1, BEN, 2, 2, 2), promoted(B3, DAN, 2), confirmed(B3, DAN, 2, 0)]),
    promotion_skips_a_waitlisted_booking_too_large_for_the_freed_seats =>
        given(with(small(3, true), [
            confirmed(B1, BEN, 1, 2),
            confirmed(B2, CARA, 2, 0),
            joined(B3, DAN, 3, 1),
            joined(B4, EVE, 1, 2),
        ]))
            .as_actor(ben()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then([cancelled(B1, BEN, 1, 1, 1), promoted(B4, EVE, 1), confirmed(B4, EVE, 1, 0)]),
    freed_seats_promote_every_waitlisted_booking_that_fits_in_order =>
        given(with(small(4, true), [
            confirmed(B1, BEN, 4, 0),
            joined(B2, CARA, 1, 1),
            joined(B3, DAN, 2, 2),
            joined(B4, EVE, 2, 3),
        ]))
            .as_actor(ben()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then([
                cancelled(B1, BEN, 4, 4, 4),
                promoted(B2, CARA, 1),
                confirmed(B2, CARA, 1, 3),
                promoted(B3, DAN, 2),
                confirmed(B3, DAN, 2, 1),
            ]),
    a_waitlisted_member_cancels_and_leaves_the_waitlist =>
        given(with(small(2, true), [confirmed(B1, BEN, 2, 0), joined(B2, CARA, 1, 1)])).as_actor(cara()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B2 })
            .then([cancelled(B2, CARA, 1, 0, 0)]),
    a_promoted_booking_on_a_paid_activity_is_reserved_for_payment =>
        given(with(paid(2), [reserved(B1, BEN, 2, 0), paid_confirmed(B1, BEN, 2, 0, "pay_ben"), joined(B2, CARA, 1, 1)]))
            .as_actor(ben()).at(t0_plus_minutes(60))
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then([
                cancelled(B1, BEN, 2, 2, 2),
                promoted(B2, CARA, 1),
                reserved_at(B2, CARA, 1, 1, t0_plus_minutes(60)),
            ]),
    reserved_seats_count_against_the_capacity =>
        given(with(paid(2), [reserved(B1, BEN, 2, 0)])).as_actor(cara()).at(t0())
            .when(book(B2, 1))
            .then([joined(B2, CARA, 1, 1)]),
});

spec_section!(cancelling_bookings, "Activity — cancelling bookings", {
    a_member_cancels_their_booking_before_the_start =>
        given(with(published(), [confirmed(B1, BEN, 2, 8)])).as_actor(ben()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then([cancelled(B1, BEN, 2, 2, 10)]),
    only_the_booking_member_cancels_it =>
        given(with(published(), [confirmed(B1, BEN, 2, 8)])).as_actor(cara()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then_error(DomainError::NotTheBookingHolder),
    the_organiser_cannot_cancel_a_members_booking =>
        given(with(published(), [confirmed(B1, BEN, 2, 8)])).as_actor(olivia()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then_error(DomainError::NotTheBookingHolder),
    a_booking_cannot_be_cancelled_once_the_activity_started =>
        given(with(published(), [confirmed(B1, BEN, 2, 8)])).as_actor(ben()).at(starts())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then_error(DomainError::ActivityStarted),
    a_cancelled_booking_cannot_be_cancelled_again =>
        given(with(published(), [confirmed(B1, BEN, 2, 8), cancelled(B1, BEN, 2, 2, 10)])).as_actor(ben()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then_error(DomainError::BookingNotLive),
    cancelling_an_unknown_booking_is_refused =>
        given(published()).as_actor(ben()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then_error(DomainError::BookingNotFound),
    a_reservation_can_be_cancelled_before_paying =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(ben()).at(t0_plus_minutes(5))
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then([cancelled(B1, BEN, 2, 2, 10)]),
    a_paid_booking_can_be_cancelled_but_payments_are_not_refunded =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8), paid_confirmed(B1, BEN, 2, 8, "pay_ben")])).as_actor(ben()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: B1 })
            .then([cancelled(B1, BEN, 2, 2, 10)]),
});

spec_section!(paid_reservations, "Activity — paid reservations", {
    booking_a_paid_activity_holds_the_seats_for_15_minutes =>
        given(paid(10)).as_actor(ben()).at(t0())
            .when(book(B1, 2))
            .then([reserved(B1, BEN, 2, 8)]),
    a_member_cannot_confirm_their_own_payment =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(ben()).at(t0_plus_minutes(4))
            .when(pay(B1, "pay_ben", euros(2500)))
            .then_error(DomainError::NotTheSystem),
    the_payment_webhook_confirms_as_the_system_when_the_amount_matches =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(system()).at(t0_plus_minutes(4))
            .when(pay(B1, "pay_ben", euros(2500)))
            .then([paid_confirmed(B1, BEN, 2, 8, "pay_ben")]),
    a_payment_of_another_amount_is_refused =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(system()).at(t0_plus_minutes(4))
            .when(pay(B1, "pay_ben", euros(1250)))
            .then_error(DomainError::PaymentMismatch),
    a_confirmation_without_the_amount_is_refused =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(system()).at(t0_plus_minutes(4))
            .when(ActivityCommand::ConfirmPayment {
                booking_id: B1,
                payment_ref: PaymentRef::parse("pay_ben").expect("fixture"),
                amount: None,
            })
            .then_error(DomainError::PaymentMismatch),
    a_payment_in_another_currency_is_refused =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(system()).at(t0_plus_minutes(4))
            .when(pay(B1, "pay_ben", Money::parse(2500, "USD").expect("fixture")))
            .then_error(DomainError::PaymentMismatch),
    a_redelivered_payment_changes_nothing =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8), paid_confirmed(B1, BEN, 2, 8, "pay_ben")]))
            .as_actor(system()).at(t0_plus_minutes(6))
            .when(pay(B1, "pay_ben", euros(2500)))
            .then_nothing(),
    a_second_payment_for_a_paid_booking_is_refused =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8), paid_confirmed(B1, BEN, 2, 8, "pay_ben")]))
            .as_actor(system())
            .at(t0_plus_minutes(6))
            .when(pay(B1, "pay_ben_again", euros(2500)))
            .then_error(DomainError::NotAwaitingPayment),
    a_free_booking_awaits_no_payment =>
        given(with(published(), [confirmed(B1, BEN, 2, 8)])).as_actor(system()).at(t0())
            .when(pay(B1, "pay_ben", euros(0)))
            .then_error(DomainError::NotAwaitingPayment),
    a_waitlisted_booking_cannot_be_paid_for =>
        given(with(paid(2), [reserved(B1, BEN, 2, 0), joined(B2, CARA, 1, 1)])).as_actor(system()).at(t0())
            .when(pay(B2, "pay_cara", euros(1250)))
            .then_error(DomainError::NotAwaitingPayment),
    paying_for_an_unknown_booking_is_refused =>
        given(paid(10)).as_actor(system()).at(t0())
            .when(pay(B1, "pay_ben", euros(2500)))
            .then_error(DomainError::BookingNotFound),
    a_failed_payment_releases_the_reservation =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(system()).at(t0_plus_minutes(3))
            .when(payment_failed(B1))
            .then([ActivityEvent::ReservationExpired { booking_id: B1, member_id: BEN, seats: 2, seats_left: 10 }]),
    a_failed_payment_gives_the_seats_to_the_waitlist =>
        given(with(paid(2), [reserved(B1, BEN, 2, 0), joined(B2, CARA, 1, 1)])).as_actor(system()).at(t0_plus_minutes(3))
            .when(payment_failed(B1))
            .then([
                ActivityEvent::ReservationExpired { booking_id: B1, member_id: BEN, seats: 2, seats_left: 2 },
                promoted(B2, CARA, 1),
                reserved_at(B2, CARA, 1, 1, t0_plus_minutes(3)),
            ]),
    a_failed_payment_after_a_confirmed_one_changes_nothing =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8), paid_confirmed(B1, BEN, 2, 8, "pay_ben")]))
            .as_actor(system()).at(t0_plus_minutes(6))
            .when(payment_failed(B1))
            .then_nothing(),
    only_the_payment_webhook_reports_a_failed_payment =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(ben()).at(t0_plus_minutes(3))
            .when(payment_failed(B1))
            .then_error(DomainError::NotTheSystem),
    the_scheduler_expires_an_unpaid_reservation_after_15_minutes =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(system()).at(t0_plus_minutes(15))
            .when(ActivityCommand::ExpireReservation { booking_id: B1 })
            .then([ActivityEvent::ReservationExpired { booking_id: B1, member_id: BEN, seats: 2, seats_left: 10 }]),
    a_reservation_does_not_expire_before_15_minutes =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(system()).at(t0_plus_minutes(14))
            .when(ActivityCommand::ExpireReservation { booking_id: B1 })
            .then_error(DomainError::ReservationNotExpired),
    only_the_scheduler_expires_reservations =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(cara()).at(t0_plus_minutes(20))
            .when(ActivityCommand::ExpireReservation { booking_id: B1 })
            .then_error(DomainError::NotTheSystem),
    expiring_a_paid_reservation_changes_nothing =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8), paid_confirmed(B1, BEN, 2, 8, "pay_ben")]))
            .as_actor(system()).at(t0_plus_minutes(15))
            .when(ActivityCommand::ExpireReservation { booking_id: B1 })
            .then_nothing(),
    an_expired_reservation_releases_its_seats_to_the_waitlist =>
        given(with(paid(2), [reserved(B1, BEN, 2, 0), joined(B2, CARA, 1, 1)])).as_actor(system()).at(t0_plus_minutes(15))
            .when(ActivityCommand::ExpireReservation { booking_id: B1 })
            .then([
                ActivityEvent::ReservationExpired { booking_id: B1, member_id: BEN, seats: 2, seats_left: 2 },
                promoted(B2, CARA, 1),
                reserved_at(B2, CARA, 1, 1, t0_plus_minutes(15)),
            ]),
    a_payment_after_the_expiry_is_refused =>
        given(with(paid(10), [
            reserved(B1, BEN, 2, 8),
            ActivityEvent::ReservationExpired { booking_id: B1, member_id: BEN, seats: 2, seats_left: 10 },
        ]))
            .as_actor(system()).at(t0_plus_minutes(16))
            .when(pay(B1, "pay_ben", euros(2500)))
            .then_error(DomainError::ReservationExpired),
    a_late_payment_still_confirms_while_the_seats_are_held =>
        given(with(paid(10), [reserved(B1, BEN, 2, 8)])).as_actor(system()).at(t0_plus_minutes(16))
            .when(pay(B1, "pay_ben", euros(2500)))
            .then([paid_confirmed(B1, BEN, 2, 8, "pay_ben")]),
});

spec_section!(invitations, "Activity — invitations (invite-only, after publishing, before the start)", {
    the_organiser_invites_guests_to_a_published_invite_only_activity =>
        given(invite_only()).as_actor(olivia()).at(t0())
            .when(invite(vec![invitation(I1, "dan@example.org"), invitation(I2, "eve@example.org")]))
            .then([invited()]),
    guests_cannot_be_invited_before_publishing =>
        given(draft_invite_only()).as_actor(olivia()).at(t0())
            .when(invite(vec![invitation(I1, "dan@example.org")]))
            .then_error(DomainError::InvalidTransition { from: "draft", action: "invite guests to" }),
    guests_cannot_be_invited_once_the_activity_started =>
        given(invite_only()).as_actor(olivia()).at(starts())
            .when(invite(vec![invitation(I1, "dan@example.org")]))
            .then_error(DomainError::ActivityStarted),
    a_public_activity_takes_no_invitations =>
        given(published()).as_actor(olivia()).at(t0())
            .when(invite(vec![invitation(I1, "dan@example.org")]))
            .then_error(DomainError::NotInviteOnly),
    only_the_organiser_invites_guests =>
        given(invite_only()).as_actor(ben()).at(t0())
            .when(invite(vec![invitation(I1, "dan@example.org")]))
            .then_error(DomainError::NotTheOrganiser),
    a_command_carries_at_most_500_invitations =>
        given(invite_only()).as_actor(olivia()).at(t0())
            .when(invite(crowd_invitations(501)))
            .then_error(DomainError::TooManyInvitations { max: 500 }),
    a_command_of_exactly_500_invitations_is_accepted =>
        given(invite_only()).as_actor(olivia()).at(t0())
            .when(invite(crowd_invitations(500)))
            .then([ActivityEvent::GuestsInvited { invitations: crowd_invitations(500).into_iter().map(Into::into).collect() }]),
    an_empty_invitation_list_is_refused =>
        given(invite_only()).as_actor(olivia()).at(t0())
            .when(invite(vec![]))
            .then_error(DomainError::invalid("invitations", "must not be empty")),
    addresses_already_invited_are_skipped_whatever_their_case =>
        given(with(invite_only(), [invited()])).as_actor(olivia()).at(t0())
            .when(invite(vec![invitation(I3, "Finn@Example.org"), invitation(Uuid::from_u128(0x0f10), "DAN@example.org")]))
            .then([ActivityEvent::GuestsInvited { invitations: vec![invitation(I3, "Finn@Example.org").into()] }]),
    inviting_only_addresses_already_invited_changes_nothing =>
        given(with(invite_only(), [invited()])).as_actor(olivia()).at(t0())
            .when(invite(vec![invitation(I3, "eve@example.org")]))
            .then_nothing(),
    an_invitation_id_is_used_once =>
        given(with(invite_only(), [invited()])).as_actor(olivia()).at(t0())
            .when(invite(vec![invitation(I1, "finn@example.org")]))
            .then_error(DomainError::InvitationIdTaken),
    an_invitee_accepts_and_takes_a_seat =>
        given(with(invite_only(), [invited()])).as_actor(dan()).at(t0())
            .when(ActivityCommand::AcceptInvitation { invitation_id: I1 })
            .then([accepted(I1, DAN), invitation_confirmed(I1, DAN, 9)]),
    an_accepted_invitation_still_respects_the_capacity =>
        given(with(invite_only_with(|d| {
            d.capacity = capacity(1);
            d.waitlist = false;
        }), [invited(), accepted(I1, DAN), invitation_confirmed(I1, DAN, 0)]))
            .as_actor(eve()).at(t0())
            .when(ActivityCommand::AcceptInvitation { invitation_id: I2 })
            .then_error(DomainError::ActivityFull),
    an_invitee_of_a_full_activity_with_a_waitlist_waits_for_a_seat =>
        given(with(invite_only_with(|d| d.capacity = capacity(1)), [invited(), accepted(I1, DAN), invitation_confirmed(I1, DAN, 0)]))
            .as_actor(eve()).at(t0())
            .when(ActivityCommand::AcceptInvitation { invitation_id: I2 })
            .then([accepted(I2, EVE), joined(I2, EVE, 1, 1)]),
    accepting_an_invitation_to_a_paid_activity_reserves_the_seat =>
        given(with(invite_only_with(|d| d.price = euros(1250)), [invited()])).as_actor(dan()).at(t0())
            .when(ActivityCommand::AcceptInvitation { invitation_id: I1 })
            .then([accepted(I1, DAN), reserved(I1, DAN, 1, 9)]),
    an_invitee_declines =>
        given(with(invite_only(), [invited()])).as_actor(eve()).at(t0())
            .when(ActivityCommand::DeclineInvitation { invitation_id: I2 })
            .then([ActivityEvent::InvitationDeclined { invitation_id: I2, member_id: EVE }]),
    an_answered_invitation_cannot_be_answered_again =>
        given(with(invite_only(), [invited(), ActivityEvent::InvitationDeclined { invitation_id: I2, member_id: EVE }]))
            .as_actor(eve()).at(t0())
            .when(ActivityCommand::AcceptInvitation { invitation_id: I2 })
            .then_error(DomainError::InvitationAlreadyAnswered),
    an_accepted_invitation_cannot_be_declined =>
        given(with(invite_only(), [invited(), accepted(I1, DAN), invitation_confirmed(I1, DAN, 9)]))
            .as_actor(dan()).at(t0())
            .when(ActivityCommand::DeclineInvitation { invitation_id: I1 })
            .then_error(DomainError::InvitationAlreadyAnswered),
    an_unknown_invitation_is_refused =>
        given(with(invite_only(), [invited()])).as_actor(dan()).at(t0())
            .when(ActivityCommand::AcceptInvitation { invitation_id: I3 })
            .then_error(DomainError::InvitationNotFound),
    invitations_cannot_be_accepted_once_the_activity_started =>
        given(with(invite_only(), [invited()])).as_actor(dan()).at(starts())
            .when(ActivityCommand::AcceptInvitation { invitation_id: I1 })
            .then_error(DomainError::ActivityStarted),
    a_member_who_already_holds_a_seat_cannot_accept_a_second_invitation =>
        given(with(invite_only(), [invited(), accepted(I1, DAN), invitation_confirmed(I1, DAN, 9)]))
            .as_actor(dan()).at(t0())
            .when(ActivityCommand::AcceptInvitation { invitation_id: I2 })
            .then_error(DomainError::AlreadyBooked),
    invitations_of_a_cancelled_activity_cannot_be_accepted =>
        given(with(invite_only(), [invited(), activity_cancelled(OLIVIA, vec![])])).as_actor(dan()).at(t0())
            .when(ActivityCommand::AcceptInvitation { invitation_id: I1 })
            .then_error(DomainError::InvalidTransition { from: "cancelled", action: "accept an invitation to" }),
    an_invitee_who_accepted_cancels_like_any_booking =>
        given(with(invite_only(), [invited(), accepted(I1, DAN), invitation_confirmed(I1, DAN, 9)]))
            .as_actor(dan()).at(t0())
            .when(ActivityCommand::CancelBooking { booking_id: I1 })
            .then([cancelled(I1, DAN, 1, 1, 10)]),
});

spec_section!(attendee_list, "Activity — attendee list", {
    the_scheduler_sends_the_confirmed_attendees_to_the_organiser_one_hour_before_the_start =>
        given(with(published(), [
            confirmed_with_children(B1, BEN, 2, vec![MIA], 8),
            confirmed(B2, CARA, 1, 7),
            confirmed(B3, DAN, 1, 6),
            cancelled(B3, DAN, 1, 1, 7),
        ]))
            .as_actor(system()).at(list_due())
            .when(ActivityCommand::SendAttendeeList)
            .then([ActivityEvent::AttendeeListSent {
                organiser_id: OLIVIA,
                attendees: vec![
                    AttendeeLine { booking_id: B1, member_id: BEN, seats: 2, children: vec![MIA] },
                    AttendeeLine { booking_id: B2, member_id: CARA, seats: 1, children: vec![] },
                ],
                seats_confirmed: 3,
            }]),
    unpaid_reservations_and_the_waitlist_are_not_on_the_list =>
        given(with(paid(2), [
            reserved(B1, BEN, 1, 1),
            paid_confirmed(B1, BEN, 1, 1, "pay_ben"),
            reserved(B2, CARA, 1, 0),
            joined(B3, DAN, 1, 1),
        ]))
            .as_actor(system()).at(list_due())
            .when(ActivityCommand::SendAttendeeList)
            .then([ActivityEvent::AttendeeListSent {
                organiser_id: OLIVIA,
                attendees: vec![AttendeeLine { booking_id: B1, member_id: BEN, seats: 1, children: vec![] }],
                seats_confirmed: 1,
            }]),
    the_attendee_list_is_not_sent_earlier =>
        given(published()).as_actor(system()).at(list_due() - Duration::minutes(1))
            .when(ActivityCommand::SendAttendeeList)
            .then_error(DomainError::AttendeeListNotDue),
    the_attendee_list_is_sent_once =>
        given(with(published(), [ActivityEvent::AttendeeListSent { organiser_id: OLIVIA, attendees: vec![], seats_confirmed: 0 }]))
            .as_actor(system()).at(list_due())
            .when(ActivityCommand::SendAttendeeList)
            .then_nothing(),
    a_rescheduled_activity_sends_its_list_again_before_the_new_start =>
        given(with(published(), [
            ActivityEvent::AttendeeListSent { organiser_id: OLIVIA, attendees: vec![], seats_confirmed: 0 },
            ActivityEvent::ActivityRescheduled { time: time(at(2030, 6, 8, 10, 0), at(2030, 6, 8, 12, 0)), previous: time(starts(), ends()) },
            confirmed(B1, BEN, 1, 9),
        ]))
            .as_actor(system()).at(at(2030, 6, 8, 9, 0))
            .when(ActivityCommand::SendAttendeeList)
            .then([ActivityEvent::AttendeeListSent {
                organiser_id: OLIVIA,
                attendees: vec![AttendeeLine { booking_id: B1, member_id: BEN, seats: 1, children: vec![] }],
                seats_confirmed: 1,
            }]),
    only_the_scheduler_sends_the_attendee_list =>
        given(published()).as_actor(olivia()).at(list_due())
            .when(ActivityCommand::SendAttendeeList)
            .then_error(DomainError::NotTheSystem),
    a_cancelled_activity_sends_no_attendee_list =>
        given(with(published(), [activity_cancelled(OLIVIA, vec![])])).as_actor(system()).at(list_due())
            .when(ActivityCommand::SendAttendeeList)
            .then_nothing(),
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Aggregate;

    #[test]
    fn seats_taken_follow_confirmations_reservations_cancellations_and_expiry() {
        let events = with(
            paid(10),
            [
                reserved(B1, BEN, 2, 8),
                paid_confirmed(B1, BEN, 2, 8, "pay_ben"),
                reserved(B2, CARA, 3, 5),
                ActivityEvent::ReservationExpired { booking_id: B2, member_id: CARA, seats: 3, seats_left: 8 },
                reserved(B3, DAN, 1, 7),
                cancelled(B3, DAN, 1, 1, 8),
            ],
        );
        let state = Activity::fold(&events);
        assert_eq!(state.seats_taken, 2);
        assert_eq!(state.seats_left(), 8);
        assert_eq!(state.status.as_str(), "published");
        assert_eq!(state.bookings[&B2].status, BookingStatus::Expired);
    }

    #[test]
    fn invitation_bookings_remember_their_invitation() {
        let events = with(invite_only(), [invited(), accepted(I1, DAN), invitation_confirmed(I1, DAN, 9)]);
        let state = Activity::fold(&events);
        assert_eq!(state.bookings[&I1].invitation_id, Some(I1));
        assert_eq!(state.invitations[&I1].status, InvitationStatus::Accepted);
    }

    #[test]
    fn cancelling_the_activity_releases_all_seats_in_the_state() {
        let events = with(
            small(2, true),
            [confirmed(B1, BEN, 2, 0), joined(B2, CARA, 1, 1), activity_cancelled(OLIVIA, vec![])],
        );
        let state = Activity::fold(&events);
        assert_eq!(state.seats_taken, 0);
        assert!(state.waitlist.is_empty());
        assert!(state.bookings.values().all(|b| b.status == BookingStatus::Released));
    }

    #[test]
    fn invited_addresses_are_personal_data() {
        assert_eq!(invited().personal_fields(), &["invitations[].email"]);
        assert_eq!(invited().event_type(), "GuestsInvited");
        assert!(approved().personal_fields().is_empty());
    }
}
