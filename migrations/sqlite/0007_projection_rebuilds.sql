-- Rebuilds in progress (ARCHITECTURE.md decision 10); see the Postgres migration.

CREATE TABLE projection_rebuilds (
    name             TEXT PRIMARY KEY,
    owner            BLOB NOT NULL,
    commit_id        INTEGER NOT NULL,
    position         INTEGER NOT NULL,
    target_position  INTEGER NOT NULL,
    events           INTEGER NOT NULL DEFAULT 0,
    started_at       TEXT NOT NULL,
    heartbeat_at     TEXT NOT NULL,
    error            TEXT
);
