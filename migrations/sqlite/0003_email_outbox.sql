CREATE TABLE email_outbox (
    id          BLOB PRIMARY KEY,
    recipient   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    sent_at     TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX email_outbox_pending ON email_outbox (created_at) WHERE sent_at IS NULL;
