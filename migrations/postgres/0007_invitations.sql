-- Invitations by id (to find an invitation's activity) and by address (GET /v1/me/invitations).
CREATE TABLE invitations (
    invitation_id  uuid PRIMARY KEY,
    activity_id    uuid NOT NULL,
    email          text NOT NULL,
    status         text NOT NULL,
    position       bigint NOT NULL
);
CREATE INDEX invitations_by_email ON invitations (email);
