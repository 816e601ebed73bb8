-- Media (issue 11): the `media` projection; the blobs themselves live in the blob store.
CREATE TABLE media (
    media_id      uuid PRIMARY KEY,
    activity_id   uuid NOT NULL,
    kind          text NOT NULL,
    content_type  text NOT NULL,
    bytes         bigint NOT NULL,
    position      bigint NOT NULL,
    attached_at   timestamptz NOT NULL
);
CREATE INDEX media_by_activity ON media (activity_id);
