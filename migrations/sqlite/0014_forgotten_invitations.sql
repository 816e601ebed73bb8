-- See the Postgres migration of the same name.
CREATE TABLE invitation_member_emails (
    email      TEXT PRIMARY KEY,
    member_id  BLOB NOT NULL
);
CREATE INDEX invitation_member_emails_by_member ON invitation_member_emails (member_id);
DELETE FROM projection_checkpoints WHERE name = 'invitations';
DELETE FROM invitations;
