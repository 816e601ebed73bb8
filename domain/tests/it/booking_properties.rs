//! Random sequences of bookings, cancellations, payments, expiries and
//! capacity changes on one activity: seats are never oversold, a member never
//! holds two live bookings, the waitlist never waits for seats that are free,
//! every `seats_left` an event carries is the truth, and every state `evolve`
//! builds from `decide`'s events is one `decide` keeps working on.

use chrono::{DateTime, Duration, Utc};
use gather_domain::activity::{
    Activity, ActivityCommand, ActivityDetails, ActivityEvent, ActivityPatch, ActivityState, BookingStatus,
    RawActivityDetails, RawLocation, Visibility,
};
use gather_domain::specs::fixtures::{OLIVIA, ends, mo, olivia, starts, t0};
use gather_domain::values::{Capacity, Money, PaymentRef};
use gather_domain::{Actor, Aggregate, Context, DomainError};
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    Book { member: u8, seats: u32 },
    Cancel { member: u8 },
    Pay { member: u8, exact: bool },
    Expire { member: u8 },
    SetCapacity { seats: i64 },
    Wait { minutes: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 1u32..=4).prop_map(|(member, seats)| Op::Book { member, seats }),
        2 => (0u8..6).prop_map(|member| Op::Cancel { member }),
        2 => (0u8..6, any::<bool>()).prop_map(|(member, exact)| Op::Pay { member, exact }),
        1 => (0u8..6).prop_map(|member| Op::Expire { member }),
        1 => (1i64..=12).prop_map(|seats| Op::SetCapacity { seats }),
        1 => (0i64..=20).prop_map(|minutes| Op::Wait { minutes }),
    ]
}

fn member(n: u8) -> Uuid {
    Uuid::from_u128(0x0a00 + u128::from(n))
}

fn details(capacity: i64, price: i64, waitlist: bool) -> ActivityDetails {
    ActivityDetails::parse(RawActivityDetails {
        title: "Property pottery".to_owned(),
        description: String::new(),
        category: "crafts".to_owned(),
        tags: vec![],
        starts_at: starts(),
        ends_at: ends(),
        capacity,
        price_amount: price,
        price_currency: "EUR".to_owned(),
        visibility: Visibility::Public,
        location: RawLocation::Online { url: "https://meet.example.org/p".to_owned() },
        age_min: None,
        age_max: None,
        waitlist,
    })
    .expect("valid details")
}

/// Decides on `state`, folds the events in, and checks every invariant after each event.
fn apply(state: ActivityState, command: ActivityCommand, ctx: &Context) -> Result<ActivityState, TestCaseError> {
    match Activity::decide(&state, command, ctx) {
        Err(_) => Ok(state),
        Ok(events) => {
            let mut state = state;
            for event in &events {
                state = Activity::evolve(state, event);
                check_event(&state, event)?;
            }
            check_state(&state)?;
            Ok(state)
        }
    }
}

fn check_event(state: &ActivityState, event: &ActivityEvent) -> Result<(), TestCaseError> {
    let carried = match event {
        ActivityEvent::BookingConfirmed { seats_left, .. }
        | ActivityEvent::BookingReserved { seats_left, .. }
        | ActivityEvent::BookingCancelled { seats_left, .. }
        | ActivityEvent::ReservationExpired { seats_left, .. }
        | ActivityEvent::ActivityDetailsUpdated { seats_left, .. } => Some(*seats_left),
        _ => None,
    };
    if let Some(seats_left) = carried {
        prop_assert_eq!(seats_left, state.seats_left(), "{:?} carries a wrong seats_left", event);
    }
    Ok(())
}

fn check_state(state: &ActivityState) -> Result<(), TestCaseError> {
    // Never oversold.
    prop_assert!(state.seats_taken <= state.capacity(), "{} seats taken of {}", state.seats_taken, state.capacity());
    // seats_taken is exactly what confirmed and reserved bookings hold.
    let held: u32 = state.bookings.values().filter(|b| b.status.holds_seats()).map(|b| b.seats).sum();
    prop_assert_eq!(held, state.seats_taken);
    // At most one live booking per member.
    let mut live: Vec<Uuid> = state.bookings.values().filter(|b| b.status.is_live()).map(|b| b.member_id).collect();
    let count = live.len();
    live.sort();
    live.dedup();
    prop_assert_eq!(live.len(), count, "a member holds two live bookings");
    // The waitlist is exactly the waitlisted bookings, once each, and none of them fits.
    let waitlisted = state.bookings.values().filter(|b| b.status == BookingStatus::Waitlisted).count();
    prop_assert_eq!(state.waitlist.len(), waitlisted);
    for id in &state.waitlist {
        let booking = &state.bookings[id];
        prop_assert_eq!(booking.status, BookingStatus::Waitlisted);
        prop_assert!(
            booking.seats > state.seats_left(),
            "waitlisted {} seats while {} are free",
            booking.seats,
            state.seats_left()
        );
    }
    Ok(())
}

fn run(capacity: i64, price: i64, waitlist: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut now: DateTime<Utc> = t0();
    let details = details(capacity, price, waitlist);
    let mut state = ActivityState::default();
    let organiser = Context::new(olivia(), now);
    state = apply(
        state,
        ActivityCommand::Create { activity_id: Uuid::from_u128(0xac), details: details.clone() },
        &organiser,
    )?;
    state = apply(state, ActivityCommand::Submit, &organiser)?;
    state = apply(state, ActivityCommand::Approve, &Context::new(mo(), now))?;
    prop_assert_eq!(state.status.as_str(), "published");

    let mut history: Vec<ActivityEvent> = Vec::new();
    let mut next_booking = 0u128;
    for op in ops {
        let live = |state: &ActivityState, n: u8| state.live_booking_of(member(n)).map(|(id, _)| id);
        let (command, actor) = match op {
            Op::Book { member: n, seats } => {
                next_booking += 1;
                let booking_id = Uuid::from_u128(0xb000 + next_booking);
                (ActivityCommand::BookSeats { booking_id, seats, children: vec![] }, Actor::member(member(n)))
            }
            Op::Cancel { member: n } => {
                let booking_id = live(&state, n).unwrap_or(Uuid::from_u128(0xdead));
                (ActivityCommand::CancelBooking { booking_id }, Actor::member(member(n)))
            }
            Op::Pay { member: n, exact } => {
                let booking_id = live(&state, n).unwrap_or(Uuid::from_u128(0xdead));
                let due = state.bookings.get(&booking_id).and_then(|b| b.amount_due.clone());
                let amount = if exact { due } else { Some(Money::parse(1, "EUR").expect("money")) };
                let payment_ref = PaymentRef::parse("pay").expect("ref");
                (ActivityCommand::ConfirmPayment { booking_id, payment_ref, amount }, Actor::system())
            }
            Op::Expire { member: n } => {
                let booking_id = live(&state, n).unwrap_or(Uuid::from_u128(0xdead));
                (ActivityCommand::ExpireReservation { booking_id }, Actor::system())
            }
            Op::SetCapacity { seats } => {
                let patch =
                    ActivityPatch { capacity: Some(Capacity::parse(seats).expect("capacity")), ..Default::default() };
                (ActivityCommand::UpdateDetails { patch }, Actor::organiser(OLIVIA))
            }
            Op::Wait { minutes } => {
                now += Duration::minutes(minutes);
                continue;
            }
        };
        let ctx = Context::new(actor, now);
        let before = state.clone();
        let decided = Activity::decide(&state, command.clone(), &ctx);
        state = apply(state, command, &ctx)?;
        match decided {
            Ok(events) => history.extend(events),
            Err(error) => {
                prop_assert_eq!(&state, &before, "a refusal changed the state");
                prop_assert!(!error.code().is_empty());
                if let DomainError::Invalid { field, .. } = &error {
                    prop_assert!(!field.is_empty());
                }
            }
        }
    }
    // Folding the whole history from the start gives the same state.
    let all: Vec<ActivityEvent> = {
        let mut first = Vec::new();
        let organiser = Context::new(olivia(), t0());
        first.extend(
            Activity::decide(
                &ActivityState::default(),
                ActivityCommand::Create { activity_id: Uuid::from_u128(0xac), details },
                &organiser,
            )
            .expect("create"),
        );
        let drafted = Activity::fold(&first);
        first.extend(Activity::decide(&drafted, ActivityCommand::Submit, &organiser).expect("submit"));
        let pending = Activity::fold(&first);
        first.extend(Activity::decide(&pending, ActivityCommand::Approve, &Context::new(mo(), t0())).expect("approve"));
        first.into_iter().chain(history).collect()
    };
    prop_assert_eq!(Activity::fold(&all), state);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn free_activities_are_never_oversold(capacity in 1i64..=10, waitlist in any::<bool>(), ops in prop::collection::vec(op(), 1..60)) {
        run(capacity, 0, waitlist, ops)?;
    }

    #[test]
    fn paid_activities_are_never_oversold(capacity in 1i64..=10, waitlist in any::<bool>(), ops in prop::collection::vec(op(), 1..60)) {
        run(capacity, 1250, waitlist, ops)?;
    }
}
