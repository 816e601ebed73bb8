-- Projector faults: an event a projector cannot apply (it cannot be decoded) stops
-- that projector alone. The fault is recorded here, one row per stopped projection,
-- naming the event (stream, version, and its place in the log: commit_id, position);
-- the projector's checkpoint stands just before it. The projector waits until an
-- operator decides: `gather projections retry NAME` deletes the row (the projector
-- tries the event again), `gather projections skip NAME --position P` moves the
-- checkpoint past the event and deletes the row, in one transaction.

CREATE TABLE projection_faults (
    name       text PRIMARY KEY,
    stream     text NOT NULL,
    version    bigint NOT NULL,
    commit_id  bigint NOT NULL,
    position   bigint NOT NULL,
    error      text NOT NULL,
    failed_at  timestamptz NOT NULL
);

-- Every operator decision on a fault (retry, skip), kept for the record.
CREATE TABLE projection_decisions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    decision    text NOT NULL,
    position    bigint NOT NULL,
    detail      text NOT NULL,
    decided_at  timestamptz NOT NULL
);
