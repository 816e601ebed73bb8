-- The read side (issue 9); see migrations/postgres/0011_read_side.sql for the why.

ALTER TABLE activities ADD COLUMN submitted_at TEXT;
ALTER TABLE activities ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX activities_queue ON activities (submitted_at, activity_id) WHERE status = 'pending';
CREATE INDEX activities_by_organiser_created ON activities (organiser_id, created_at, activity_id);

CREATE TABLE bookings (
    booking_id     BLOB PRIMARY KEY,
    activity_id    BLOB NOT NULL,
    member_id      BLOB NOT NULL,
    seats          INTEGER NOT NULL,
    children       TEXT NOT NULL,
    status         TEXT NOT NULL,
    payment_ref    TEXT,
    invitation_id  BLOB,
    waitlist_seq   INTEGER,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    position       INTEGER NOT NULL
);
CREATE INDEX bookings_by_member ON bookings (member_id);
CREATE INDEX bookings_by_activity ON bookings (activity_id, status);

CREATE TABLE favourites (
    member_id      BLOB NOT NULL,
    activity_id    BLOB NOT NULL,
    seq            INTEGER NOT NULL,
    favourited_at  TEXT NOT NULL,
    PRIMARY KEY (member_id, activity_id)
);
CREATE INDEX favourites_by_member ON favourites (member_id, seq);

ALTER TABLE invitations ADD COLUMN invited_at TEXT;
ALTER TABLE invitations ADD COLUMN member_id BLOB;

CREATE TABLE chats (
    chat_id          BLOB PRIMARY KEY,
    kind             TEXT NOT NULL,
    title            TEXT,
    started_by       BLOB NOT NULL,
    started_at       TEXT NOT NULL,
    last_activity_at TEXT NOT NULL,
    version          INTEGER NOT NULL,
    position         INTEGER NOT NULL
);
CREATE TABLE chat_members (
    chat_id      BLOB NOT NULL,
    member_id    BLOB NOT NULL,
    joined_at    TEXT NOT NULL,
    PRIMARY KEY (chat_id, member_id)
);
CREATE INDEX chat_members_by_member ON chat_members (member_id);
CREATE TABLE chat_messages (
    message_id     BLOB PRIMARY KEY,
    chat_id        BLOB NOT NULL,
    seq            INTEGER NOT NULL,
    sender_id      BLOB NOT NULL,
    text           TEXT NOT NULL,
    as_organiser   INTEGER NOT NULL,
    posted_at      TEXT NOT NULL,
    edited_at      TEXT,
    deleted_at     TEXT,
    deleted_by     BLOB
);
CREATE INDEX chat_messages_by_chat ON chat_messages (chat_id, seq);

-- Search: the row (doc is the FTS5 rowid, stable across VACUUM) and a contentless FTS5
-- index over title, tags, description and organiser, ranked by bm25 with weights.
CREATE TABLE activity_search (
    doc            INTEGER PRIMARY KEY,
    activity_id    BLOB NOT NULL UNIQUE,
    organiser_id   BLOB NOT NULL,
    listed         INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL,
    visibility     TEXT NOT NULL,
    title          TEXT NOT NULL,
    description    TEXT NOT NULL,
    tags           TEXT NOT NULL,
    organiser      TEXT NOT NULL DEFAULT '',
    category       TEXT NOT NULL,
    starts_at      TEXT NOT NULL,
    ends_at        TEXT NOT NULL,
    age_min        INTEGER,
    age_max        INTEGER,
    free           INTEGER NOT NULL,
    online         INTEGER NOT NULL,
    lat            REAL,
    lng            REAL,
    gx             REAL,
    gy             REAL,
    gz             REAL,
    seats_left     INTEGER NOT NULL,
    favourites     INTEGER NOT NULL DEFAULT 0,
    confirmed      INTEGER NOT NULL DEFAULT 0,
    popularity     INTEGER NOT NULL DEFAULT 0,
    published_at   TEXT,
    details        TEXT NOT NULL,
    position       INTEGER NOT NULL
);
CREATE INDEX activity_search_soonest ON activity_search (starts_at, activity_id) WHERE listed = 1;
CREATE INDEX activity_search_popular ON activity_search (popularity, activity_id) WHERE listed = 1;
CREATE INDEX activity_search_newest ON activity_search (published_at, activity_id) WHERE listed = 1;
CREATE INDEX activity_search_geo ON activity_search (lat, lng) WHERE listed = 1;
CREATE VIRTUAL TABLE activity_search_fts USING fts5(
    title, tags, description, organiser,
    content='', contentless_delete=1, tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TABLE search_confirmed (
    booking_id     BLOB PRIMARY KEY,
    activity_id    BLOB NOT NULL
);
CREATE TABLE search_organisers (
    member_id      BLOB PRIMARY KEY,
    name           TEXT NOT NULL
);
