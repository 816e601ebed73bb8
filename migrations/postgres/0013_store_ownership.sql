-- The store owns its clock, takes every lock of a batch in one fixed order before its
-- first write, and appends a whole group commit set-based (issue 12).
--
-- 1. commit_id = the writing transaction's id + an offset. Readers read below the
--    oldest running transaction + the same offset. After a move to a cluster whose
--    transaction ids are lower (a restore of pg_dump, a logical replica), `gather store
--    rebase` raises the offset past every commit_id in the log, so restored events are
--    readable and new ones sort after them. An explicit commit_id is refused.
-- 2. An append locks all its streams (and its command ids) with transaction-level
--    advisory locks, sorted, before it writes anything. An advisory lock assigns no
--    transaction id, so the id the batch takes at its first write is younger than every
--    earlier writer of those streams: a stream reads in version order in the log too.
--    One global lock order means batches never deadlock.
-- 3. No `streams` upsert and no JSON command result per command: a stream's version is
--    its highest event version (the (stream, version) index), and a command id keeps
--    the positions of its events, from which a repeat's answer is rebuilt.

CREATE TABLE store_clock (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    "offset"  bigint  NOT NULL
);
INSERT INTO store_clock ("offset") VALUES (0);

-- Both functions are rewritten by gather_store_rebase() with the offset as a constant,
-- so the planner inlines them (no table read per row).
CREATE FUNCTION gather_commit_id() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT pg_current_xact_id()::text::bigint + 0 $$;
CREATE FUNCTION gather_readable_below() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + 0 $$;

ALTER TABLE events ALTER COLUMN commit_id SET DEFAULT gather_commit_id();

CREATE FUNCTION gather_events_commit_id_refused() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'commit_id is assigned by the event store (% given)', NEW.commit_id
        USING ERRCODE = 'GA002';
END $$;
-- Restores create triggers after loading data, and logical replication applies rows
-- with triggers off: both keep the moved rows' ids, which rebase then accounts for.
CREATE TRIGGER events_commit_id BEFORE INSERT ON events FOR EACH ROW
    WHEN (NEW.commit_id IS DISTINCT FROM gather_commit_id())
    EXECUTE FUNCTION gather_events_commit_id_refused();

-- Moves the clock past every commit_id in the log. Idempotent; appends wait meanwhile.
CREATE FUNCTION gather_store_rebase(OUT old_offset bigint, OUT new_offset bigint, OUT max_commit_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    xid bigint;
BEGIN
    LOCK TABLE events IN EXCLUSIVE MODE;
    xid := pg_current_xact_id()::text::bigint;
    SELECT c."offset" INTO old_offset FROM store_clock c;
    SELECT coalesce(max(e.commit_id), -1) INTO max_commit_id FROM events e;
    -- every later transaction id x > xid gets x + new_offset > max_commit_id
    new_offset := greatest(old_offset, max_commit_id - xid + 1);
    IF new_offset <> old_offset THEN
        UPDATE store_clock SET "offset" = new_offset;
        EXECUTE format('CREATE OR REPLACE FUNCTION gather_commit_id() RETURNS bigint LANGUAGE sql STABLE '
            'PARALLEL SAFE AS $f$ SELECT pg_current_xact_id()::text::bigint + %s $f$', new_offset);
        EXECUTE format('CREATE OR REPLACE FUNCTION gather_readable_below() RETURNS bigint LANGUAGE sql STABLE '
            'PARALLEL SAFE AS $f$ SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + %s $f$', new_offset);
    END IF;
END $$;

-- A command id and the positions of its events (a repeat is answered from the log).
CREATE TABLE command_positions (
    command_id      uuid   PRIMARY KEY,
    first_position  bigint NOT NULL,
    last_position   bigint NOT NULL
);
INSERT INTO command_positions (command_id, first_position, last_position)
SELECT c.command_id, min((s->>'first_position')::bigint), max((s->>'last_position')::bigint)
FROM commands c, jsonb_array_elements(c.result) s
GROUP BY c.command_id;

DROP FUNCTION gather_append_batch(jsonb);
DROP FUNCTION gather_append(uuid, uuid, uuid, uuid, jsonb);
DROP FUNCTION gather_append_stream(text, text, text, bigint, jsonb, uuid, uuid, uuid, uuid);
DROP TABLE commands;
DROP TABLE streams;

-- Appends a group commit: members (commands) in order, each with its appends (streams)
-- in order, each with its events in order, as parallel arrays. Expected versions:
-- -1 any, -2 no stream, -3 stream exists, n >= 0 exactly n, -4 never (a negative exact version). Answers one row per
-- append of an accepted member ('ok'), per stream of a command appended before
-- ('duplicate', rebuilt from the log), one row per member that repeats an earlier
-- member's command id ('repeated'), and one per refused member ('conflict', with the
-- stream and its actual version, -1 for none). A refused member writes nothing; the
-- others commit together.
CREATE FUNCTION gather_append_set(
    m_command uuid[], m_correlation uuid[], m_causation uuid[], m_actor uuid[],
    a_member int[], a_stream text[], a_expected bigint[], a_count int[],
    e_append int[], e_id uuid[], e_type text[], e_schema int[], e_data jsonb[])
RETURNS TABLE (member int, outcome text, stream text, first_position bigint, last_position bigint, version bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n_members int := coalesce(array_length(m_command, 1), 0);
    n_appends int := coalesce(array_length(a_stream, 1), 0);
    lock_key int;
    recorded uuid[];
    s_name text[];
    s_ver bigint[];
    trial bigint[];
    a_start bigint[] := array_fill(NULL::bigint, ARRAY[n_appends]);
    a_first bigint[] := array_fill(NULL::bigint, ARRAY[n_appends]);
    running bigint := 1;
    m int;
    j int := 1;
    first_j int;
    p int;
    cur bigint;
    want bigint;
    bad_stream text;
    bad_actual bigint;
    c_member int[] := '{}';
    c_stream text[] := '{}';
    c_actual bigint[] := '{}';
    dup_member int[] := '{}';
    rep_member int[] := '{}';
BEGIN
    IF n_appends = 0 THEN
        RETURN;
    END IF;
    -- 1. Every lock of the batch, in one order, before any write.
    FOR lock_key IN
        SELECT DISTINCT hashtext(x) FROM unnest(a_stream || m_command::text[]) AS x ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(1195463752, lock_key);
    END LOOP;

    -- Where each append's events begin in the event arrays.
    FOR p IN 1 .. n_appends LOOP
        a_first[p] := running;
        running := running + a_count[p];
    END LOOP;

    -- 2. Commands appended before, and each stream's current version (-1: none).
    SELECT array_agg(c.command_id) INTO recorded
        FROM command_positions c WHERE c.command_id = ANY (m_command);
    SELECT array_agg(d.s), array_agg(coalesce(v.v, -1)) INTO s_name, s_ver
        FROM (SELECT DISTINCT x AS s FROM unnest(a_stream) AS x) d
        LEFT JOIN LATERAL (SELECT max(e.version) AS v FROM events e WHERE e.stream = d.s) v ON true;

    -- 3. Members in order: check every expectation against the versions so far.
    FOR m IN 1 .. n_members LOOP
        first_j := j;
        IF m_command[m] = ANY (recorded) THEN
            dup_member := dup_member || m;
        ELSIF m > 1 AND m_command[m] = ANY (m_command[1 : m - 1]) THEN
            rep_member := rep_member || m;
        ELSE
            trial := s_ver;
            bad_stream := NULL;
            WHILE j <= n_appends AND a_member[j] = m LOOP
                p := array_position(s_name, a_stream[j]);
                cur := trial[p];
                want := a_expected[j];
                IF (want = -2 AND cur <> -1) OR (want = -3 AND cur = -1) OR (want >= 0 AND cur <> want) OR want < -3 THEN
                    bad_stream := a_stream[j];
                    bad_actual := cur;
                    EXIT;
                END IF;
                a_start[j] := cur + 1;
                trial[p] := cur + a_count[j];
                j := j + 1;
            END LOOP;
            IF bad_stream IS NULL THEN
                s_ver := trial;
            ELSE
                FOR p IN first_j .. j LOOP
                    a_start[p] := NULL;
                END LOOP;
                c_member := c_member || m;
                c_stream := c_stream || bad_stream;
                c_actual := c_actual || bad_actual;
            END IF;
        END IF;
        WHILE j <= n_appends AND a_member[j] = m LOOP
            j := j + 1;
        END LOOP;
    END LOOP;

    -- 4. One statement for every accepted event, one for their command ids.
    RETURN QUERY
    WITH ins AS (
        INSERT INTO events (stream, category, version, event_id, event_type, schema_version, data,
                            command_id, correlation_id, causation_id, actor)
        SELECT a_stream[e.a], split_part(a_stream[e.a], '-', 1),
               a_start[e.a] + (e.k - a_first[e.a]),
               e.id, e.ty, e.sv, e.da,
               m_command[a_member[e.a]], m_correlation[a_member[e.a]], m_causation[a_member[e.a]],
               m_actor[a_member[e.a]]
        FROM unnest(e_append, e_id, e_type, e_schema, e_data) WITH ORDINALITY AS e(a, id, ty, sv, da, k)
        WHERE a_start[e.a] IS NOT NULL
        ORDER BY e.k
        RETURNING events.stream AS s, events.version AS v, events.position AS pos
    ),
    acc AS (
        SELECT g.j AS j, a_member[g.j] AS m, a_stream[g.j] AS s, a_start[g.j] AS v0,
               a_start[g.j] + a_count[g.j] - 1 AS v1
        FROM generate_subscripts(a_stream, 1) AS g(j)
        WHERE a_start[g.j] IS NOT NULL
    ),
    per AS (
        SELECT acc.j, acc.m, acc.s, min(ins.pos) AS fp, max(ins.pos) AS lp, acc.v1
        FROM acc JOIN ins ON ins.s = acc.s AND ins.v BETWEEN acc.v0 AND acc.v1
        GROUP BY acc.j, acc.m, acc.s, acc.v1
    ),
    cmd AS (
        INSERT INTO command_positions (command_id, first_position, last_position)
        SELECT m_command[per.m], min(per.fp), max(per.lp) FROM per GROUP BY per.m
    )
    SELECT per.m, 'ok'::text, per.s, per.fp, per.lp, per.v1 FROM per ORDER BY per.j;

    RETURN QUERY
    SELECT c.m, 'conflict'::text, c.s, NULL::bigint, NULL::bigint, c.a
    FROM unnest(c_member, c_stream, c_actual) AS c(m, s, a);

    RETURN QUERY
    SELECT r.m, 'repeated'::text, NULL::text, NULL::bigint, NULL::bigint, NULL::bigint
    FROM unnest(rep_member) AS r(m);

    RETURN QUERY
    SELECT d.m, 'duplicate'::text, e.stream, min(e.position), max(e.position), max(e.version)
    FROM unnest(dup_member) AS d(m)
    JOIN command_positions c ON c.command_id = m_command[d.m]
    JOIN events e ON e.position BETWEEN c.first_position AND c.last_position AND e.command_id = c.command_id
    GROUP BY d.m, e.stream
    ORDER BY d.m, min(e.position);
END $$;
