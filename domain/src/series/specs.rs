//! The series' specs: creation, moderation, materialization in a real time zone,
//! skipping, ending, updates, and the occurrences as ordinary activities.
//!
//! Unless a spec says otherwise the series is Olivia's "Board game night": public,
//! 12 seats, free, on the second Tuesday of each month at 19:00 Europe/Amsterdam for
//! two hours, six times (`FREQ=MONTHLY;BYDAY=2TU;COUNT=6`), drafted on Monday
//! 2027-03-01. Europe/Amsterdam moves from UTC+1 to UTC+2 on 2027-03-28 and back on
//! 2027-10-31, so 19:00 there is 18:00 UTC in winter and 17:00 UTC in summer.

use super::*;
use crate::activity::{ActivityCommand, ActivityEvent, BookingStatus, ReleasedBooking, SeriesLink};
use crate::core::Actor;
use crate::specs::fixtures::*;
use crate::specs::{Section, spec_section};
use crate::testkit::{given, given_nothing};

/// Every section of the series' specs.
pub fn sections() -> Vec<Section> {
    vec![
        creation::section(),
        moderation::section(),
        materialization::section(),
        time_zones::section(),
        skipping::section(),
        ending::section(),
        updates::section(),
        occurrences::section(),
    ]
}

// ----- fixtures -----

const MONTHLY: &str = "FREQ=MONTHLY;BYDAY=2TU;COUNT=6";
const AMSTERDAM: &str = "Europe/Amsterdam";

fn template_with(visibility: Visibility) -> SeriesTemplate {
    SeriesTemplate {
        title: Title::parse("Board game night").expect("fixture"),
        description: Description::parse("Bring a game or learn a new one.").expect("fixture"),
        category: Category::parse("games").expect("fixture"),
        tags: Tags::parse(["boardgames"]).expect("fixture"),
        capacity: Capacity::parse(12).expect("fixture"),
        price: Money::parse(0, "EUR").expect("fixture"),
        visibility,
        location: Location::venue("Cafe De Spelerij", "Oudegracht 1, Utrecht", 52.09, 5.12).expect("fixture"),
        age_range: None,
        waitlist: true,
    }
}

fn template() -> SeriesTemplate {
    template_with(Visibility::Public)
}

fn spec_of(rule: &str, zone: &str, local_start: &str, minutes: u32) -> ScheduleSpec {
    ScheduleSpec {
        rule: Rule::parse(rule).expect("fixture rule"),
        timezone: parse_timezone(zone).expect("fixture zone"),
        local_start: parse_local_start(local_start).expect("fixture time"),
        duration_minutes: minutes,
    }
}

fn schedule_of(rule: &str, zone: &str, local_start: &str, minutes: u32, anchor: NaiveDate) -> Schedule {
    let s = spec_of(rule, zone, local_start, minutes);
    Schedule::new(s.rule, s.timezone, s.local_start, s.duration_minutes, anchor).expect("fixture schedule")
}

fn monthly() -> Schedule {
    schedule_of(MONTHLY, AMSTERDAM, "19:00", 120, date(2027, 3, 1))
}

fn drafted_as(template: SeriesTemplate, schedule: Schedule) -> SeriesEvent {
    SeriesEvent::SeriesDrafted { series_id: SERIES, organiser_id: OLIVIA, template, schedule }
}

fn drafted() -> SeriesEvent {
    drafted_as(template(), monthly())
}

fn approved() -> SeriesEvent {
    SeriesEvent::SeriesPublished { organiser_id: OLIVIA, visibility: Visibility::Public, approved_by: Some(MO) }
}

/// Drafted, submitted and approved.
fn published_with(schedule: Schedule) -> Vec<SeriesEvent> {
    vec![drafted_as(template(), schedule), SeriesEvent::SeriesSubmitted {}, approved()]
}

fn published() -> Vec<SeriesEvent> {
    published_with(monthly())
}

fn with(mut events: Vec<SeriesEvent>, more: impl IntoIterator<Item = SeriesEvent>) -> Vec<SeriesEvent> {
    events.extend(more);
    events
}

fn time(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> TimeRange {
    TimeRange::parse(starts_at, ends_at).expect("fixture time")
}

/// Occurrence `index` of the default series, starting at `starts_at` (UTC), two hours long.
fn scheduled(index: u32, starts_at: DateTime<Utc>) -> SeriesEvent {
    scheduled_for(template(), index, starts_at, 120)
}

fn scheduled_for(template: SeriesTemplate, index: u32, starts_at: DateTime<Utc>, minutes: i64) -> SeriesEvent {
    let ends_at = starts_at + Duration::minutes(minutes);
    SeriesEvent::OccurrenceScheduled {
        activity_id: occurrence_id(SERIES, index),
        index,
        starts_at,
        ends_at,
        organiser_id: OLIVIA,
        details: template.at(time(starts_at, ends_at)),
        approved_by: Some(MO),
    }
}

/// The first three occurrences of the default series: 9 March (winter time), 13 April
/// and 11 May (summer time).
fn first_three() -> Vec<SeriesEvent> {
    vec![
        scheduled(0, at(2027, 3, 9, 18, 0)),
        scheduled(1, at(2027, 4, 13, 17, 0)),
        scheduled(2, at(2027, 5, 11, 17, 0)),
    ]
}

fn drafted_on() -> DateTime<Utc> {
    at(2027, 3, 1, 9, 0)
}

fn reason(text: &str) -> Reason {
    Reason::parse(text).expect("fixture reason")
}

spec_section!(creation, "Series — creation", {
    an_organiser_drafts_a_series_anchored_on_the_day_it_is_created =>
        given_nothing().as_actor(olivia()).at(drafted_on())
            .when(SeriesCommand::Create { series_id: SERIES, template: template(), schedule: spec_of(MONTHLY, AMSTERDAM, "19:00", 120) })
            .then([drafted()]),
    the_anchor_is_the_local_day_in_the_series_time_zone =>
        given_nothing().as_actor(olivia()).at(at(2027, 2, 28, 23, 30))
            .when(SeriesCommand::Create { series_id: SERIES, template: template(), schedule: spec_of(MONTHLY, AMSTERDAM, "19:00", 120) })
            .then([drafted()]),
    a_member_without_an_organiser_profile_cannot_create_a_series =>
        given_nothing().as_actor(ben()).at(drafted_on())
            .when(SeriesCommand::Create { series_id: SERIES, template: template(), schedule: spec_of(MONTHLY, AMSTERDAM, "19:00", 120) })
            .then_error(DomainError::NotAnOrganiser),
    creating_an_existing_series_again_is_refused =>
        given([drafted()]).as_actor(olivia()).at(drafted_on())
            .when(SeriesCommand::Create { series_id: SERIES, template: template(), schedule: spec_of(MONTHLY, AMSTERDAM, "19:00", 120) })
            .then_error(DomainError::SeriesAlreadyExists),
    a_command_on_a_missing_series_is_refused =>
        given_nothing().as_actor(olivia()).at(drafted_on())
            .when(SeriesCommand::Submit)
            .then_error(DomainError::SeriesNotFound),
});

spec_section!(moderation, "Series — moderation, once for every occurrence", {
    the_organiser_submits_a_public_series_for_review =>
        given([drafted()]).as_actor(olivia()).at(drafted_on())
            .when(SeriesCommand::Submit)
            .then([SeriesEvent::SeriesSubmitted {}]),
    a_moderator_approves_a_pending_series_which_publishes_it =>
        given([drafted(), SeriesEvent::SeriesSubmitted {}]).as_actor(mo()).at(drafted_on())
            .when(SeriesCommand::Approve)
            .then([approved()]),
    a_moderator_rejects_a_pending_series_with_a_reason =>
        given([drafted(), SeriesEvent::SeriesSubmitted {}]).as_actor(mo()).at(drafted_on())
            .when(SeriesCommand::Reject { reason: reason("Please add the address") })
            .then([SeriesEvent::SeriesRejected { organiser_id: OLIVIA, reason: reason("Please add the address") }]),
    only_a_moderator_approves_a_series =>
        given([drafted(), SeriesEvent::SeriesSubmitted {}]).as_actor(olivia()).at(drafted_on())
            .when(SeriesCommand::Approve)
            .then_error(DomainError::NotAModerator),
    a_draft_series_cannot_be_approved =>
        given([drafted()]).as_actor(mo()).at(drafted_on())
            .when(SeriesCommand::Approve)
            .then_error(DomainError::SeriesTransition { from: "draft", action: "approve" }),
    an_invite_only_series_is_published_by_its_organiser =>
        given([drafted_as(template_with(Visibility::InviteOnly), monthly())]).as_actor(olivia()).at(drafted_on())
            .when(SeriesCommand::Publish)
            .then([SeriesEvent::SeriesPublished { organiser_id: OLIVIA, visibility: Visibility::InviteOnly, approved_by: None }]),
    a_public_series_is_not_published_without_review =>
        given([drafted()]).as_actor(olivia()).at(drafted_on())
            .when(SeriesCommand::Publish)
            .then_error(DomainError::NotInviteOnly),
    an_invite_only_series_is_not_submitted =>
        given([drafted_as(template_with(Visibility::InviteOnly), monthly())]).as_actor(olivia()).at(drafted_on())
            .when(SeriesCommand::Submit)
            .then_error(DomainError::NotPublic),
    another_organiser_cannot_submit_the_series =>
        given([drafted()]).as_actor(oscar()).at(drafted_on())
            .when(SeriesCommand::Submit)
            .then_error(DomainError::NotTheOrganiser),
});

spec_section!(materialization, "Series — materializing the next occurrences (the next 3 within 90 days)", {
    a_published_series_schedules_its_next_three_occurrences =>
        given(published()).as_actor(system()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Materialize)
            .then(first_three()),
    materializing_again_schedules_nothing_twice =>
        given(with(published(), first_three())).as_actor(system()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::Materialize)
            .then_nothing(),
    once_an_occurrence_has_passed_the_next_one_joins_the_horizon =>
        given(with(published(), first_three())).as_actor(system()).at(at(2027, 3, 12, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled(3, at(2027, 6, 8, 17, 0))]),
    occurrences_beyond_90_days_wait =>
        given(published()).as_actor(system()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Materialize)
            .then(first_three()),
    a_skipped_occurrence_is_left_out =>
        given(with(published(), [SeriesEvent::OccurrenceSkipped { index: 1, date: date(2027, 4, 13), activity_id: None }]))
            .as_actor(system()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled(0, at(2027, 3, 9, 18, 0)), scheduled(2, at(2027, 5, 11, 17, 0))]),
    the_rule_s_count_ends_the_series =>
        given(with(published(), [
            scheduled(0, at(2027, 3, 9, 18, 0)), scheduled(1, at(2027, 4, 13, 17, 0)), scheduled(2, at(2027, 5, 11, 17, 0)),
            scheduled(3, at(2027, 6, 8, 17, 0)), scheduled(4, at(2027, 7, 13, 17, 0)),
        ])).as_actor(system()).at(at(2027, 7, 1, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled(5, at(2027, 8, 10, 17, 0))]),
    an_ended_series_materializes_nothing_after_its_end =>
        given(with(published(), [SeriesEvent::SeriesEnded { after: date(2027, 4, 1), ended_by: OLIVIA, cancelled: vec![] }]))
            .as_actor(system()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled(0, at(2027, 3, 9, 18, 0))]),
    a_series_whose_end_has_passed_stops_materializing =>
        given(with(published(), [SeriesEvent::SeriesEnded { after: date(2027, 4, 1), ended_by: OLIVIA, cancelled: vec![] }]))
            .as_actor(system()).at(at(2027, 4, 2, 10, 0))
            .when(SeriesCommand::Materialize)
            .then_error(DomainError::SeriesTransition { from: "ended", action: "materialize" }),
    a_draft_series_is_not_materialized =>
        given([drafted()]).as_actor(system()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Materialize)
            .then_error(DomainError::SeriesTransition { from: "draft", action: "materialize" }),
    only_the_system_materializes =>
        given(published()).as_actor(olivia()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Materialize)
            .then_error(DomainError::NotTheSystem),
});

fn weekly_sunday_0230(anchor: NaiveDate) -> Schedule {
    schedule_of("FREQ=WEEKLY;BYDAY=SU;COUNT=1", AMSTERDAM, "02:30", 60, anchor)
}

fn monthly_from(rule: &str, anchor: NaiveDate) -> Schedule {
    schedule_of(rule, AMSTERDAM, "19:00", 120, anchor)
}

spec_section!(time_zones, "Series — local time in a real time zone", {
    second_tuesday_at_19_00_in_amsterdam_is_18_00_utc_in_january =>
        given(published_with(monthly_from("FREQ=MONTHLY;BYDAY=2TU;COUNT=12", date(2027, 1, 4))))
            .as_actor(system()).at(at(2027, 1, 4, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled(0, at(2027, 1, 12, 18, 0)), scheduled(1, at(2027, 2, 9, 18, 0)), scheduled(2, at(2027, 3, 9, 18, 0))]),
    second_tuesday_at_19_00_in_amsterdam_is_17_00_utc_in_july =>
        given(with(
            published_with(monthly_from("FREQ=MONTHLY;BYDAY=2TU;COUNT=12", date(2027, 1, 4))),
            [scheduled(0, at(2027, 1, 12, 18, 0)), scheduled(1, at(2027, 2, 9, 18, 0)), scheduled(2, at(2027, 3, 9, 18, 0)),
             scheduled(3, at(2027, 4, 13, 17, 0)), scheduled(4, at(2027, 5, 11, 17, 0)), scheduled(5, at(2027, 6, 8, 17, 0))],
        )).as_actor(system()).at(at(2027, 6, 20, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled(6, at(2027, 7, 13, 17, 0)), scheduled(7, at(2027, 8, 10, 17, 0)), scheduled(8, at(2027, 9, 14, 17, 0))]),
    a_local_time_in_a_daylight_saving_gap_moves_to_the_first_valid_minute =>
        given(published_with(weekly_sunday_0230(date(2027, 3, 22)))).as_actor(system()).at(at(2027, 3, 22, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled_for(template(), 0, at(2027, 3, 28, 1, 0), 60)]),
    an_ambiguous_local_time_takes_its_first_occurrence =>
        given(published_with(weekly_sunday_0230(date(2027, 10, 25)))).as_actor(system()).at(at(2027, 10, 25, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled_for(template(), 0, at(2027, 10, 31, 0, 30), 60)]),
    bymonthday_31_skips_the_months_without_a_31st =>
        given(published_with(monthly_from("FREQ=MONTHLY;BYMONTHDAY=31;COUNT=3", date(2027, 3, 20))))
            .as_actor(system()).at(at(2027, 3, 20, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled(0, at(2027, 3, 31, 17, 0)), scheduled(1, at(2027, 5, 31, 17, 0))]),
    minus_1fr_is_the_last_friday_of_the_month =>
        given(published_with(monthly_from("FREQ=MONTHLY;BYDAY=-1FR;COUNT=3", date(2027, 3, 1))))
            .as_actor(system()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Materialize)
            .then([scheduled(0, at(2027, 3, 26, 18, 0)), scheduled(1, at(2027, 4, 30, 17, 0)), scheduled(2, at(2027, 5, 28, 17, 0))]),
});

spec_section!(skipping, "Series — skipping one occurrence", {
    skipping_a_materialized_occurrence_cancels_its_activity =>
        given(with(published(), first_three())).as_actor(olivia()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::Skip { date: date(2027, 4, 13) })
            .then([SeriesEvent::OccurrenceSkipped { index: 1, date: date(2027, 4, 13), activity_id: Some(occurrence_id(SERIES, 1)) }]),
    skipping_a_future_occurrence_keeps_it_from_being_materialized =>
        given(published()).as_actor(olivia()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Skip { date: date(2027, 7, 13) })
            .then([SeriesEvent::OccurrenceSkipped { index: 4, date: date(2027, 7, 13), activity_id: None }]),
    skipping_a_date_without_an_occurrence_is_refused =>
        given(published()).as_actor(olivia()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Skip { date: date(2027, 4, 14) })
            .then_error(DomainError::invalid("date", "the series has no occurrence on 2027-04-14")),
    skipping_an_occurrence_that_has_started_is_refused =>
        given(with(published(), first_three())).as_actor(olivia()).at(at(2027, 3, 9, 18, 30))
            .when(SeriesCommand::Skip { date: date(2027, 3, 9) })
            .then_error(DomainError::invalid("date", "the occurrence on 2027-03-09 has already started")),
    skipping_the_same_occurrence_twice_changes_nothing =>
        given(with(published(), [SeriesEvent::OccurrenceSkipped { index: 4, date: date(2027, 7, 13), activity_id: None }]))
            .as_actor(olivia()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Skip { date: date(2027, 7, 13) })
            .then_nothing(),
    only_the_organiser_skips_an_occurrence =>
        given(published()).as_actor(mo()).at(at(2027, 3, 1, 10, 0))
            .when(SeriesCommand::Skip { date: date(2027, 7, 13) })
            .then_error(DomainError::NotTheOrganiser),
});

spec_section!(ending, "Series — ending", {
    ending_cancels_the_materialized_occurrences_after_the_date =>
        given(with(published(), first_three())).as_actor(olivia()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::End { after: date(2027, 4, 13) })
            .then([SeriesEvent::SeriesEnded { after: date(2027, 4, 13), ended_by: OLIVIA, cancelled: vec![occurrence_id(SERIES, 2)] }]),
    a_moderator_may_end_a_series =>
        given(published()).as_actor(mo()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::End { after: date(2027, 3, 2) })
            .then([SeriesEvent::SeriesEnded { after: date(2027, 3, 2), ended_by: MO, cancelled: vec![] }]),
    a_member_cannot_end_someone_else_s_series =>
        given(published()).as_actor(ben()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::End { after: date(2027, 3, 2) })
            .then_error(DomainError::NotTheOrganiser),
    an_ended_series_cannot_end_again =>
        given(with(published(), [SeriesEvent::SeriesEnded { after: date(2027, 3, 2), ended_by: OLIVIA, cancelled: vec![] }]))
            .as_actor(olivia()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::End { after: date(2027, 3, 5) })
            .then_error(DomainError::SeriesTransition { from: "ended", action: "end" }),
});

fn later_start() -> SeriesPatch {
    SeriesPatch { local_start: Some(parse_local_start("20:00").expect("fixture")), ..SeriesPatch::default() }
}

spec_section!(updates, "Series — updates reach the occurrences to come", {
    an_update_moves_the_upcoming_materialized_occurrences =>
        given(with(published(), first_three())).as_actor(olivia()).at(at(2027, 3, 10, 10, 0))
            .when(SeriesCommand::Update { patch: later_start() })
            .then([SeriesEvent::SeriesUpdated {
                template: template(),
                schedule: schedule_of(MONTHLY, AMSTERDAM, "20:00", 120, date(2027, 3, 1)),
                changed: vec!["local_start".to_owned()],
                occurrences: vec![
                    MovedOccurrence { index: 1, activity_id: occurrence_id(SERIES, 1), time: time(at(2027, 4, 13, 18, 0), at(2027, 4, 13, 20, 0)) },
                    MovedOccurrence { index: 2, activity_id: occurrence_id(SERIES, 2), time: time(at(2027, 5, 11, 18, 0), at(2027, 5, 11, 20, 0)) },
                ],
                dropped: vec![],
            }]),
    a_shorter_rule_drops_the_materialized_occurrences_it_no_longer_has =>
        given(with(published(), first_three())).as_actor(olivia()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::Update { patch: SeriesPatch { rule: Some(Rule::parse("FREQ=MONTHLY;BYDAY=2TU;COUNT=2").expect("fixture")), ..SeriesPatch::default() } })
            .then([SeriesEvent::SeriesUpdated {
                template: template(),
                schedule: monthly_from("FREQ=MONTHLY;BYDAY=2TU;COUNT=2", date(2027, 3, 1)),
                changed: vec!["rule".to_owned()],
                occurrences: vec![
                    MovedOccurrence { index: 0, activity_id: occurrence_id(SERIES, 0), time: time(at(2027, 3, 9, 18, 0), at(2027, 3, 9, 20, 0)) },
                    MovedOccurrence { index: 1, activity_id: occurrence_id(SERIES, 1), time: time(at(2027, 4, 13, 17, 0), at(2027, 4, 13, 19, 0)) },
                ],
                dropped: vec![occurrence_id(SERIES, 2)],
            }]),
    the_price_cannot_change_once_the_series_is_published =>
        given(published()).as_actor(olivia()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::Update { patch: SeriesPatch { price: Some(Money::parse(500, "EUR").expect("fixture")), ..SeriesPatch::default() } })
            .then_error(DomainError::FieldLockedAfterPublish { field: "price" }),
    an_update_that_changes_nothing_records_nothing =>
        given(published()).as_actor(olivia()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::Update { patch: SeriesPatch { local_start: Some(parse_local_start("19:00").expect("fixture")), ..SeriesPatch::default() } })
            .then_nothing(),
    a_series_under_review_cannot_be_edited =>
        given([drafted(), SeriesEvent::SeriesSubmitted {}]).as_actor(olivia()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::Update { patch: later_start() })
            .then_error(DomainError::SeriesTransition { from: "pending", action: "edit" }),
    an_ended_series_cannot_be_edited =>
        given(with(published(), [SeriesEvent::SeriesEnded { after: date(2027, 3, 2), ended_by: OLIVIA, cancelled: vec![] }]))
            .as_actor(olivia()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::Update { patch: later_start() })
            .then_error(DomainError::SeriesTransition { from: "ended", action: "edit" }),
    only_the_organiser_updates_a_series =>
        given(published()).as_actor(oscar()).at(at(2027, 3, 2, 10, 0))
            .when(SeriesCommand::Update { patch: later_start() })
            .then_error(DomainError::NotTheOrganiser),
});

// ----- the occurrences as activities -----

const OCCURRENCE: SeriesLink = SeriesLink { series_id: SERIES, index: 1 };

fn occurrence_details(starts_at: DateTime<Utc>) -> ActivityDetails {
    template().at(time(starts_at, starts_at + Duration::hours(2)))
}

fn occurrence_drafted() -> ActivityEvent {
    ActivityEvent::ActivityDrafted {
        activity_id: ACTIVITY,
        organiser_id: OLIVIA,
        details: occurrence_details(at(2027, 4, 13, 17, 0)),
        series: Some(OCCURRENCE),
    }
}

fn occurrence_published() -> ActivityEvent {
    ActivityEvent::ActivityPublished {
        organiser_id: OLIVIA,
        time: time(at(2027, 4, 13, 17, 0), at(2027, 4, 13, 19, 0)),
        visibility: Visibility::Public,
        approved_by: Some(MO),
        series: Some(OCCURRENCE),
    }
}

fn ben_booked() -> ActivityEvent {
    ActivityEvent::BookingConfirmed {
        booking_id: B1,
        member_id: BEN,
        seats: 2,
        children: vec![],
        seats_left: 10,
        payment_ref: None,
        invitation_id: None,
    }
}

fn create_occurrence() -> ActivityCommand {
    ActivityCommand::CreateOccurrence {
        activity_id: ACTIVITY,
        organiser_id: OLIVIA,
        series: OCCURRENCE,
        details: occurrence_details(at(2027, 4, 13, 17, 0)),
        approved_by: Some(MO),
    }
}

fn moved_an_hour_later() -> ActivityCommand {
    ActivityCommand::UpdateOccurrence { details: occurrence_details(at(2027, 4, 13, 18, 0)) }
}

spec_section!(occurrences, "Series — each occurrence is an ordinary activity", {
    the_system_creates_an_occurrence_drafted_and_published_at_once =>
        given_nothing().as_actor(system()).at(at(2027, 3, 1, 10, 0))
            .when(create_occurrence())
            .then([occurrence_drafted(), occurrence_published()]),
    creating_an_occurrence_again_decides_nothing =>
        given([occurrence_drafted(), occurrence_published()]).as_actor(system()).at(at(2027, 3, 1, 10, 0))
            .when(create_occurrence())
            .then_nothing(),
    only_the_system_creates_occurrences =>
        given_nothing().as_actor(olivia()).at(at(2027, 3, 1, 10, 0))
            .when(create_occurrence())
            .then_error(DomainError::NotTheSystem),
    an_occurrence_without_bookings_takes_a_series_update =>
        given([occurrence_drafted(), occurrence_published()]).as_actor(system()).at(at(2027, 3, 10, 10, 0))
            .when(moved_an_hour_later())
            .then([ActivityEvent::ActivityRescheduled {
                time: time(at(2027, 4, 13, 18, 0), at(2027, 4, 13, 20, 0)),
                previous: time(at(2027, 4, 13, 17, 0), at(2027, 4, 13, 19, 0)),
            }]),
    an_occurrence_with_bookings_keeps_its_time_and_details =>
        given([occurrence_drafted(), occurrence_published(), ben_booked()]).as_actor(system()).at(at(2027, 3, 10, 10, 0))
            .when(moved_an_hour_later())
            .then_nothing(),
    a_skipped_occurrence_is_cancelled_and_its_bookings_released =>
        given([occurrence_drafted(), occurrence_published(), ben_booked()]).as_actor(system()).at(at(2027, 3, 10, 10, 0))
            .when(ActivityCommand::CancelOccurrence { reason: reason("This occurrence is skipped"), only_unbooked: false })
            .then([ActivityEvent::ActivityCancelled {
                reason: reason("This occurrence is skipped"),
                cancelled_by: Actor::SYSTEM_ID,
                released: vec![ReleasedBooking { booking_id: B1, member_id: BEN, seats: 2, status: BookingStatus::Confirmed }],
            }]),
    an_occurrence_a_series_update_drops_is_spared_while_it_has_bookings =>
        given([occurrence_drafted(), occurrence_published(), ben_booked()]).as_actor(system()).at(at(2027, 3, 10, 10, 0))
            .when(ActivityCommand::CancelOccurrence { reason: reason("The series changed"), only_unbooked: true })
            .then_nothing(),
});
