//! The chat's specs: group chats, activity rooms, membership and message ownership.

use super::*;
use crate::specs::fixtures::*;
use crate::specs::{Section, spec_section};
use crate::testkit::{given, given_nothing};

/// Every section of the chat's specs.
pub fn sections() -> Vec<Section> {
    vec![group_chats::section(), activity_rooms::section(), membership::section(), messages::section()]
}

fn title(raw: &str) -> Option<ChatTitle> {
    Some(ChatTitle::parse(raw).expect("fixture title"))
}

fn text(raw: &str) -> MessageText {
    MessageText::parse(raw).expect("fixture text")
}

fn group_started() -> ChatEvent {
    ChatEvent::ChatStarted {
        chat_id: CHAT,
        kind: ChatKind::Group,
        title: title("Pottery parents"),
        started_by: BEN,
        member_ids: vec![BEN, CARA, DAN],
    }
}

fn room_started() -> ChatEvent {
    ChatEvent::ChatStarted {
        chat_id: ACTIVITY,
        kind: ChatKind::ActivityRoom { activity_id: ACTIVITY, organiser_id: OLIVIA },
        title: title("Kids pottery"),
        started_by: Actor::SYSTEM_ID,
        member_ids: vec![OLIVIA],
    }
}

fn added(member_id: Uuid, added_by: Uuid) -> ChatEvent {
    ChatEvent::ChatMemberAdded { member_id, added_by }
}

fn posted(message_id: Uuid, sender_id: Uuid, body: &str) -> ChatEvent {
    ChatEvent::MessagePosted { message_id, sender_id, text: text(body).into(), posted_at: t0(), as_organiser: false }
}

fn post(message_id: Uuid, body: &str) -> ChatCommand {
    ChatCommand::PostMessage { message_id, text: text(body) }
}

fn edit(message_id: Uuid, body: &str) -> ChatCommand {
    ChatCommand::EditMessage { message_id, text: text(body) }
}

fn a_room_with_ben() -> Vec<ChatEvent> {
    vec![room_started(), added(BEN, Actor::SYSTEM_ID)]
}

fn a_crowd(n: u128) -> Vec<Uuid> {
    (0..n).map(|i| Uuid::from_u128(0x0d00_0000 + i)).collect()
}

use crate::core::Actor;

spec_section!(group_chats, "Chat — group chats", {
    a_member_starts_a_group_chat_and_is_its_first_member =>
        given_nothing().as_actor(ben()).at(t0())
            .when(ChatCommand::Start { chat_id: CHAT, title: title("Pottery parents"), member_ids: vec![CARA, DAN] })
            .then([group_started()]),
    a_direct_chat_has_two_members =>
        given_nothing().as_actor(ben()).at(t0())
            .when(ChatCommand::Start { chat_id: CHAT, title: None, member_ids: vec![CARA] })
            .then([ChatEvent::ChatStarted {
                chat_id: CHAT,
                kind: ChatKind::Group,
                title: None,
                started_by: BEN,
                member_ids: vec![BEN, CARA],
            }]),
    listing_the_creator_or_a_member_twice_counts_them_once =>
        given_nothing().as_actor(ben()).at(t0())
            .when(ChatCommand::Start { chat_id: CHAT, title: None, member_ids: vec![BEN, CARA, CARA] })
            .then([ChatEvent::ChatStarted {
                chat_id: CHAT,
                kind: ChatKind::Group,
                title: None,
                started_by: BEN,
                member_ids: vec![BEN, CARA],
            }]),
    a_chat_with_nobody_else_is_refused =>
        given_nothing().as_actor(ben()).at(t0())
            .when(ChatCommand::Start { chat_id: CHAT, title: None, member_ids: vec![BEN] })
            .then_error(DomainError::ChatSize { min: 2, max: 200 }),
    a_chat_has_at_most_200_members_creator_included =>
        given_nothing().as_actor(ben()).at(t0())
            .when(ChatCommand::Start { chat_id: CHAT, title: None, member_ids: a_crowd(200) })
            .then_error(DomainError::ChatSize { min: 2, max: 200 }),
    a_chat_of_exactly_200_members_is_accepted =>
        given_nothing().as_actor(ben()).at(t0())
            .when(ChatCommand::Start { chat_id: CHAT, title: None, member_ids: a_crowd(199) })
            .then([ChatEvent::ChatStarted {
                chat_id: CHAT,
                kind: ChatKind::Group,
                title: None,
                started_by: BEN,
                member_ids: std::iter::once(BEN).chain(a_crowd(199)).collect(),
            }]),
    a_chat_cannot_be_started_twice =>
        given([group_started()]).as_actor(cara()).at(t0())
            .when(ChatCommand::Start { chat_id: CHAT, title: None, member_ids: vec![DAN] })
            .then_error(DomainError::ChatAlreadyExists),
    commands_on_a_chat_that_was_never_started_are_refused =>
        given_nothing().as_actor(ben()).at(t0())
            .when(post(MSG1, "hello?"))
            .then_error(DomainError::ChatNotFound),
});

spec_section!(activity_rooms, "Chat — activity rooms", {
    the_system_opens_an_activity_room_with_the_organiser_in_it =>
        given_nothing().as_actor(system()).at(t0())
            .when(ChatCommand::OpenActivityRoom {
                chat_id: ACTIVITY,
                activity_id: ACTIVITY,
                organiser_id: OLIVIA,
                title: title("Kids pottery"),
            })
            .then([room_started()]),
    opening_an_activity_room_twice_changes_nothing =>
        given([room_started()]).as_actor(system()).at(t0())
            .when(ChatCommand::OpenActivityRoom {
                chat_id: ACTIVITY,
                activity_id: ACTIVITY,
                organiser_id: OLIVIA,
                title: title("Kids pottery"),
            })
            .then_nothing(),
    members_cannot_open_activity_rooms =>
        given_nothing().as_actor(olivia()).at(t0())
            .when(ChatCommand::OpenActivityRoom {
                chat_id: ACTIVITY,
                activity_id: ACTIVITY,
                organiser_id: OLIVIA,
                title: None,
            })
            .then_error(DomainError::NotTheSystem),
    the_system_adds_a_confirmed_attendee_to_the_room =>
        given([room_started()]).as_actor(system()).at(t0())
            .when(ChatCommand::AddMember { member_id: BEN })
            .then([added(BEN, Actor::SYSTEM_ID)]),
    the_organiser_cannot_add_members_to_an_activity_room_by_hand =>
        given([room_started()]).as_actor(olivia()).at(t0())
            .when(ChatCommand::AddMember { member_id: BEN })
            .then_error(DomainError::ActivityRoomIsManaged),
    the_system_removes_an_attendee_who_cancelled =>
        given(a_room_with_ben()).as_actor(system()).at(t0())
            .when(ChatCommand::RemoveMember { member_id: BEN })
            .then([ChatEvent::ChatMemberRemoved { member_id: BEN }]),
    removing_someone_who_is_not_in_the_room_changes_nothing =>
        given([room_started()]).as_actor(system()).at(t0())
            .when(ChatCommand::RemoveMember { member_id: BEN })
            .then_nothing(),
    the_organiser_stays_in_their_activity_room =>
        given(a_room_with_ben()).as_actor(system()).at(t0())
            .when(ChatCommand::RemoveMember { member_id: OLIVIA })
            .then_nothing(),
    members_cannot_remove_others_from_a_room =>
        given(a_room_with_ben()).as_actor(olivia()).at(t0())
            .when(ChatCommand::RemoveMember { member_id: BEN })
            .then_error(DomainError::NotTheSystem),
    the_organiser_posts_as_organiser_in_their_activity_room =>
        given(a_room_with_ben()).as_actor(olivia()).at(t0())
            .when(post(MSG1, "Aprons are provided!"))
            .then([ChatEvent::MessagePosted {
                message_id: MSG1,
                sender_id: OLIVIA,
                text: (text("Aprons are provided!")).into(),
                posted_at: t0(),
                as_organiser: true,
            }]),
    the_organiser_deletes_an_attendees_message_in_their_activity_room =>
        given(a_room_with_ben().into_iter().chain([posted(MSG1, BEN, "buy my stuff")]).collect::<Vec<_>>())
            .as_actor(olivia()).at(t0_plus_minutes(5))
            .when(ChatCommand::DeleteMessage { message_id: MSG1 })
            .then([ChatEvent::MessageDeleted { message_id: MSG1, deleted_by: OLIVIA }]),
});

spec_section!(membership, "Chat — membership", {
    any_member_of_a_group_chat_adds_someone =>
        given([group_started()]).as_actor(cara()).at(t0())
            .when(ChatCommand::AddMember { member_id: EVE })
            .then([added(EVE, CARA)]),
    someone_outside_a_group_chat_cannot_add_members =>
        given([group_started()]).as_actor(eve()).at(t0())
            .when(ChatCommand::AddMember { member_id: FINN })
            .then_error(DomainError::NotAChatMember),
    adding_a_current_member_changes_nothing =>
        given([group_started()]).as_actor(ben()).at(t0())
            .when(ChatCommand::AddMember { member_id: CARA })
            .then_nothing(),
    a_full_group_chat_takes_no_more_members =>
        given([ChatEvent::ChatStarted {
            chat_id: CHAT,
            kind: ChatKind::Group,
            title: None,
            started_by: BEN,
            member_ids: std::iter::once(BEN).chain(a_crowd(199)).collect(),
        }])
            .as_actor(ben()).at(t0())
            .when(ChatCommand::AddMember { member_id: EVE })
            .then_error(DomainError::ChatSize { min: 2, max: 200 }),
    a_member_leaves_a_chat =>
        given([group_started()]).as_actor(dan()).at(t0())
            .when(ChatCommand::Leave)
            .then([ChatEvent::ChatMemberLeft { member_id: DAN }]),
    someone_who_is_not_a_member_cannot_leave =>
        given([group_started()]).as_actor(eve()).at(t0())
            .when(ChatCommand::Leave)
            .then_error(DomainError::NotAChatMember),
    a_member_who_left_can_be_added_again =>
        given([group_started(), ChatEvent::ChatMemberLeft { member_id: DAN }]).as_actor(ben()).at(t0())
            .when(ChatCommand::AddMember { member_id: DAN })
            .then([added(DAN, BEN)]),
    an_attendee_leaves_an_activity_room =>
        given(a_room_with_ben()).as_actor(ben()).at(t0())
            .when(ChatCommand::Leave)
            .then([ChatEvent::ChatMemberLeft { member_id: BEN }]),
});

spec_section!(messages, "Chat — messages", {
    a_member_posts_a_message =>
        given([group_started()]).as_actor(cara()).at(t0())
            .when(post(MSG1, "Who brings the clay?"))
            .then([posted(MSG1, CARA, "Who brings the clay?")]),
    only_members_post =>
        given([group_started()]).as_actor(eve()).at(t0())
            .when(post(MSG1, "let me in"))
            .then_error(DomainError::NotAChatMember),
    a_member_who_left_cannot_post =>
        given([group_started(), ChatEvent::ChatMemberLeft { member_id: DAN }]).as_actor(dan()).at(t0())
            .when(post(MSG1, "still here?"))
            .then_error(DomainError::NotAChatMember),
    a_message_id_is_used_once =>
        given([group_started(), posted(MSG1, CARA, "first")]).as_actor(ben()).at(t0())
            .when(post(MSG1, "second"))
            .then_error(DomainError::MessageIdTaken),
    the_sender_edits_their_message =>
        given([group_started(), posted(MSG1, CARA, "Who brings the clay")]).as_actor(cara()).at(t0_plus_minutes(3))
            .when(edit(MSG1, "Who brings the clay?"))
            .then([ChatEvent::MessageEdited {
                message_id: MSG1,
                sender_id: CARA,
                text: (text("Who brings the clay?")).into(),
                edited_at: t0_plus_minutes(3),
            }]),
    a_message_can_be_edited_until_24_hours_after_posting =>
        given([group_started(), posted(MSG1, CARA, "typo")]).as_actor(cara()).at(t0_plus_minutes(24 * 60))
            .when(edit(MSG1, "fixed"))
            .then([ChatEvent::MessageEdited {
                message_id: MSG1,
                sender_id: CARA,
                text: text("fixed").into(),
                edited_at: t0_plus_minutes(24 * 60),
            }]),
    a_message_older_than_24_hours_cannot_be_edited =>
        given([group_started(), posted(MSG1, CARA, "typo")]).as_actor(cara()).at(t0_plus_minutes(24 * 60 + 1))
            .when(edit(MSG1, "too late"))
            .then_error(DomainError::EditWindowClosed),
    only_the_sender_edits_a_message =>
        given([group_started(), posted(MSG1, CARA, "mine")]).as_actor(ben()).at(t0())
            .when(edit(MSG1, "now mine"))
            .then_error(DomainError::NotTheSender),
    the_organiser_cannot_edit_an_attendees_message =>
        given(a_room_with_ben().into_iter().chain([posted(MSG1, BEN, "mine")]).collect::<Vec<_>>())
            .as_actor(olivia()).at(t0())
            .when(edit(MSG1, "censored"))
            .then_error(DomainError::NotTheSender),
    a_deleted_message_cannot_be_edited =>
        given([
            group_started(),
            posted(MSG1, CARA, "oops"),
            ChatEvent::MessageDeleted { message_id: MSG1, deleted_by: CARA },
        ])
            .as_actor(cara()).at(t0())
            .when(edit(MSG1, "back"))
            .then_error(DomainError::MessageDeleted),
    a_sender_who_left_cannot_edit =>
        given([group_started(), posted(MSG1, DAN, "bye"), ChatEvent::ChatMemberLeft { member_id: DAN }])
            .as_actor(dan()).at(t0())
            .when(edit(MSG1, "bye!"))
            .then_error(DomainError::NotAChatMember),
    editing_an_unknown_message_is_refused =>
        given([group_started()]).as_actor(cara()).at(t0())
            .when(edit(MSG2, "hm"))
            .then_error(DomainError::MessageNotFound),
    the_sender_deletes_their_message =>
        given([group_started(), posted(MSG1, CARA, "oops")]).as_actor(cara()).at(t0())
            .when(ChatCommand::DeleteMessage { message_id: MSG1 })
            .then([ChatEvent::MessageDeleted { message_id: MSG1, deleted_by: CARA }]),
    another_member_cannot_delete_a_message_in_a_group_chat =>
        given([group_started(), posted(MSG1, CARA, "mine")]).as_actor(ben()).at(t0())
            .when(ChatCommand::DeleteMessage { message_id: MSG1 })
            .then_error(DomainError::NotTheSender),
    deleting_a_deleted_message_changes_nothing =>
        given([
            group_started(),
            posted(MSG1, CARA, "oops"),
            ChatEvent::MessageDeleted { message_id: MSG1, deleted_by: CARA },
        ])
            .as_actor(cara()).at(t0())
            .when(ChatCommand::DeleteMessage { message_id: MSG1 })
            .then_nothing(),
    deleting_an_unknown_message_is_refused =>
        given([group_started()]).as_actor(cara()).at(t0())
            .when(ChatCommand::DeleteMessage { message_id: MSG3 })
            .then_error(DomainError::MessageNotFound),
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_texts_are_personal_data_of_their_sender() {
        let event = posted(MSG1, CARA, "hi");
        assert_eq!(event.personal_fields(), &["text"]);
        assert_eq!(event.personal_data_subject(), Some(CARA));
        assert!(group_started().personal_fields().is_empty());
    }
}
