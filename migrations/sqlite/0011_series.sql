-- Recurring activities (issue 14); see migrations/postgres/0015_series.sql.
CREATE TABLE series (
    series_id        BLOB PRIMARY KEY,
    organiser_id     BLOB NOT NULL,
    status           TEXT NOT NULL,
    visibility       TEXT NOT NULL,
    was_published    INTEGER NOT NULL DEFAULT 0,
    template         TEXT NOT NULL,
    schedule         TEXT NOT NULL,
    ended_after      TEXT,
    rejection_reason TEXT,
    version          INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    position         INTEGER NOT NULL
);
CREATE INDEX series_by_organiser ON series (organiser_id, created_at);

CREATE TABLE series_occurrences (
    series_id    BLOB NOT NULL,
    idx          INTEGER NOT NULL,
    activity_id  BLOB NOT NULL,
    starts_at    TEXT NOT NULL,
    ends_at      TEXT NOT NULL,
    PRIMARY KEY (series_id, idx)
);
CREATE TABLE series_skips (
    series_id    BLOB NOT NULL,
    idx          INTEGER NOT NULL,
    local_date   TEXT NOT NULL,
    PRIMARY KEY (series_id, idx)
);
