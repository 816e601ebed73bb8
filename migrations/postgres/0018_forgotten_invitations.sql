-- Forgetting a member scrubs the invitations sent to their address (issue 13): the
-- invitations projection keeps members' addresses to find them.
CREATE TABLE invitation_member_emails (
    email      text PRIMARY KEY,   -- normalized
    member_id  uuid NOT NULL
);
CREATE INDEX invitation_member_emails_by_member ON invitation_member_emails (member_id);
-- Replayed from the start so that members registered before this table existed are in it.
DELETE FROM projection_checkpoints WHERE name = 'invitations';
DELETE FROM invitations;
