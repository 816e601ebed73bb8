-- Read models and projector checkpoints.

CREATE TABLE projection_checkpoints (
    name        text PRIMARY KEY,
    commit_id   bigint NOT NULL,
    position    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE members (
    member_id      uuid PRIMARY KEY,
    email          text NOT NULL,
    display_name   text NOT NULL,
    roles          jsonb NOT NULL,
    organiser      jsonb,
    children       jsonb NOT NULL,
    suspended      boolean NOT NULL DEFAULT false,
    position       bigint NOT NULL
);

CREATE TABLE activities (
    activity_id    uuid PRIMARY KEY,
    organiser_id   uuid NOT NULL,
    status         text NOT NULL,
    visibility     text NOT NULL,
    title          text NOT NULL,
    starts_at      timestamptz NOT NULL,
    capacity       bigint NOT NULL,
    seats_left     bigint NOT NULL,
    favourites     bigint NOT NULL DEFAULT 0,
    details        jsonb NOT NULL,
    version        bigint NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    position       bigint NOT NULL
);
CREATE INDEX activities_by_organiser ON activities (organiser_id, status);
CREATE INDEX activities_by_status ON activities (status, created_at);
