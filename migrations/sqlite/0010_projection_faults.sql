-- Projector faults and operators' decisions on them; see the Postgres migration.

CREATE TABLE projection_faults (
    name       TEXT PRIMARY KEY,
    stream     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    commit_id  INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    error      TEXT NOT NULL,
    failed_at  TEXT NOT NULL
);

CREATE TABLE projection_decisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    decision    TEXT NOT NULL,
    position    INTEGER NOT NULL,
    detail      TEXT NOT NULL,
    decided_at  TEXT NOT NULL
);
