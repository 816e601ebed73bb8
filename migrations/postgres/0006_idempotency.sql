-- HTTP idempotency: the first answer to (actor, route, Idempotency-Key), kept 24 h.
CREATE TABLE idempotency_keys (
    scope         text PRIMARY KEY,
    request_hash  text NOT NULL,
    status        int  NOT NULL,
    headers       jsonb NOT NULL,
    body          bytea NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
