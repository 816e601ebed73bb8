-- The read side (issue 9): bookings, favourites, chats and search, and the columns the
-- moderation queue and popularity need on activities. Each table belongs to exactly one
-- projection (see projections/src/lib.rs), so each can be rebuilt beside its live copy.

-- activities: when it was last submitted (the queue is oldest submission first) and how
-- many bookings are confirmed (popularity = confirmed bookings + favourites).
ALTER TABLE activities ADD COLUMN submitted_at timestamptz;
ALTER TABLE activities ADD COLUMN confirmed bigint NOT NULL DEFAULT 0;
CREATE INDEX activities_queue ON activities (submitted_at, activity_id) WHERE status = 'pending';
CREATE INDEX activities_by_organiser_created ON activities (organiser_id, created_at, activity_id);

-- bookings (owned by the activities projection: bookings live in activity streams).
CREATE TABLE bookings (
    booking_id     uuid PRIMARY KEY,
    activity_id    uuid NOT NULL,
    member_id      uuid NOT NULL,
    seats          bigint NOT NULL,
    children       jsonb NOT NULL,
    status         text NOT NULL,
    payment_ref    text,
    invitation_id  uuid,
    waitlist_seq   bigint,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    position       bigint NOT NULL
);
CREATE INDEX bookings_by_member ON bookings (member_id);
CREATE INDEX bookings_by_activity ON bookings (activity_id, status);

-- favourites (a member's list, newest first).
CREATE TABLE favourites (
    member_id      uuid NOT NULL,
    activity_id    uuid NOT NULL,
    seq            bigint NOT NULL,
    favourited_at  timestamptz NOT NULL,
    PRIMARY KEY (member_id, activity_id)
);
CREATE INDEX favourites_by_member ON favourites (member_id, seq);

-- invitations: when they were sent, for a stable order.
ALTER TABLE invitations ADD COLUMN invited_at timestamptz;
ALTER TABLE invitations ADD COLUMN member_id uuid;

-- chats, their members and messages.
CREATE TABLE chats (
    chat_id          uuid PRIMARY KEY,
    kind             text NOT NULL,
    title            text,
    started_by       uuid NOT NULL,
    started_at       timestamptz NOT NULL,
    last_activity_at timestamptz NOT NULL,
    version          bigint NOT NULL,
    position         bigint NOT NULL
);
CREATE TABLE chat_members (
    chat_id      uuid NOT NULL,
    member_id    uuid NOT NULL,
    joined_at    timestamptz NOT NULL,
    PRIMARY KEY (chat_id, member_id)
);
CREATE INDEX chat_members_by_member ON chat_members (member_id);
CREATE TABLE chat_messages (
    message_id     uuid PRIMARY KEY,
    chat_id        uuid NOT NULL,
    seq            bigint NOT NULL,
    sender_id      uuid NOT NULL,
    text           text NOT NULL,
    as_organiser   boolean NOT NULL,
    posted_at      timestamptz NOT NULL,
    edited_at      timestamptz,
    deleted_at     timestamptz,
    deleted_by     uuid
);
CREATE INDEX chat_messages_by_chat ON chat_messages (chat_id, seq);

-- search over published public activities (gx, gy, gz: the venue as a unit vector, so the
-- exact great-circle check is a dot product on both backends): weighted full text (title > tags >
-- description > organiser) as a generated column with a GIN index, trigrams on titles for
-- typo tolerance, and indexes for every sort and the bounding-box prefilter.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE activity_search (
    activity_id    uuid PRIMARY KEY,
    organiser_id   uuid NOT NULL,
    listed         boolean NOT NULL DEFAULT false,
    status         text NOT NULL,
    visibility     text NOT NULL,
    title          text NOT NULL,
    description    text NOT NULL,
    tags           text NOT NULL,
    organiser      text NOT NULL DEFAULT '',
    category       text NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    age_min        bigint,
    age_max        bigint,
    free           boolean NOT NULL,
    online         boolean NOT NULL,
    lat            double precision,
    lng            double precision,
    gx             double precision,
    gy             double precision,
    gz             double precision,
    seats_left     bigint NOT NULL,
    favourites     bigint NOT NULL DEFAULT 0,
    confirmed      bigint NOT NULL DEFAULT 0,
    popularity     bigint NOT NULL DEFAULT 0,
    published_at   timestamptz,
    details        jsonb NOT NULL,
    position       bigint NOT NULL,
    document       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A') ||
        setweight(to_tsvector('english', tags), 'B') ||
        setweight(to_tsvector('english', description), 'C') ||
        setweight(to_tsvector('english', organiser), 'D')) STORED
);
CREATE INDEX activity_search_document ON activity_search USING gin (document) WHERE listed;
CREATE INDEX activity_search_title_trgm ON activity_search USING gin (title gin_trgm_ops) WHERE listed;
CREATE INDEX activity_search_soonest ON activity_search (starts_at, activity_id) WHERE listed;
CREATE INDEX activity_search_popular ON activity_search (popularity, activity_id) WHERE listed;
CREATE INDEX activity_search_newest ON activity_search (published_at, activity_id) WHERE listed;
CREATE INDEX activity_search_geo ON activity_search (lat, lng) WHERE listed;
-- confirmed bookings per activity (to count popularity exactly) and organiser names.
CREATE TABLE search_confirmed (
    booking_id     uuid PRIMARY KEY,
    activity_id    uuid NOT NULL
);
CREATE TABLE search_organisers (
    member_id      uuid PRIMARY KEY,
    name           text NOT NULL
);
