-- See the Postgres migration of the same name.
CREATE TABLE personal_keys (
    key_id       BLOB PRIMARY KEY,
    subject      BLOB NOT NULL,
    wrapped      BLOB,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    shredded_at  TEXT
);
CREATE UNIQUE INDEX personal_keys_live ON personal_keys (subject) WHERE wrapped IS NOT NULL;
CREATE INDEX personal_keys_by_subject ON personal_keys (subject);

CREATE TABLE plaintext_personal_data (
    event_id  BLOB NOT NULL,
    path      TEXT NOT NULL,
    subject   BLOB NOT NULL,
    PRIMARY KEY (event_id, path)
);
CREATE INDEX plaintext_personal_data_by_subject ON plaintext_personal_data (subject);
