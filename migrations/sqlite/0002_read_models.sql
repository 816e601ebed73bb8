-- Read models and projector checkpoints.

CREATE TABLE projection_checkpoints (
    name        TEXT PRIMARY KEY,
    commit_id   INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    updated_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE members (
    member_id      BLOB PRIMARY KEY,
    email          TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    roles          TEXT NOT NULL,
    organiser      TEXT,
    children       TEXT NOT NULL,
    suspended      INTEGER NOT NULL DEFAULT 0,
    position       INTEGER NOT NULL
);

CREATE TABLE activities (
    activity_id    BLOB PRIMARY KEY,
    organiser_id   BLOB NOT NULL,
    status         TEXT NOT NULL,
    visibility     TEXT NOT NULL,
    title          TEXT NOT NULL,
    starts_at      TEXT NOT NULL,
    capacity       INTEGER NOT NULL,
    seats_left     INTEGER NOT NULL,
    favourites     INTEGER NOT NULL DEFAULT 0,
    details        TEXT NOT NULL,
    version        INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    position       INTEGER NOT NULL
);
CREATE INDEX activities_by_organiser ON activities (organiser_id, status);
CREATE INDEX activities_by_status ON activities (status, created_at);
