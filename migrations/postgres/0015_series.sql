-- Recurring activities (issue 14): the `series` read model. Owned by the `series`
-- projection (projections/src/series.rs), rebuildable beside its live copy.
CREATE TABLE series (
    series_id        uuid PRIMARY KEY,
    organiser_id     uuid NOT NULL,
    status           text NOT NULL,
    visibility       text NOT NULL,
    was_published    boolean NOT NULL DEFAULT false,
    template         jsonb NOT NULL,
    schedule         jsonb NOT NULL,
    ended_after      text,
    rejection_reason text,
    version          bigint NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    position         bigint NOT NULL
);
CREATE INDEX series_by_organiser ON series (organiser_id, created_at);

-- Materialized occurrences (index → activity) and skipped indexes.
CREATE TABLE series_occurrences (
    series_id    uuid NOT NULL,
    idx          bigint NOT NULL,
    activity_id  uuid NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    PRIMARY KEY (series_id, idx)
);
CREATE TABLE series_skips (
    series_id    uuid NOT NULL,
    idx          bigint NOT NULL,
    local_date   text NOT NULL,
    PRIMARY KEY (series_id, idx)
);
