CREATE TABLE invitations (
    invitation_id  BLOB PRIMARY KEY,
    activity_id    BLOB NOT NULL,
    email          TEXT NOT NULL,
    status         TEXT NOT NULL,
    position       INTEGER NOT NULL
);
CREATE INDEX invitations_by_email ON invitations (email);
