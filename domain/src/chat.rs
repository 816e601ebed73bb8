//! The chat aggregate — stream `chat-{id}`: group chats started by members
//! and the chat room of a published activity.
//!
//! A group chat has 2–200 members (its creator included) and any member may
//! add others. An activity room (whose id is the activity's id) starts with
//! the organiser; its membership follows the bookings through a process
//! manager, so only the system adds or removes members there. Only members
//! post; only the sender edits (within 24 hours); the sender, or the organiser
//! in an activity room, deletes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::{Aggregate, Context, DomainEvent, Personal};
use crate::errors::DomainError;
use crate::specs::fixtures::{name, names};
use crate::testkit::{AggregateCommand, AggregateEvent, Describe};
use crate::values::{ChatTitle, MessageText};

mod specs;
pub use specs::sections as spec_sections;

/// The chat aggregate (stream category `chat`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Chat;

/// The fewest members of a group chat, its creator included.
pub const MIN_GROUP_MEMBERS: usize = 2;
/// The most members of a group chat.
pub const MAX_GROUP_MEMBERS: usize = 200;
/// How long after posting a message can be edited.
pub const EDIT_WINDOW_HOURS: i64 = 24;

/// Which kind of chat a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatKind {
    /// A direct or group chat started by a member.
    Group,
    /// The chat room of a published activity.
    ActivityRoom {
        /// The activity (also the chat's id).
        activity_id: Uuid,
        /// Its organiser, who may delete any message and posts "as organiser".
        organiser_id: Uuid,
    },
}

/// What members (or the process manager) ask of a chat.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatCommand {
    /// `StartChat` (a member): a group chat with 2–200 members, the creator included.
    Start {
        /// The new chat's id.
        chat_id: Uuid,
        /// An optional title.
        title: Option<ChatTitle>,
        /// The other members (the creator is added if missing).
        member_ids: Vec<Uuid>,
    },
    /// Opens an activity's chat room (process manager, on `ActivityPublished`).
    OpenActivityRoom {
        /// The room's id (the activity's id).
        chat_id: Uuid,
        /// The activity.
        activity_id: Uuid,
        /// Its organiser, the room's first member.
        organiser_id: Uuid,
        /// The room's title (the activity's title).
        title: Option<ChatTitle>,
    },
    /// `AddChatMember`: any member of a group chat; the system in an activity room.
    AddMember {
        /// Who joins.
        member_id: Uuid,
    },
    /// Removes a member of an activity room (process manager, on `BookingCancelled`).
    RemoveMember {
        /// Who leaves.
        member_id: Uuid,
    },
    /// `LeaveChat`: the acting member leaves.
    Leave,
    /// `PostMessage` (members only).
    PostMessage {
        /// The new message's id.
        message_id: Uuid,
        /// 1–4,000 characters.
        text: MessageText,
    },
    /// `EditMessage` (the sender, within 24 hours).
    EditMessage {
        /// The message.
        message_id: Uuid,
        /// The new text.
        text: MessageText,
    },
    /// `DeleteMessage` (the sender, or the organiser in an activity room).
    DeleteMessage {
        /// The message.
        message_id: Uuid,
    },
}

/// What happened in a chat. Serialized as `{"type": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ChatEvent {
    /// The chat began.
    ChatStarted {
        /// The chat.
        chat_id: Uuid,
        /// Group or activity room.
        kind: ChatKind,
        /// Its title.
        title: Option<ChatTitle>,
        /// Who started it (the system for activity rooms).
        started_by: Uuid,
        /// Its first members.
        member_ids: Vec<Uuid>,
    },
    /// Someone joined.
    ChatMemberAdded {
        /// Who joined.
        member_id: Uuid,
        /// Who added them.
        added_by: Uuid,
    },
    /// Someone left on their own.
    ChatMemberLeft {
        /// Who left.
        member_id: Uuid,
    },
    /// The process manager removed someone from an activity room.
    ChatMemberRemoved {
        /// Who was removed.
        member_id: Uuid,
    },
    /// A message was posted. Personal: `text` (the sender's key).
    MessagePosted {
        /// The message.
        message_id: Uuid,
        /// Its sender.
        sender_id: Uuid,
        /// Its text.
        text: Personal<MessageText>,
        /// When (`createdAt`).
        posted_at: DateTime<Utc>,
        /// Whether the sender is the activity's organiser posting in its room.
        as_organiser: bool,
    },
    /// A message was edited. Personal: `text` (the sender's key).
    MessageEdited {
        /// The message.
        message_id: Uuid,
        /// Its sender.
        sender_id: Uuid,
        /// The new text.
        text: Personal<MessageText>,
        /// When (`updatedAt`).
        edited_at: DateTime<Utc>,
    },
    /// A message was deleted.
    MessageDeleted {
        /// The message.
        message_id: Uuid,
        /// Who deleted it.
        deleted_by: Uuid,
    },
}

impl DomainEvent for ChatEvent {
    fn event_type(&self) -> &'static str {
        match self {
            ChatEvent::ChatStarted { .. } => "ChatStarted",
            ChatEvent::ChatMemberAdded { .. } => "ChatMemberAdded",
            ChatEvent::ChatMemberLeft { .. } => "ChatMemberLeft",
            ChatEvent::ChatMemberRemoved { .. } => "ChatMemberRemoved",
            ChatEvent::MessagePosted { .. } => "MessagePosted",
            ChatEvent::MessageEdited { .. } => "MessageEdited",
            ChatEvent::MessageDeleted { .. } => "MessageDeleted",
        }
    }

    fn personal_fields(&self) -> &'static [&'static str] {
        match self {
            ChatEvent::MessagePosted { .. } | ChatEvent::MessageEdited { .. } => &["text"],
            _ => &[],
        }
    }

    fn personal_data_subject(&self) -> Option<Uuid> {
        match self {
            ChatEvent::MessagePosted { sender_id, .. } | ChatEvent::MessageEdited { sender_id, .. } => Some(*sender_id),
            _ => None,
        }
    }
}

/// A message as the chat knows it (its text lives in the events and read models).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageInfo {
    /// The sender.
    pub sender_id: Uuid,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// The folded chat stream (serializable for snapshots only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatState {
    /// Whether `ChatStarted` happened.
    pub started: bool,
    /// The chat's id.
    pub chat_id: Uuid,
    /// Group or activity room (`None` before the start).
    pub kind: Option<ChatKind>,
    /// The title.
    pub title: Option<ChatTitle>,
    /// Current members.
    pub members: BTreeSet<Uuid>,
    /// Messages by id.
    pub messages: BTreeMap<Uuid, MessageInfo>,
}

impl ChatState {
    /// The activity room's organiser, if this is an activity room.
    pub fn room_organiser(&self) -> Option<Uuid> {
        match self.kind {
            Some(ChatKind::ActivityRoom { organiser_id, .. }) => Some(organiser_id),
            _ => None,
        }
    }
}

impl Aggregate for Chat {
    const CATEGORY: &'static str = "chat";
    type State = ChatState;
    type Command = ChatCommand;
    type Event = ChatEvent;

    fn decide(state: &ChatState, command: ChatCommand, ctx: &Context) -> Result<Vec<ChatEvent>, DomainError> {
        use ChatCommand as C;
        use ChatEvent as E;
        let actor = ctx.actor.id;
        match command {
            C::Start { chat_id, title, member_ids } => {
                if state.started {
                    return Err(DomainError::ChatAlreadyExists);
                }
                let mut members = vec![actor];
                for id in member_ids {
                    if !members.contains(&id) {
                        members.push(id);
                    }
                }
                if !(MIN_GROUP_MEMBERS..=MAX_GROUP_MEMBERS).contains(&members.len()) {
                    return Err(DomainError::ChatSize { min: MIN_GROUP_MEMBERS, max: MAX_GROUP_MEMBERS });
                }
                Ok(vec![E::ChatStarted {
                    chat_id,
                    kind: ChatKind::Group,
                    title,
                    started_by: actor,
                    member_ids: members,
                }])
            }
            C::OpenActivityRoom { chat_id, activity_id, organiser_id, title } => {
                if !ctx.is_system() {
                    return Err(DomainError::NotTheSystem);
                }
                if state.started {
                    // The process manager may deliver `ActivityPublished` twice.
                    return match state.kind {
                        Some(ChatKind::ActivityRoom { .. }) => Ok(vec![]),
                        _ => Err(DomainError::ChatAlreadyExists),
                    };
                }
                Ok(vec![E::ChatStarted {
                    chat_id,
                    kind: ChatKind::ActivityRoom { activity_id, organiser_id },
                    title,
                    started_by: actor,
                    member_ids: vec![organiser_id],
                }])
            }
            command => {
                if !state.started {
                    return Err(DomainError::ChatNotFound);
                }
                decide_started(state, command, ctx)
            }
        }
    }

    fn evolve(mut state: ChatState, event: &ChatEvent) -> ChatState {
        match event {
            ChatEvent::ChatStarted { chat_id, kind, title, member_ids, .. } => {
                state.started = true;
                state.chat_id = *chat_id;
                state.kind = Some(*kind);
                state.title = title.clone();
                state.members = member_ids.iter().copied().collect();
            }
            ChatEvent::ChatMemberAdded { member_id, .. } => {
                state.members.insert(*member_id);
            }
            ChatEvent::ChatMemberLeft { member_id } | ChatEvent::ChatMemberRemoved { member_id } => {
                state.members.remove(member_id);
            }
            ChatEvent::MessagePosted { message_id, sender_id, posted_at, .. } => {
                state
                    .messages
                    .insert(*message_id, MessageInfo { sender_id: *sender_id, posted_at: *posted_at, deleted: false });
            }
            ChatEvent::MessageEdited { .. } => {}
            ChatEvent::MessageDeleted { message_id, .. } => {
                if let Some(message) = state.messages.get_mut(message_id) {
                    message.deleted = true;
                }
            }
        }
        state
    }
}

fn decide_started(state: &ChatState, command: ChatCommand, ctx: &Context) -> Result<Vec<ChatEvent>, DomainError> {
    use ChatCommand as C;
    use ChatEvent as E;
    let actor = ctx.actor.id;
    let is_member = state.members.contains(&actor);
    let room_organiser = state.room_organiser();
    match command {
        C::Start { .. } | C::OpenActivityRoom { .. } => Err(DomainError::ChatAlreadyExists),
        C::AddMember { member_id } => {
            if room_organiser.is_some() {
                if !ctx.is_system() {
                    return Err(DomainError::ActivityRoomIsManaged);
                }
            } else if !is_member && !ctx.is_system() {
                return Err(DomainError::NotAChatMember);
            }
            if state.members.contains(&member_id) {
                return Ok(vec![]);
            }
            if room_organiser.is_none() && state.members.len() >= MAX_GROUP_MEMBERS {
                return Err(DomainError::ChatSize { min: MIN_GROUP_MEMBERS, max: MAX_GROUP_MEMBERS });
            }
            Ok(vec![E::ChatMemberAdded { member_id, added_by: actor }])
        }
        C::RemoveMember { member_id } => {
            if !ctx.is_system() {
                return Err(DomainError::NotTheSystem);
            }
            // The organiser stays in their own activity's room.
            if !state.members.contains(&member_id) || room_organiser == Some(member_id) {
                return Ok(vec![]);
            }
            Ok(vec![E::ChatMemberRemoved { member_id }])
        }
        C::Leave => {
            if !is_member {
                return Err(DomainError::NotAChatMember);
            }
            Ok(vec![E::ChatMemberLeft { member_id: actor }])
        }
        C::PostMessage { message_id, text } => {
            if !is_member {
                return Err(DomainError::NotAChatMember);
            }
            if state.messages.contains_key(&message_id) {
                return Err(DomainError::MessageIdTaken);
            }
            Ok(vec![E::MessagePosted {
                message_id,
                sender_id: actor,
                text: text.into(),
                posted_at: ctx.now,
                as_organiser: room_organiser == Some(actor),
            }])
        }
        C::EditMessage { message_id, text } => {
            let message = state.messages.get(&message_id).ok_or(DomainError::MessageNotFound)?;
            if message.sender_id != actor {
                return Err(DomainError::NotTheSender);
            }
            if message.deleted {
                return Err(DomainError::MessageDeleted);
            }
            if !is_member {
                return Err(DomainError::NotAChatMember);
            }
            if ctx.now > message.posted_at + Duration::hours(EDIT_WINDOW_HOURS) {
                return Err(DomainError::EditWindowClosed);
            }
            Ok(vec![E::MessageEdited { message_id, sender_id: actor, text: text.into(), edited_at: ctx.now }])
        }
        C::DeleteMessage { message_id } => {
            let message = state.messages.get(&message_id).ok_or(DomainError::MessageNotFound)?;
            if message.sender_id != actor && room_organiser != Some(actor) {
                return Err(DomainError::NotTheSender);
            }
            if message.deleted {
                return Ok(vec![]);
            }
            Ok(vec![E::MessageDeleted { message_id, deleted_by: actor }])
        }
    }
}

impl AggregateEvent for ChatEvent {
    type Aggregate = Chat;
}

impl AggregateCommand for ChatCommand {
    type Aggregate = Chat;
}

impl Describe for ChatEvent {
    fn describe(&self) -> String {
        match self {
            ChatEvent::ChatStarted { kind, title, started_by, member_ids, .. } => {
                let what = match kind {
                    ChatKind::Group => "group chat".to_owned(),
                    ChatKind::ActivityRoom { activity_id, organiser_id } => {
                        format!("room of {} (organiser {})", name(*activity_id), name(*organiser_id))
                    }
                };
                let title = title.as_ref().map(|t| format!(" \"{t}\"")).unwrap_or_default();
                format!("ChatStarted: {what}{title} by {}, members {}", name(*started_by), names(member_ids))
            }
            ChatEvent::ChatMemberAdded { member_id, added_by } => {
                format!("ChatMemberAdded: {} added by {}", name(*member_id), name(*added_by))
            }
            ChatEvent::ChatMemberLeft { member_id } => format!("ChatMemberLeft: {}", name(*member_id)),
            ChatEvent::ChatMemberRemoved { member_id } => format!("ChatMemberRemoved: {}", name(*member_id)),
            ChatEvent::MessagePosted { message_id, sender_id, text, posted_at, as_organiser } => format!(
                "MessagePosted: {} by {}{} at {}: \"{}\"",
                name(*message_id),
                name(*sender_id),
                if *as_organiser { " as organiser" } else { "" },
                crate::specs::when(*posted_at),
                short(&text.to_string())
            ),
            ChatEvent::MessageEdited { message_id, sender_id, text, edited_at } => format!(
                "MessageEdited: {} by {} at {}: \"{}\"",
                name(*message_id),
                name(*sender_id),
                crate::specs::when(*edited_at),
                short(&text.to_string())
            ),
            ChatEvent::MessageDeleted { message_id, deleted_by } => {
                format!("MessageDeleted: {} by {}", name(*message_id), name(*deleted_by))
            }
        }
    }
}

impl Describe for ChatCommand {
    fn describe(&self) -> String {
        match self {
            ChatCommand::Start { title, member_ids, .. } => format!(
                "StartChat{} with {}",
                title.as_ref().map(|t| format!(" \"{t}\"")).unwrap_or_default(),
                names(member_ids)
            ),
            ChatCommand::OpenActivityRoom { activity_id, organiser_id, .. } => {
                format!("OpenActivityRoom for {} (organiser {})", name(*activity_id), name(*organiser_id))
            }
            ChatCommand::AddMember { member_id } => format!("AddChatMember {}", name(*member_id)),
            ChatCommand::RemoveMember { member_id } => format!("RemoveChatMember {}", name(*member_id)),
            ChatCommand::Leave => "LeaveChat".to_owned(),
            ChatCommand::PostMessage { message_id, text } => {
                format!("PostMessage {}: \"{}\"", name(*message_id), short(&text.to_string()))
            }
            ChatCommand::EditMessage { message_id, text } => {
                format!("EditMessage {}: \"{}\"", name(*message_id), short(&text.to_string()))
            }
            ChatCommand::DeleteMessage { message_id } => format!("DeleteMessage {}", name(*message_id)),
        }
    }
}

/// The first 40 characters of a text, for the catalogue.
pub(crate) fn short(text: &str) -> String {
    let count = text.chars().count();
    if count <= 40 {
        return text.to_owned();
    }
    format!("{}… ({count} characters)", text.chars().take(40).collect::<String>())
}
