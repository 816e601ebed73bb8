-- Crypto-shredding (issue 13, ARCHITECTURE.md decision 12): one data key per subject
-- (a member, or an invited address), wrapped by the key-encryption key (GATHER_KEK).
-- Forgetting sets `wrapped` to NULL and keeps the row as a tombstone: a key id the
-- table does not know is an error, a shredded one reads as "forgotten".
CREATE TABLE personal_keys (
    key_id       uuid PRIMARY KEY,
    subject      uuid NOT NULL,
    wrapped      bytea,              -- nonce (24) || XChaCha20-Poly1305(KEK, data key); NULL once shredded
    created_at   timestamptz NOT NULL DEFAULT now(),
    shredded_at  timestamptz
);
-- At most one live key per subject; shredded ones stay beside it.
CREATE UNIQUE INDEX personal_keys_live ON personal_keys (subject) WHERE wrapped IS NOT NULL;
CREATE INDEX personal_keys_by_subject ON personal_keys (subject);

-- Personal fields that events written before encryption hold in plain text, found by
-- `gather store encrypt-personal-data`: once their subject is shredded they read as
-- forgotten (the log itself is never rewritten).
CREATE TABLE plaintext_personal_data (
    event_id  uuid NOT NULL,
    path      text NOT NULL,         -- concrete path into the payload: `email`, `invitations[2].email`
    subject   uuid NOT NULL,
    PRIMARY KEY (event_id, path)
);
CREATE INDEX plaintext_personal_data_by_subject ON plaintext_personal_data (subject);
