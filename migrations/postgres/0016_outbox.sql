-- Distribution (issue 10): the `updates` projection writes the messages members and
-- workers care about into `outbox` in its batch transaction; the relay publishes them
-- to RabbitMQ (or the in-process bus) and deletes each row after its confirm.
CREATE TABLE outbox (
    seq          bigserial PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,         -- stable: derived from the event
    partition    int NOT NULL,                 -- hash of the source stream: one relay each
    exchange     text NOT NULL,                -- gather.updates or gather.audit
    routing_key  text NOT NULL,
    message      text NOT NULL,                -- the Update, as JSON
    created_at   timestamptz NOT NULL
);
CREATE INDEX outbox_partition ON outbox (partition, seq);

CREATE FUNCTION gather_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gather_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION gather_outbox_notify();

-- What the updates projection needs to address its messages, kept by itself so it
-- never reads another projection's tables (which may lag behind it).
CREATE TABLE update_activities (
    activity_id   uuid PRIMARY KEY,
    organiser_id  uuid NOT NULL,
    title         text NOT NULL,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    public        boolean NOT NULL
);
CREATE TABLE update_bookings (
    booking_id    uuid PRIMARY KEY,
    activity_id   uuid NOT NULL,
    member_id     uuid NOT NULL
);
CREATE INDEX update_bookings_activity ON update_bookings (activity_id);
-- Invitations address an email; a member registered under it gets the push too.
CREATE TABLE update_member_emails (
    email      text PRIMARY KEY,   -- normalized
    member_id  uuid NOT NULL
);
CREATE TABLE update_chat_members (
    chat_id    uuid NOT NULL,
    member_id  uuid NOT NULL,
    PRIMARY KEY (chat_id, member_id)
);

-- The notification worker records each message it sent: a redelivery sends nothing twice.
CREATE TABLE sent_notifications (
    message_id  uuid PRIMARY KEY,
    sent_at     timestamptz NOT NULL
);

-- The updates projection takes over from the notifier projection's checkpoint (the
-- welcome and cancellation emails it wrote): an upgraded store sends nothing twice.
INSERT INTO projection_checkpoints (name, commit_id, position)
    SELECT 'updates', commit_id, position FROM projection_checkpoints WHERE name = 'notifier'
    ON CONFLICT (name) DO NOTHING;
