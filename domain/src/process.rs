//! Process managers as pure reactions: given an event of an activity or a series,
//! which commands are due, and when (DOMAIN.md "Process managers and timers").
//!
//! A reaction schedules a command under a stable key (scheduling the same key again
//! moves it) or cancels a key. The runtime stores them as durable timers and fires them
//! as the system actor, with the causing event as causation.

use crate::activity::{ActivityDetails, ActivityEvent, SeriesLink};
use crate::series::SeriesEvent;
use crate::values::Reason;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A command the system issues later (or now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scheduled {
    /// `SendAttendeeList` on the activity, one hour before it starts.
    SendAttendeeList {
        /// The activity.
        activity_id: Uuid,
    },
    /// `CompleteActivity`, once it has ended.
    CompleteActivity {
        /// The activity.
        activity_id: Uuid,
    },
    /// `ExpireReservation`, when an unpaid hold lapses.
    ExpireReservation {
        /// The activity.
        activity_id: Uuid,
        /// The reserved booking.
        booking_id: Uuid,
    },
    /// Opens the activity's chat room (its id is the activity's id).
    OpenActivityRoom {
        /// The activity (and room).
        activity_id: Uuid,
        /// The organiser, the room's first member.
        organiser_id: Uuid,
    },
    /// Adds a confirmed attendee to the activity's room.
    AddRoomMember {
        /// The activity (and room).
        activity_id: Uuid,
        /// The attendee.
        member_id: Uuid,
    },
    /// Removes an attendee who cancelled.
    RemoveRoomMember {
        /// The activity (and room).
        activity_id: Uuid,
        /// The former attendee.
        member_id: Uuid,
    },
    /// `MaterializeSeries`: on publication, then daily (the scheduler moves the timer a
    /// day ahead each time it succeeds; a series past its end refuses, which stops it).
    MaterializeSeries {
        /// The series.
        series_id: Uuid,
    },
    /// `CreateOccurrence`: a scheduled occurrence becomes a published activity.
    CreateOccurrence {
        /// The occurrence's activity.
        activity_id: Uuid,
        /// The series' organiser.
        organiser_id: Uuid,
        /// Which series and occurrence.
        series: SeriesLink,
        /// The activity's details.
        details: ActivityDetails,
        /// The moderator who approved the series.
        approved_by: Option<Uuid>,
    },
    /// `UpdateOccurrence`: a series update reaches a materialized occurrence.
    UpdateOccurrence {
        /// The occurrence's activity.
        activity_id: Uuid,
        /// The details under the updated series (with the new time).
        details: ActivityDetails,
    },
    /// `CancelOccurrence`: a skipped occurrence, one after the series' end, or one the
    /// updated rule no longer has (`only_unbooked`).
    CancelOccurrence {
        /// The occurrence's activity.
        activity_id: Uuid,
        /// Why, shown to its attendees.
        reason: Reason,
        /// Spare it if it has live bookings.
        only_unbooked: bool,
    },
}

impl Scheduled {
    /// The aggregate the command goes to (an activity's room has the activity's id):
    /// timers of one target fire in due order, those of different targets at once.
    pub fn target(&self) -> Uuid {
        match self {
            Scheduled::SendAttendeeList { activity_id }
            | Scheduled::CompleteActivity { activity_id }
            | Scheduled::ExpireReservation { activity_id, .. }
            | Scheduled::OpenActivityRoom { activity_id, .. }
            | Scheduled::AddRoomMember { activity_id, .. }
            | Scheduled::RemoveRoomMember { activity_id, .. }
            | Scheduled::CreateOccurrence { activity_id, .. }
            | Scheduled::UpdateOccurrence { activity_id, .. }
            | Scheduled::CancelOccurrence { activity_id, .. } => *activity_id,
            Scheduled::MaterializeSeries { series_id } => *series_id,
        }
    }
}

/// What a process manager does with one event.
// A reaction lives only between deciding it and writing its timer row: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Reaction {
    /// Run `command` at `due_at` (at once if that has passed); replaces the same key.
    Schedule {
        /// Stable key: scheduling it again moves the timer.
        key: String,
        /// When.
        due_at: DateTime<Utc>,
        /// What.
        command: Scheduled,
    },
    /// Drop the timer with this key, if it has not fired.
    Cancel {
        /// The key.
        key: String,
    },
}

/// How long before the start the organiser gets the attendee list.
pub fn attendee_list_lead() -> Duration {
    Duration::hours(1)
}

/// The reactions to one activity event; `at` is when it was recorded.
pub fn react(activity_id: Uuid, event: &ActivityEvent, at: DateTime<Utc>) -> Vec<Reaction> {
    use ActivityEvent as E;
    let timers = |starts: DateTime<Utc>, ends: DateTime<Utc>| {
        vec![
            Reaction::Schedule {
                key: format!("attendee-list:{activity_id}"),
                due_at: starts - attendee_list_lead(),
                command: Scheduled::SendAttendeeList { activity_id },
            },
            Reaction::Schedule {
                key: format!("complete:{activity_id}"),
                due_at: ends,
                command: Scheduled::CompleteActivity { activity_id },
            },
        ]
    };
    match event {
        E::ActivityPublished { organiser_id, time, .. } => {
            let mut r = timers(time.starts_at(), time.ends_at());
            r.push(Reaction::Schedule {
                key: format!("room:{activity_id}"),
                due_at: at,
                command: Scheduled::OpenActivityRoom { activity_id, organiser_id: *organiser_id },
            });
            r
        }
        E::ActivityRescheduled { time, .. } => timers(time.starts_at(), time.ends_at()),
        E::ActivityCancelled { .. } => vec![
            Reaction::Cancel { key: format!("attendee-list:{activity_id}") },
            Reaction::Cancel { key: format!("complete:{activity_id}") },
        ],
        E::BookingReserved { booking_id, expires_at, .. } => vec![Reaction::Schedule {
            key: format!("expire:{booking_id}"),
            due_at: *expires_at,
            command: Scheduled::ExpireReservation { activity_id, booking_id: *booking_id },
        }],
        E::BookingConfirmed { booking_id, member_id, .. } => vec![
            Reaction::Cancel { key: format!("expire:{booking_id}") },
            Reaction::Schedule {
                key: format!("room-member:{activity_id}:{member_id}"),
                due_at: at,
                command: Scheduled::AddRoomMember { activity_id, member_id: *member_id },
            },
        ],
        E::BookingCancelled { member_id, .. } => vec![Reaction::Schedule {
            key: format!("room-member:{activity_id}:{member_id}"),
            due_at: at,
            command: Scheduled::RemoveRoomMember { activity_id, member_id: *member_id },
        }],
        E::ActivityDrafted { .. }
        | E::ActivityDetailsUpdated { .. }
        | E::ActivitySubmitted { .. }
        | E::ActivityRejected { .. }
        | E::MediaAttached { .. }
        | E::ActivityCompleted { .. }
        | E::WaitlistJoined { .. }
        | E::WaitlistPromoted { .. }
        | E::ReservationExpired { .. }
        | E::GuestsInvited { .. }
        | E::InvitationAccepted { .. }
        | E::InvitationDeclined { .. }
        | E::AttendeeListSent { .. } => vec![],
    }
}

/// The timer key of a series' daily materialization.
pub fn materialize_key(series_id: Uuid) -> String {
    format!("series:{series_id}")
}

fn cancel_occurrence(activity_id: Uuid, reason: &str, only_unbooked: bool, at: DateTime<Utc>) -> Option<Reaction> {
    let reason = Reason::parse(reason).ok()?;
    Some(Reaction::Schedule {
        key: format!("occurrence-cancel:{activity_id}"),
        due_at: at,
        command: Scheduled::CancelOccurrence { activity_id, reason, only_unbooked },
    })
}

/// The reactions to one series event; `at` is when it was recorded.
pub fn react_series(series_id: Uuid, event: &SeriesEvent, at: DateTime<Utc>) -> Vec<Reaction> {
    use SeriesEvent as E;
    match event {
        E::SeriesPublished { .. } => vec![Reaction::Schedule {
            key: materialize_key(series_id),
            due_at: at,
            command: Scheduled::MaterializeSeries { series_id },
        }],
        E::OccurrenceScheduled { activity_id, index, organiser_id, details, approved_by, .. } => {
            vec![Reaction::Schedule {
                key: format!("occurrence:{activity_id}"),
                due_at: at,
                command: Scheduled::CreateOccurrence {
                    activity_id: *activity_id,
                    organiser_id: *organiser_id,
                    series: SeriesLink { series_id, index: *index },
                    details: details.clone(),
                    approved_by: *approved_by,
                },
            }]
        }
        E::SeriesUpdated { template, occurrences, dropped, .. } => occurrences
            .iter()
            .map(|o| Reaction::Schedule {
                key: format!("occurrence-update:{}", o.activity_id),
                due_at: at,
                command: Scheduled::UpdateOccurrence { activity_id: o.activity_id, details: template.at(o.time) },
            })
            .chain(
                dropped
                    .iter()
                    .filter_map(|id| cancel_occurrence(*id, "The series no longer has this occurrence", true, at)),
            )
            .collect(),
        E::OccurrenceSkipped { activity_id: Some(id), .. } => {
            cancel_occurrence(*id, "This occurrence of the series is skipped", false, at).into_iter().collect()
        }
        E::SeriesEnded { cancelled, .. } => {
            cancelled.iter().filter_map(|id| cancel_occurrence(*id, "The series has ended", false, at)).collect()
        }
        E::OccurrenceSkipped { activity_id: None, .. }
        | E::SeriesDrafted { .. }
        | E::SeriesSubmitted { .. }
        | E::SeriesRejected { .. } => vec![],
    }
}

#[cfg(test)]
mod specs {
    //! Given an event, then these commands are due.
    use super::*;
    use crate::activity::Visibility;
    use crate::values::{Reason, TimeRange};
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 5, 1, h, 0, 0).unwrap()
    }
    fn ids() -> (Uuid, Uuid, Uuid) {
        (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3))
    }

    #[test]
    fn given_a_published_activity_then_the_attendee_list_completion_and_room_are_scheduled() {
        let (a, org, _) = ids();
        let time = TimeRange::parse(t(14), t(16)).unwrap();
        let e = ActivityEvent::ActivityPublished {
            series: None,
            organiser_id: org,
            time,
            visibility: Visibility::Public,
            approved_by: None,
        };
        let r = react(a, &e, t(9));
        assert_eq!(
            r,
            vec![
                Reaction::Schedule {
                    key: format!("attendee-list:{a}"),
                    due_at: t(13),
                    command: Scheduled::SendAttendeeList { activity_id: a }
                },
                Reaction::Schedule {
                    key: format!("complete:{a}"),
                    due_at: t(16),
                    command: Scheduled::CompleteActivity { activity_id: a }
                },
                Reaction::Schedule {
                    key: format!("room:{a}"),
                    due_at: t(9),
                    command: Scheduled::OpenActivityRoom { activity_id: a, organiser_id: org }
                },
            ]
        );
    }

    #[test]
    fn given_a_rescheduled_activity_then_its_timers_move_under_the_same_keys() {
        let (a, _, _) = ids();
        let e = ActivityEvent::ActivityRescheduled {
            time: TimeRange::parse(t(18), t(20)).unwrap(),
            previous: TimeRange::parse(t(14), t(16)).unwrap(),
        };
        let r = react(a, &e, t(9));
        assert!(
            matches!(&r[0], Reaction::Schedule { key, due_at, .. } if *key == format!("attendee-list:{a}") && *due_at == t(17))
        );
        assert!(
            matches!(&r[1], Reaction::Schedule { key, due_at, .. } if *key == format!("complete:{a}") && *due_at == t(20))
        );
    }

    #[test]
    fn given_a_cancelled_activity_then_both_timers_are_dropped() {
        let (a, org, _) = ids();
        let e = ActivityEvent::ActivityCancelled {
            reason: Reason::parse("rain").unwrap(),
            cancelled_by: org,
            released: vec![],
        };
        assert_eq!(
            react(a, &e, t(9)),
            vec![
                Reaction::Cancel { key: format!("attendee-list:{a}") },
                Reaction::Cancel { key: format!("complete:{a}") },
            ]
        );
    }

    #[test]
    fn given_a_reserved_booking_then_its_expiry_is_scheduled_and_confirmation_drops_it() {
        let (a, m, b) = ids();
        let e = ActivityEvent::BookingReserved {
            booking_id: b,
            member_id: m,
            seats: 1,
            children: vec![],
            amount_due: crate::values::Money::parse(500, "EUR").unwrap(),
            expires_at: t(10),
            seats_left: 3,
        };
        assert_eq!(
            react(a, &e, t(9)),
            vec![Reaction::Schedule {
                key: format!("expire:{b}"),
                due_at: t(10),
                command: Scheduled::ExpireReservation { activity_id: a, booking_id: b },
            }]
        );
        let confirmed = ActivityEvent::BookingConfirmed {
            booking_id: b,
            member_id: m,
            seats: 1,
            children: vec![],
            seats_left: 3,
            payment_ref: None,
            invitation_id: None,
        };
        let r = react(a, &confirmed, t(9));
        assert_eq!(r[0], Reaction::Cancel { key: format!("expire:{b}") });
        assert_eq!(
            r[1],
            Reaction::Schedule {
                key: format!("room-member:{a}:{m}"),
                due_at: t(9),
                command: Scheduled::AddRoomMember { activity_id: a, member_id: m },
            }
        );
    }

    #[test]
    fn given_a_cancelled_booking_then_the_member_leaves_the_room() {
        let (a, m, b) = ids();
        let e =
            ActivityEvent::BookingCancelled { booking_id: b, member_id: m, seats: 1, released_seats: 1, seats_left: 4 };
        assert_eq!(
            react(a, &e, t(9)),
            vec![Reaction::Schedule {
                key: format!("room-member:{a}:{m}"),
                due_at: t(9),
                command: Scheduled::RemoveRoomMember { activity_id: a, member_id: m },
            }]
        );
    }

    #[test]
    fn given_a_draft_then_nothing_is_scheduled() {
        let (a, _, _) = ids();
        assert!(react(a, &ActivityEvent::ActivitySubmitted {}, t(9)).is_empty());
    }

    mod series {
        //! Given a series event, then these commands are due.
        use super::super::*;
        use crate::series::{MovedOccurrence, SeriesEvent, occurrence_id};
        use crate::values::TimeRange;
        use chrono::TimeZone;

        fn t(d: u32, h: u32) -> DateTime<Utc> {
            Utc.with_ymd_and_hms(2027, 3, d, h, 0, 0).unwrap()
        }
        const SERIES: Uuid = Uuid::from_u128(9);

        #[test]
        fn given_a_published_series_then_its_materialization_is_due_at_once() {
            let e = SeriesEvent::SeriesPublished {
                organiser_id: Uuid::from_u128(2),
                visibility: crate::activity::Visibility::Public,
                approved_by: None,
            };
            assert_eq!(
                react_series(SERIES, &e, t(1, 9)),
                vec![Reaction::Schedule {
                    key: materialize_key(SERIES),
                    due_at: t(1, 9),
                    command: Scheduled::MaterializeSeries { series_id: SERIES },
                }]
            );
        }

        #[test]
        fn given_a_skipped_occurrence_then_only_a_materialized_one_is_cancelled_bookings_or_not() {
            let a = occurrence_id(SERIES, 1);
            let skipped = |activity_id| SeriesEvent::OccurrenceSkipped {
                index: 1,
                date: chrono::NaiveDate::from_ymd_opt(2027, 4, 13).unwrap(),
                activity_id,
            };
            let r = react_series(SERIES, &skipped(Some(a)), t(2, 9));
            assert!(
                matches!(&r[..], [Reaction::Schedule { key, command: Scheduled::CancelOccurrence { activity_id, only_unbooked: false, .. }, .. }]
                    if *key == format!("occurrence-cancel:{a}") && *activity_id == a),
                "{r:?}"
            );
            assert!(react_series(SERIES, &skipped(None), t(2, 9)).is_empty());
        }

        #[test]
        fn given_an_ended_series_then_each_listed_occurrence_is_cancelled() {
            let (a, b) = (occurrence_id(SERIES, 2), occurrence_id(SERIES, 3));
            let e = SeriesEvent::SeriesEnded {
                after: chrono::NaiveDate::from_ymd_opt(2027, 5, 1).unwrap(),
                ended_by: Uuid::from_u128(2),
                cancelled: vec![a, b],
            };
            let cancelled: Vec<Uuid> = react_series(SERIES, &e, t(2, 9))
                .into_iter()
                .filter_map(|r| match r {
                    Reaction::Schedule {
                        command: Scheduled::CancelOccurrence { activity_id, only_unbooked: false, .. },
                        ..
                    } => Some(activity_id),
                    _ => None,
                })
                .collect();
            assert_eq!(cancelled, vec![a, b]);
        }

        #[test]
        fn given_an_update_then_moved_occurrences_are_updated_and_dropped_ones_cancelled_unless_booked() {
            let (moved, dropped) = (occurrence_id(SERIES, 1), occurrence_id(SERIES, 2));
            let time = TimeRange::parse(t(20, 18), t(20, 20)).unwrap();
            let schedule = crate::series::Schedule::new(
                crate::series::Rule::parse("FREQ=MONTHLY;BYDAY=2TU;COUNT=2").unwrap(),
                crate::series::parse_timezone("Europe/Amsterdam").unwrap(),
                crate::series::parse_local_start("19:00").unwrap(),
                120,
                chrono::NaiveDate::from_ymd_opt(2027, 3, 1).unwrap(),
            )
            .unwrap();
            let template = crate::series::SeriesTemplate {
                title: crate::values::Title::parse("Board game night").unwrap(),
                description: crate::values::Description::parse("Games.").unwrap(),
                category: crate::values::Category::parse("games").unwrap(),
                tags: crate::values::Tags::parse(Vec::<String>::new()).unwrap(),
                capacity: crate::values::Capacity::parse(10).unwrap(),
                price: crate::values::Money::parse(0, "EUR").unwrap(),
                visibility: crate::activity::Visibility::Public,
                location: crate::values::Location::online("https://meet.example/games").unwrap(),
                age_range: None,
                waitlist: false,
            };
            let e = SeriesEvent::SeriesUpdated {
                template: template.clone(),
                schedule,
                changed: vec!["rule".into()],
                occurrences: vec![MovedOccurrence { index: 1, activity_id: moved, time }],
                dropped: vec![dropped],
            };
            let r = react_series(SERIES, &e, t(2, 9));
            assert_eq!(r.len(), 2, "{r:?}");
            assert_eq!(
                r[0],
                Reaction::Schedule {
                    key: format!("occurrence-update:{moved}"),
                    due_at: t(2, 9),
                    command: Scheduled::UpdateOccurrence { activity_id: moved, details: template.at(time) },
                }
            );
            assert!(
                matches!(&r[1], Reaction::Schedule { command: Scheduled::CancelOccurrence { activity_id, only_unbooked: true, .. }, .. } if *activity_id == dropped),
                "{r:?}"
            );
        }
    }
}
