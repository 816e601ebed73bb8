-- Distribution (issue 10): see the Postgres migration of the same name.
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           BLOB NOT NULL UNIQUE,
    partition    INTEGER NOT NULL,
    exchange     TEXT NOT NULL,
    routing_key  TEXT NOT NULL,
    message      TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX outbox_partition ON outbox (partition, seq);

CREATE TABLE update_activities (
    activity_id   BLOB PRIMARY KEY,
    organiser_id  BLOB NOT NULL,
    title         TEXT NOT NULL,
    starts_at     TEXT NOT NULL,
    ends_at       TEXT NOT NULL,
    public        INTEGER NOT NULL
);
CREATE TABLE update_bookings (
    booking_id    BLOB PRIMARY KEY,
    activity_id   BLOB NOT NULL,
    member_id     BLOB NOT NULL
);
CREATE INDEX update_bookings_activity ON update_bookings (activity_id);
-- Invitations address an email; a member registered under it gets the push too.
CREATE TABLE update_member_emails (
    email      TEXT PRIMARY KEY,   -- normalized
    member_id  BLOB NOT NULL
);
CREATE TABLE update_chat_members (
    chat_id    BLOB NOT NULL,
    member_id  BLOB NOT NULL,
    PRIMARY KEY (chat_id, member_id)
);

CREATE TABLE sent_notifications (
    message_id  BLOB PRIMARY KEY,
    sent_at     TEXT NOT NULL
);

INSERT INTO projection_checkpoints (name, commit_id, position)
    SELECT 'updates', commit_id, position FROM projection_checkpoints WHERE name = 'notifier'
    ON CONFLICT (name) DO NOTHING;
