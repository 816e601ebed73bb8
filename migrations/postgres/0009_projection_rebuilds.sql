-- Rebuilds in progress (ARCHITECTURE.md decision 10): one row per projection being
-- rebuilt into its shadow tables ({table}__rebuild). The row and the shadow tables are
-- created together and dropped together with the swap, so the row exists exactly while
-- the shadow tables do. `owner` and `heartbeat_at` let another process take over a
-- rebuild whose process died; `commit_id, position` is how far the shadow is built.

CREATE TABLE projection_rebuilds (
    name             text PRIMARY KEY,
    owner            uuid NOT NULL,
    commit_id        bigint NOT NULL,
    position         bigint NOT NULL,
    target_position  bigint NOT NULL,
    events           bigint NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL,
    heartbeat_at     timestamptz NOT NULL,
    error            text
);
