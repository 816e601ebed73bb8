-- Durable timers: commands due at a time, written by the process manager in its batch
-- transaction, claimed by schedulers with FOR UPDATE SKIP LOCKED and a lease, and
-- fired with command_id as the command id (so a second firing appends nothing).
CREATE TABLE due_commands (
    key             text PRIMARY KEY,
    command_id      uuid NOT NULL,
    due_at          timestamptz NOT NULL,
    command         jsonb NOT NULL,
    causation_id    uuid,
    correlation_id  uuid,
    claimed_until   timestamptz,
    fired_at        timestamptz,
    attempts        int NOT NULL DEFAULT 0,
    last_error      text
);
CREATE INDEX due_commands_pending ON due_commands (due_at) WHERE fired_at IS NULL;
