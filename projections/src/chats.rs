//! The `chats` read model: each chat (kind, title, members) and its messages, with
//! edited and deleted messages shown as such (a deleted message keeps its place, not
//! its text).

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use crate::sql::{Arg, Args, execute};
use async_trait::async_trait;
use gather_domain::chat::{Chat, ChatEvent, ChatKind};
use gather_domain::member::{Member, MemberEvent};
use gather_store::RecordedEvent;
use gather_store::db::Tx;
use uuid::Uuid;

/// Projects chat streams into `chats`, `chat_members` and `chat_messages`.
pub struct ChatsProjection;

async fn exec(tx: &mut Tx, sql: String, args: Vec<Arg>) -> Result<(), sqlx::Error> {
    execute(tx, sql, Args(args)).await.map(|_| ())
}

fn id(v: Uuid) -> Arg {
    Arg::Uuid(Some(v))
}

fn time(v: chrono::DateTime<chrono::Utc>) -> Arg {
    Arg::Time(Some(v))
}

#[async_trait]
impl Projection for ChatsProjection {
    fn name(&self) -> &'static str {
        "chats"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["chats", "chat_members", "chat_messages"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        // Of a member's events only the forget is read: one this projection cannot
        // decode stops the projectors that need it, not the chats.
        if e.category() == "member" && e.event_type != "MemberForgotten" {
            return Ok(());
        }
        if let Some((member, MemberEvent::MemberForgotten { .. })) = decode_of::<Member>(e)? {
            // Their messages keep their places; the texts are forgotten.
            let messages = at.table("chat_messages");
            let sql = format!("UPDATE {messages} SET text = '(forgotten)' WHERE sender_id = $1 AND text <> ''");
            exec(tx, sql, vec![id(member)]).await?;
            return Ok(());
        }
        let Some((chat, event)) = decode_of::<Chat>(e)? else { return Ok(()) };
        let (chats, members, messages) = (at.table("chats"), at.table("chat_members"), at.table("chat_messages"));
        let add_member = |member: Uuid| {
            (
                format!(
                    "INSERT INTO {members} (chat_id, member_id, joined_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (chat_id, member_id) DO NOTHING"
                ),
                member,
            )
        };
        let remove_member =
            |member: Uuid| (format!("DELETE FROM {members} WHERE chat_id = $1 AND member_id = $2"), member);
        match event {
            ChatEvent::ChatStarted { kind, title, started_by, member_ids, .. } => {
                let kind = match kind {
                    ChatKind::Group => "group",
                    ChatKind::ActivityRoom { .. } => "activity",
                };
                let sql = format!(
                    "INSERT INTO {chats} (chat_id, kind, title, started_by, started_at, last_activity_at, version, position) \
                     VALUES ($1, $2, $3, $4, $5, $5, $6, $7) ON CONFLICT (chat_id) DO NOTHING"
                );
                let title = title.map(|t| t.as_str().to_owned());
                let args = vec![
                    id(chat),
                    Arg::Text(Some(kind.into())),
                    Arg::Text(title),
                    id(started_by),
                    time(e.recorded_at),
                    Arg::Int(Some(e.version)),
                    Arg::Int(Some(e.position)),
                ];
                exec(tx, sql, args).await?;
                for m in member_ids {
                    let (sql, m) = add_member(m);
                    exec(tx, sql, vec![id(chat), id(m), time(e.recorded_at)]).await?;
                }
            }
            ChatEvent::ChatMemberAdded { member_id, .. } => {
                let (sql, m) = add_member(member_id);
                exec(tx, sql, vec![id(chat), id(m), time(e.recorded_at)]).await?;
            }
            ChatEvent::ChatMemberLeft { member_id } | ChatEvent::ChatMemberRemoved { member_id } => {
                let (sql, m) = remove_member(member_id);
                exec(tx, sql, vec![id(chat), id(m)]).await?;
            }
            ChatEvent::MessagePosted { message_id, sender_id, text, posted_at, as_organiser } => {
                // The chat stream's version orders its messages.
                let sql = format!(
                    "INSERT INTO {messages} (message_id, chat_id, seq, sender_id, text, as_organiser, posted_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING"
                );
                let args = vec![
                    id(message_id),
                    id(chat),
                    Arg::Int(Some(e.version)),
                    id(sender_id),
                    Arg::Text(Some(text.to_string())),
                    Arg::Bool(Some(as_organiser)),
                    time(posted_at),
                ];
                exec(tx, sql, args).await?;
            }
            ChatEvent::MessageEdited { message_id, text, edited_at, .. } => {
                let sql = format!("UPDATE {messages} SET text = $2, edited_at = $3 WHERE message_id = $1");
                exec(tx, sql, vec![id(message_id), Arg::Text(Some(text.to_string())), time(edited_at)]).await?;
            }
            ChatEvent::MessageDeleted { message_id, deleted_by } => {
                let sql =
                    format!("UPDATE {messages} SET text = '', deleted_at = $2, deleted_by = $3 WHERE message_id = $1");
                exec(tx, sql, vec![id(message_id), time(e.recorded_at), id(deleted_by)]).await?;
            }
        }
        let sql = format!(
            "UPDATE {chats} SET last_activity_at = $2, version = $3, position = $4 WHERE chat_id = $1 AND version < $3"
        );
        exec(tx, sql, vec![id(chat), time(e.recorded_at), Arg::Int(Some(e.version)), Arg::Int(Some(e.position))])
            .await?;
        Ok(())
    }
}
