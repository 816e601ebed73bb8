//! The payment reference's specs: the booking's member records the provider's
//! reference for a reserved booking; recording it confirms nothing.

use super::*;
use crate::specs::fixtures::*;
use crate::specs::{Section, spec_section};
use crate::testkit::{given, given_nothing};

/// Every section of the payment reference's specs.
pub fn sections() -> Vec<Section> {
    vec![references::section()]
}

fn reference(raw: &str) -> PaymentRef {
    PaymentRef::parse(raw).expect("fixture reference")
}

fn booking(member_id: Uuid, status: BookingStatus) -> BookingSnapshot {
    BookingSnapshot { member_id, status }
}

fn record(raw: &str, status: BookingStatus) -> PaymentCommand {
    PaymentCommand::RecordReference {
        activity_id: ACTIVITY,
        booking_id: B1,
        payment_ref: reference(raw),
        booking: booking(BEN, status),
    }
}

fn recorded(raw: &str) -> PaymentEvent {
    PaymentEvent::PaymentReferenceRecorded {
        activity_id: ACTIVITY,
        booking_id: B1,
        member_id: BEN,
        payment_ref: reference(raw),
    }
}

spec_section!(references, "Payment — the member's payment reference (the webhook confirms)", {
    the_booking_member_records_the_reference_of_a_reserved_booking =>
        given_nothing().as_actor(ben()).at(t0())
            .when(record("pi_ben", BookingStatus::Reserved))
            .then([recorded("pi_ben")]),
    recording_the_same_reference_again_changes_nothing =>
        given([recorded("pi_ben")]).as_actor(ben()).at(t0())
            .when(record("pi_ben", BookingStatus::Reserved))
            .then_nothing(),
    a_new_reference_replaces_the_previous_one =>
        given([recorded("pi_ben")]).as_actor(ben()).at(t0())
            .when(record("pi_ben_2", BookingStatus::Reserved))
            .then([recorded("pi_ben_2")]),
    another_member_cannot_record_a_reference =>
        given_nothing().as_actor(cara()).at(t0())
            .when(record("pi_cara", BookingStatus::Reserved))
            .then_error(DomainError::NotTheBookingHolder),
    a_confirmed_booking_awaits_no_reference =>
        given_nothing().as_actor(ben()).at(t0())
            .when(record("pi_ben", BookingStatus::Confirmed))
            .then_error(DomainError::NotAwaitingPayment),
    an_expired_reservation_takes_no_reference =>
        given_nothing().as_actor(ben()).at(t0())
            .when(record("pi_ben", BookingStatus::Expired))
            .then_error(DomainError::ReservationExpired),
});
