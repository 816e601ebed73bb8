-- The event store: streams, the global log, command results and snapshots.
-- See docs/adr/01-gap-free-global-log.md for why events carry their transaction id.

CREATE TABLE streams (
    stream   text   PRIMARY KEY,
    version  bigint NOT NULL
);

CREATE TABLE events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the writing transaction's id: the global order is (commit_id, position) and readers
    -- only read below the oldest running transaction, so a late commit is never skipped
    commit_id       bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    stream          text   NOT NULL,
    category        text   NOT NULL,
    version         bigint NOT NULL,
    event_id        uuid   NOT NULL UNIQUE,
    event_type      text   NOT NULL,
    schema_version  int    NOT NULL,
    data            jsonb  NOT NULL,
    command_id      uuid   NOT NULL,
    correlation_id  uuid   NOT NULL,
    causation_id    uuid,
    actor           uuid,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, version)
);
CREATE INDEX events_global_order ON events (commit_id, position);
CREATE INDEX events_category_order ON events (category, commit_id, position);
CREATE INDEX events_type_order ON events (event_type, commit_id, position);

-- The log is append-only: UPDATE, DELETE and TRUNCATE are refused.
CREATE FUNCTION gather_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the events table is append-only (% refused)', TG_OP
        USING ERRCODE = 'GA001';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION gather_events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION gather_events_append_only();

-- One row per appended command: a repeated command id returns this result.
CREATE TABLE commands (
    command_id   uuid PRIMARY KEY,
    result       jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE snapshots (
    stream         text   PRIMARY KEY,
    version        bigint NOT NULL,
    state_version  int    NOT NULL,
    state          jsonb  NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now()
);

-- Appends events to one stream in one call (one round trip, one statement).
-- p_expected: 'any' | 'no_stream' | 'exists' | 'exact'; p_version used with 'exact'.
-- p_events: [{event_id, event_type, schema_version, data}] in order.
-- Raises GA409 with 'stream|actual version' (-1 for none) as the message on a conflict.
-- Returns the first and last global position and the stream's new version.
CREATE FUNCTION gather_append_stream(
    p_stream text, p_category text, p_expected text, p_version bigint, p_events jsonb,
    p_command_id uuid, p_correlation_id uuid, p_causation_id uuid, p_actor uuid,
    OUT first_position bigint, OUT last_position bigint, OUT new_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n bigint := jsonb_array_length(p_events);
    actual bigint;
BEGIN
    IF p_expected = 'no_stream' THEN
        INSERT INTO streams (stream, version) VALUES (p_stream, n - 1)
            ON CONFLICT (stream) DO NOTHING;
        IF NOT FOUND THEN
            SELECT version INTO actual FROM streams WHERE stream = p_stream;
            RAISE EXCEPTION '%|%', p_stream, actual USING ERRCODE = 'GA409';
        END IF;
        new_version := n - 1;
    ELSIF p_expected = 'exact' THEN
        UPDATE streams SET version = p_version + n
            WHERE stream = p_stream AND version = p_version;
        IF NOT FOUND THEN
            SELECT version INTO actual FROM streams WHERE stream = p_stream;
            RAISE EXCEPTION '%|%', p_stream, coalesce(actual, -1) USING ERRCODE = 'GA409';
        END IF;
        new_version := p_version + n;
    ELSIF p_expected = 'exists' THEN
        UPDATE streams SET version = version + n WHERE stream = p_stream
            RETURNING version INTO new_version;
        IF NOT FOUND THEN
            RAISE EXCEPTION '%|-1', p_stream USING ERRCODE = 'GA409';
        END IF;
    ELSE
        INSERT INTO streams (stream, version) VALUES (p_stream, n - 1)
            ON CONFLICT (stream) DO UPDATE SET version = streams.version + n
            RETURNING version INTO new_version;
    END IF;

    WITH ins AS (
        INSERT INTO events (stream, category, version, event_id, event_type, schema_version, data,
                            command_id, correlation_id, causation_id, actor)
        SELECT p_stream, p_category, new_version - n + e.ord,
               (e.ev->>'event_id')::uuid, e.ev->>'event_type', (e.ev->>'schema_version')::int,
               e.ev->'data', p_command_id, p_correlation_id, p_causation_id, p_actor
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(ev, ord)
        ORDER BY e.ord
        RETURNING position
    )
    SELECT min(position), max(position) INTO first_position, last_position FROM ins;
END $$;

-- Appends to one or more streams atomically, once per command id.
-- p_appends: [{stream, category, expected, version, events: [...]}].
-- Returns {"duplicate": bool, "streams": [{stream, first_position, last_position, version}]};
-- for a command id already recorded, the first result with duplicate = true and nothing written.
CREATE FUNCTION gather_append(
    p_command_id uuid, p_correlation_id uuid, p_causation_id uuid, p_actor uuid, p_appends jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    previous jsonb;
    a jsonb;
    r record;
    results jsonb := '[]'::jsonb;
BEGIN
    SELECT result INTO previous FROM commands WHERE command_id = p_command_id;
    IF FOUND THEN
        RETURN jsonb_build_object('duplicate', true, 'streams', previous);
    END IF;
    FOR a IN SELECT * FROM jsonb_array_elements(p_appends) LOOP
        SELECT * INTO r FROM gather_append_stream(
            a->>'stream', a->>'category', a->>'expected', (a->>'version')::bigint, a->'events',
            p_command_id, p_correlation_id, p_causation_id, p_actor);
        results := results || jsonb_build_object(
            'stream', a->>'stream', 'first_position', r.first_position,
            'last_position', r.last_position, 'version', r.new_version);
    END LOOP;
    INSERT INTO commands (command_id, result) VALUES (p_command_id, results)
        ON CONFLICT (command_id) DO NOTHING;
    IF NOT FOUND THEN
        -- a concurrent append of the same command won: undo ours, the caller reads theirs
        RAISE EXCEPTION 'duplicate command %', p_command_id USING ERRCODE = 'GA208';
    END IF;
    RETURN jsonb_build_object('duplicate', false, 'streams', results);
END $$;
