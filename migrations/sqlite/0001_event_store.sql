-- The event store on SQLite: one writer, so the commit order is the position order.

CREATE TABLE streams (
    stream   TEXT    PRIMARY KEY,
    version  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    commit_id       INTEGER NOT NULL DEFAULT 0,
    stream          TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    event_id        BLOB    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    data            TEXT    NOT NULL,
    command_id      BLOB    NOT NULL,
    correlation_id  BLOB    NOT NULL,
    causation_id    BLOB,
    actor           BLOB,
    recorded_at     TEXT    NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX events_category_order ON events (category, position);
CREATE INDEX events_type_order ON events (event_type, position);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the events table is append-only (UPDATE refused)'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the events table is append-only (DELETE refused)'); END;

CREATE TABLE commands (
    command_id   BLOB PRIMARY KEY,
    result       TEXT NOT NULL,
    recorded_at  TEXT NOT NULL
);

CREATE TABLE snapshots (
    stream         TEXT    PRIMARY KEY,
    version        INTEGER NOT NULL,
    state_version  INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    taken_at       TEXT    NOT NULL
);
