CREATE TABLE due_commands (
    key             TEXT PRIMARY KEY,
    command_id      BLOB NOT NULL,
    due_at          TEXT NOT NULL,
    command         TEXT NOT NULL,
    causation_id    BLOB,
    correlation_id  BLOB,
    claimed_until   TEXT,
    fired_at        TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX due_commands_pending ON due_commands (due_at) WHERE fired_at IS NULL;
