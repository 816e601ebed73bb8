//! [`DomainError`]: every rule a command can break, with a stable machine code.
//!
//! The API turns an error into problem+json with [`DomainError::code`] as `code`
//! and [`DomainError::kind`] deciding the status; the variant names the rule.

use crate::core::ErrorKind;

/// A command refused by the domain. Each variant names the broken rule.
///
/// The codes returned by [`DomainError::code`] are part of the HTTP contract:
/// never rename one, add a new variant instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    // ----- input validation (400) -----
    /// An input field is malformed or out of its limits. Show `reason` next to `field`.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field at fault (`title`, `capacity`, `starts_at`, …).
        field: &'static str,
        /// A human-readable reason naming the limit.
        reason: String,
    },
    /// More invitations in one command than allowed (500). Split the list.
    #[error("at most {max} invitations per command")]
    TooManyInvitations {
        /// The limit.
        max: usize,
    },

    // ----- authorization that depends on the aggregate (403) -----
    /// The actor acts on another member's account. Only the member itself may.
    #[error("only the member can do this on their own account")]
    NotTheMember,
    /// The actor is not this activity's organiser.
    #[error("only the activity's organiser can do this")]
    NotTheOrganiser,
    /// Creating an activity needs an organiser profile (role `organiser`).
    #[error("only organisers can create activities")]
    NotAnOrganiser,
    /// The command is reserved to moderators.
    #[error("only a moderator can do this")]
    NotAModerator,
    /// The command is reserved to the scheduler / process managers (system actor).
    #[error("only the system can do this")]
    NotTheSystem,
    /// The booking belongs to someone else.
    #[error("only the booking's member can do this")]
    NotTheBookingHolder,
    /// The actor is not a member of this chat.
    #[error("only members of the chat can do this")]
    NotAChatMember,
    /// Only the sender may edit (or delete) this message.
    #[error("only the sender can do this to a message")]
    NotTheSender,
    /// Membership of an activity's chat room follows its bookings; members cannot change it.
    #[error("the members of an activity room follow its bookings")]
    ActivityRoomIsManaged,
    /// The member is suspended: every command of theirs is refused until a moderator lifts it.
    #[error("the member is suspended")]
    MemberSuspended,
    /// Bookings of an invite-only activity come through invitations only.
    #[error("this activity is by invitation only")]
    InvitationRequired,

    // ----- missing targets (404) -----
    /// No member stream (or not registered yet).
    #[error("member not found")]
    MemberNotFound,
    /// The member asked to be forgotten; nothing can be done with the account any more.
    #[error("the member has been forgotten")]
    MemberForgotten,
    /// No activity stream.
    #[error("activity not found")]
    ActivityNotFound,
    /// No such booking on this activity.
    #[error("booking not found")]
    BookingNotFound,
    /// No such invitation on this activity.
    #[error("invitation not found")]
    InvitationNotFound,
    /// No such child on the member's profile.
    #[error("child not found")]
    ChildNotFound,
    /// No chat stream.
    #[error("chat not found")]
    ChatNotFound,
    /// No such message in the chat.
    #[error("message not found")]
    MessageNotFound,
    /// No series stream.
    #[error("series not found")]
    SeriesNotFound,

    // ----- rules of the current state (409) -----
    /// The stream already holds a member: registering again is refused.
    #[error("the member is already registered")]
    AlreadyRegistered,
    /// The member already has an organiser profile (it is created once).
    #[error("the member is already an organiser")]
    AlreadyOrganiser,
    /// At most 10 children per member.
    #[error("at most {max} children per member")]
    TooManyChildren {
        /// The limit.
        max: usize,
    },
    /// A child with this id is already on the profile.
    #[error("the child is already on the profile")]
    ChildAlreadyAdded,
    /// The activity stream already exists: creating it again is refused.
    #[error("the activity already exists")]
    ActivityAlreadyExists,
    /// The lifecycle does not allow this command in the activity's current status.
    #[error("cannot {action} an activity that is {from}")]
    InvalidTransition {
        /// The current status (`draft`, `published`, …).
        from: &'static str,
        /// What was attempted (`submit`, `approve`, `book`, …).
        action: &'static str,
    },
    /// Only public activities go through moderation; invite-only ones are published directly.
    #[error("invite-only activities are published by the organiser, not submitted")]
    NotPublic,
    /// Only invite-only activities are published directly or take invitations.
    #[error("only invite-only activities can do this")]
    NotInviteOnly,
    /// The activity has started (or ended): bookings, invitations and publication are closed.
    #[error("the activity has already started")]
    ActivityStarted,
    /// The activity cannot complete before it ends.
    #[error("the activity has not ended yet")]
    ActivityNotEnded,
    /// The attendee list goes out one hour before the start, not earlier.
    #[error("the attendee list is not due yet")]
    AttendeeListNotDue,
    /// A published activity's capacity may not drop below the seats already taken.
    #[error("capacity {capacity} is below the {seats_taken} seats already taken")]
    CapacityBelowSeatsTaken {
        /// The requested capacity.
        capacity: u32,
        /// Seats currently confirmed or reserved.
        seats_taken: u32,
    },
    /// A published activity's time changes through `RescheduleActivity` only.
    #[error("a published activity's time changes through rescheduling")]
    TimeChangeNeedsReschedule,
    /// This detail cannot change once the activity is published.
    #[error("{field} cannot change once the activity is published")]
    FieldLockedAfterPublish {
        /// The field (`price`, `visibility`, …).
        field: &'static str,
    },
    /// At most 20 media per activity.
    #[error("at most {max} media per activity")]
    TooManyMedia {
        /// The limit.
        max: usize,
    },
    /// A media item with this id is already attached.
    #[error("the media is already attached")]
    MediaAlreadyAttached,
    /// No seats left and no waitlist.
    #[error("the activity is full")]
    ActivityFull,
    /// A member holds at most one live (confirmed, reserved or waitlisted) booking per activity.
    #[error("the member already holds a booking on this activity")]
    AlreadyBooked,
    /// A booking with this id already exists (ids are never reused).
    #[error("a booking with this id already exists")]
    BookingIdTaken,
    /// A child is outside the activity's age range at its start.
    #[error("a child is outside the activity's age range")]
    AgeOutOfRange,
    /// The booking is not a live reservation awaiting payment.
    #[error("the booking is not awaiting payment")]
    NotAwaitingPayment,
    /// The reservation lapsed and its seats were released; book again.
    #[error("the reservation has expired")]
    ReservationExpired,
    /// The reservation's 15 minutes have not passed yet.
    #[error("the reservation has not expired yet")]
    ReservationNotExpired,
    /// The amount paid differs from the amount due.
    #[error("the payment does not match the amount due")]
    PaymentMismatch,
    /// The booking is no longer live (cancelled, expired or released).
    #[error("the booking is not live")]
    BookingNotLive,
    /// An invitation with this id already exists.
    #[error("an invitation with this id already exists")]
    InvitationIdTaken,
    /// The invitation was already accepted or declined.
    #[error("the invitation was already answered")]
    InvitationAlreadyAnswered,
    /// The chat stream already exists.
    #[error("the chat already exists")]
    ChatAlreadyExists,
    /// A group chat has 2 to 200 members, the creator included.
    #[error("a chat has between {min} and {max} members")]
    ChatSize {
        /// The minimum.
        min: usize,
        /// The maximum.
        max: usize,
    },
    /// A message with this id already exists.
    #[error("a message with this id already exists")]
    MessageIdTaken,
    /// The message was deleted.
    #[error("the message was deleted")]
    MessageDeleted,
    /// Messages can be edited within 24 hours of posting only.
    #[error("messages can be edited within 24 hours only")]
    EditWindowClosed,
    /// The series stream already exists: creating it again is refused.
    #[error("the series already exists")]
    SeriesAlreadyExists,
    /// The series' lifecycle does not allow this command in its current status.
    #[error("cannot {action} a series that is {from}")]
    SeriesTransition {
        /// The current status (`draft`, `published`, `ended`, …).
        from: &'static str,
        /// What was attempted (`submit`, `approve`, `skip`, …).
        action: &'static str,
    },
}

impl DomainError {
    /// A validation error naming the field.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DomainError::Invalid { field, reason: reason.into() }
    }

    /// The stable machine code (snake_case) used as problem+json `code`.
    pub fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            Invalid { .. } => "validation_failed",
            TooManyInvitations { .. } => "too_many_invitations",
            NotTheMember => "not_the_member",
            NotTheOrganiser => "not_the_organiser",
            NotAnOrganiser => "not_an_organiser",
            NotAModerator => "not_a_moderator",
            NotTheSystem => "not_the_system",
            NotTheBookingHolder => "not_the_booking_holder",
            NotAChatMember => "not_a_chat_member",
            NotTheSender => "not_the_sender",
            ActivityRoomIsManaged => "activity_room_is_managed",
            MemberSuspended => "member_suspended",
            InvitationRequired => "invitation_required",
            MemberNotFound => "member_not_found",
            MemberForgotten => "member_forgotten",
            ActivityNotFound => "activity_not_found",
            BookingNotFound => "booking_not_found",
            InvitationNotFound => "invitation_not_found",
            ChildNotFound => "child_not_found",
            ChatNotFound => "chat_not_found",
            MessageNotFound => "message_not_found",
            SeriesNotFound => "series_not_found",
            AlreadyRegistered => "already_registered",
            AlreadyOrganiser => "already_organiser",
            TooManyChildren { .. } => "too_many_children",
            ChildAlreadyAdded => "child_already_added",
            ActivityAlreadyExists => "activity_already_exists",
            InvalidTransition { .. } => "invalid_transition",
            NotPublic => "not_public",
            NotInviteOnly => "not_invite_only",
            ActivityStarted => "activity_started",
            ActivityNotEnded => "activity_not_ended",
            AttendeeListNotDue => "attendee_list_not_due",
            CapacityBelowSeatsTaken { .. } => "capacity_below_seats_taken",
            TimeChangeNeedsReschedule => "time_change_needs_reschedule",
            FieldLockedAfterPublish { .. } => "field_locked_after_publish",
            TooManyMedia { .. } => "too_many_media",
            MediaAlreadyAttached => "media_already_attached",
            ActivityFull => "activity_full",
            AlreadyBooked => "already_booked",
            BookingIdTaken => "booking_id_taken",
            AgeOutOfRange => "age_out_of_range",
            NotAwaitingPayment => "not_awaiting_payment",
            ReservationExpired => "reservation_expired",
            ReservationNotExpired => "reservation_not_expired",
            PaymentMismatch => "payment_mismatch",
            BookingNotLive => "booking_not_live",
            InvitationIdTaken => "invitation_id_taken",
            InvitationAlreadyAnswered => "invitation_already_answered",
            ChatAlreadyExists => "chat_already_exists",
            ChatSize { .. } => "chat_size",
            MessageIdTaken => "message_id_taken",
            MessageDeleted => "message_deleted",
            EditWindowClosed => "edit_window_closed",
            SeriesAlreadyExists => "series_already_exists",
            SeriesTransition { .. } => "series_transition",
        }
    }

    /// How the API should answer: validation (400), forbidden (403), not found (404), conflict (409).
    pub fn kind(&self) -> ErrorKind {
        use DomainError::*;
        match self {
            Invalid { .. } | TooManyInvitations { .. } => ErrorKind::Validation,
            NotTheMember
            | NotTheOrganiser
            | NotAnOrganiser
            | NotAModerator
            | NotTheSystem
            | NotTheBookingHolder
            | NotAChatMember
            | NotTheSender
            | ActivityRoomIsManaged
            | MemberSuspended
            | InvitationRequired => ErrorKind::Forbidden,
            MemberNotFound | MemberForgotten | ActivityNotFound | BookingNotFound | InvitationNotFound
            | ChildNotFound | ChatNotFound | MessageNotFound | SeriesNotFound => ErrorKind::NotFound,
            _ => ErrorKind::Conflict,
        }
    }

    /// The request field at fault, for validation errors.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            DomainError::Invalid { field, .. } => Some(field),
            DomainError::TooManyInvitations { .. } => Some("invitations"),
            _ => None,
        }
    }

    /// Every code this enum can produce (for documentation and the API's OpenAPI enum).
    pub const CODES: &'static [&'static str] = &[
        "validation_failed",
        "too_many_invitations",
        "not_the_member",
        "not_the_organiser",
        "not_an_organiser",
        "not_a_moderator",
        "not_the_system",
        "not_the_booking_holder",
        "not_a_chat_member",
        "not_the_sender",
        "activity_room_is_managed",
        "member_suspended",
        "invitation_required",
        "member_not_found",
        "member_forgotten",
        "activity_not_found",
        "booking_not_found",
        "invitation_not_found",
        "child_not_found",
        "chat_not_found",
        "message_not_found",
        "already_registered",
        "already_organiser",
        "too_many_children",
        "child_already_added",
        "activity_already_exists",
        "invalid_transition",
        "not_public",
        "not_invite_only",
        "activity_started",
        "activity_not_ended",
        "attendee_list_not_due",
        "capacity_below_seats_taken",
        "time_change_needs_reschedule",
        "field_locked_after_publish",
        "too_many_media",
        "media_already_attached",
        "activity_full",
        "already_booked",
        "booking_id_taken",
        "age_out_of_range",
        "not_awaiting_payment",
        "reservation_expired",
        "reservation_not_expired",
        "payment_mismatch",
        "booking_not_live",
        "invitation_id_taken",
        "invitation_already_answered",
        "chat_already_exists",
        "chat_size",
        "message_id_taken",
        "message_deleted",
        "edit_window_closed",
        "series_not_found",
        "series_already_exists",
        "series_transition",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_words() {
        let mut codes = DomainError::CODES.to_vec();
        assert!(codes.iter().all(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')));
        let total = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), total, "a code is listed twice");
    }

    #[test]
    fn the_contract_codes_map_to_their_kinds() {
        let cases = [
            (DomainError::ActivityFull, "activity_full", ErrorKind::Conflict),
            (
                DomainError::InvalidTransition { from: "draft", action: "approve" },
                "invalid_transition",
                ErrorKind::Conflict,
            ),
            (DomainError::AlreadyBooked, "already_booked", ErrorKind::Conflict),
            (DomainError::NotTheOrganiser, "not_the_organiser", ErrorKind::Forbidden),
            (DomainError::MemberSuspended, "member_suspended", ErrorKind::Forbidden),
            (DomainError::NotAModerator, "not_a_moderator", ErrorKind::Forbidden),
            (DomainError::ActivityNotFound, "activity_not_found", ErrorKind::NotFound),
            (DomainError::invalid("title", "too short"), "validation_failed", ErrorKind::Validation),
        ];
        for (error, code, kind) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(error.kind(), kind, "{code}");
            assert!(DomainError::CODES.contains(&code), "{code} is missing from CODES");
        }
        assert_eq!(DomainError::invalid("title", "too short").field(), Some("title"));
        assert_eq!(DomainError::ActivityFull.field(), None);
    }

    #[test]
    fn messages_name_the_rule() {
        let error = DomainError::InvalidTransition { from: "draft", action: "approve" };
        assert_eq!(error.to_string(), "cannot approve an activity that is draft");
        assert_eq!(
            DomainError::invalid("title", "must be at least 3 characters").to_string(),
            "invalid title: must be at least 3 characters"
        );
    }
}
