//! Random sequences of chat commands from random members: only members post,
//! only senders edit, group chats stay within 200 members, and the state
//! `evolve` builds is the state a fresh fold of the history gives.

use chrono::Duration;
use gather_domain::chat::{Chat, ChatCommand, ChatEvent, ChatState};
use gather_domain::specs::fixtures::t0;
use gather_domain::values::MessageText;
use gather_domain::{Actor, Aggregate, Context};
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    Add { actor: u8, member: u8 },
    Leave { actor: u8 },
    Post { actor: u8 },
    Edit { actor: u8, message: u8, hours: i64 },
    Delete { actor: u8, message: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..8, 0u8..8).prop_map(|(actor, member)| Op::Add { actor, member }),
        1 => (0u8..8).prop_map(|actor| Op::Leave { actor }),
        3 => (0u8..8).prop_map(|actor| Op::Post { actor }),
        1 => (0u8..8, 0u8..10, 0i64..30).prop_map(|(actor, message, hours)| Op::Edit { actor, message, hours }),
        1 => (0u8..8, 0u8..10).prop_map(|(actor, message)| Op::Delete { actor, message }),
    ]
}

fn member(n: u8) -> Uuid {
    Uuid::from_u128(0x0c00 + u128::from(n))
}

fn message(n: u8) -> Uuid {
    Uuid::from_u128(0x0e00 + u128::from(n))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn only_members_post_and_only_senders_edit(ops in prop::collection::vec(op(), 1..60)) {
        let start = ChatCommand::Start { chat_id: Uuid::from_u128(0xc4), title: None, member_ids: vec![member(1)] };
        let mut history: Vec<ChatEvent> =
            Chat::decide(&ChatState::default(), start, &Context::new(Actor::member(member(0)), t0())).expect("start");
        let mut state = Chat::fold(&history);
        let mut posted = 0u8;
        for op in ops {
            let (actor, command, hours) = match op {
                Op::Add { actor, member: m } => (actor, ChatCommand::AddMember { member_id: member(m) }, 0),
                Op::Leave { actor } => (actor, ChatCommand::Leave, 0),
                Op::Post { actor } => {
                    posted = posted.saturating_add(1);
                    let text = MessageText::parse("hello").expect("text");
                    (actor, ChatCommand::PostMessage { message_id: message(posted % 10), text }, 0)
                }
                Op::Edit { actor, message: m, hours } => {
                    let text = MessageText::parse("edited").expect("text");
                    (actor, ChatCommand::EditMessage { message_id: message(m), text }, hours)
                }
                Op::Delete { actor, message: m } => (actor, ChatCommand::DeleteMessage { message_id: message(m) }, 0),
            };
            let ctx = Context::new(Actor::member(member(actor)), t0() + Duration::hours(hours));
            if let Ok(events) = Chat::decide(&state, command, &ctx) {
                for event in &events {
                    match event {
                        ChatEvent::MessagePosted { sender_id, .. } => prop_assert!(state.members.contains(sender_id)),
                        ChatEvent::MessageEdited { message_id, sender_id, .. } => {
                            prop_assert_eq!(state.messages[message_id].sender_id, *sender_id);
                            prop_assert!(!state.messages[message_id].deleted);
                        }
                        ChatEvent::ChatMemberAdded { added_by, .. } => prop_assert!(state.members.contains(added_by)),
                        _ => {}
                    }
                    state = Chat::evolve(state, event);
                }
                history.extend(events);
            }
            prop_assert!(state.members.len() <= 200);
        }
        prop_assert_eq!(Chat::fold(&history), state);
    }
}
