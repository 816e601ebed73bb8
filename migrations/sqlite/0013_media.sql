-- Media (issue 11): see the Postgres migration of the same name.
CREATE TABLE media (
    media_id      BLOB PRIMARY KEY,
    activity_id   BLOB NOT NULL,
    kind          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    bytes         INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    attached_at   TEXT NOT NULL
);
CREATE INDEX media_by_activity ON media (activity_id);
