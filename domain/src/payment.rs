//! The payment reference — stream `payment-{booking_id}`: the provider's reference a
//! member reports for a reserved paid booking (`POST …/bookings/{id}/payment`).
//!
//! Recording a reference confirms nothing: only the payment provider's signed webhook
//! does (`ConfirmPayment` on the activity, as the system), for the right booking,
//! amount and currency. The reference lives on its own stream so that a member's
//! report never touches the activity's stream (and its capacity lock).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::activity::BookingStatus;
use crate::core::{Aggregate, Context, DomainEvent};
use crate::errors::DomainError;
use crate::specs::fixtures::name;
use crate::testkit::{AggregateCommand, AggregateEvent, Describe};
use crate::values::PaymentRef;

mod specs;
pub use specs::sections as spec_sections;

/// The payment reference aggregate (stream category `payment`, one stream per booking).
#[derive(Debug, Clone, Copy, Default)]
pub struct Payment;

/// The booking a reference is for, as the activity's stream shows it (read by the
/// handler from the activity, passed in with the command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingSnapshot {
    /// The booking's member.
    pub member_id: Uuid,
    /// Where the booking stands.
    pub status: BookingStatus,
}

/// What a member asks of a payment stream.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// `RecordPaymentReference` (the booking's member, for a reserved booking).
    RecordReference {
        /// The activity booked.
        activity_id: Uuid,
        /// The booking (the stream id).
        booking_id: Uuid,
        /// The provider's reference.
        payment_ref: PaymentRef,
        /// The booking as the activity shows it.
        booking: BookingSnapshot,
    },
}

/// What happened on a payment stream. Serialized as `{"type": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PaymentEvent {
    /// The booking's member reported the provider's reference (nothing is confirmed).
    PaymentReferenceRecorded {
        /// The activity booked.
        activity_id: Uuid,
        /// The booking.
        booking_id: Uuid,
        /// The member who reported it.
        member_id: Uuid,
        /// The provider's reference.
        payment_ref: PaymentRef,
    },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> &'static str {
        match self {
            PaymentEvent::PaymentReferenceRecorded { .. } => "PaymentReferenceRecorded",
        }
    }
}

/// The folded payment stream (serializable for snapshots only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PaymentState {
    /// The last reference reported.
    pub payment_ref: Option<PaymentRef>,
}

impl Aggregate for Payment {
    const CATEGORY: &'static str = "payment";
    type State = PaymentState;
    type Command = PaymentCommand;
    type Event = PaymentEvent;

    fn decide(state: &PaymentState, command: PaymentCommand, ctx: &Context) -> Result<Vec<PaymentEvent>, DomainError> {
        let PaymentCommand::RecordReference { activity_id, booking_id, payment_ref, booking } = command;
        if booking.member_id != ctx.actor.id {
            return Err(DomainError::NotTheBookingHolder);
        }
        match booking.status {
            BookingStatus::Reserved => {}
            BookingStatus::Expired => return Err(DomainError::ReservationExpired),
            _ => return Err(DomainError::NotAwaitingPayment),
        }
        if state.payment_ref.as_ref() == Some(&payment_ref) {
            return Ok(vec![]);
        }
        Ok(vec![PaymentEvent::PaymentReferenceRecorded {
            activity_id,
            booking_id,
            member_id: ctx.actor.id,
            payment_ref,
        }])
    }

    fn evolve(mut state: PaymentState, event: &PaymentEvent) -> PaymentState {
        match event {
            PaymentEvent::PaymentReferenceRecorded { payment_ref, .. } => state.payment_ref = Some(payment_ref.clone()),
        }
        state
    }
}

impl AggregateEvent for PaymentEvent {
    type Aggregate = Payment;
}

impl AggregateCommand for PaymentCommand {
    type Aggregate = Payment;
}

impl Describe for PaymentEvent {
    fn describe(&self) -> String {
        match self {
            PaymentEvent::PaymentReferenceRecorded { activity_id, booking_id, member_id, payment_ref } => format!(
                "PaymentReferenceRecorded: {payment_ref} for {} of {} by {}",
                name(*booking_id),
                name(*activity_id),
                name(*member_id)
            ),
        }
    }
}

impl Describe for PaymentCommand {
    fn describe(&self) -> String {
        let PaymentCommand::RecordReference { activity_id, booking_id, payment_ref, booking } = self;
        format!(
            "RecordPaymentReference {payment_ref} for {} of {} ({}'s booking, {})",
            name(*booking_id),
            name(*activity_id),
            name(booking.member_id),
            booking.status.as_str()
        )
    }
}
