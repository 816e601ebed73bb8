-- Chains of appends (issue 12, hot streams): the command handler decides the commands
-- queued on one stream one after the other on the state each leaves, and sends them
-- as one chain in one group commit. A member marked chained is refused (a conflict on
-- its first stream, nothing written) unless the member before it was appended: it was
-- decided on a state that did not come to be. Otherwise as in 0014.

DROP FUNCTION gather_append_set(uuid[], uuid[], uuid[], uuid[], int[], text[], bigint[], int[],
                                int[], uuid[], text[], int[], jsonb[]);

CREATE FUNCTION gather_append_set(
    m_command uuid[], m_correlation uuid[], m_causation uuid[], m_actor uuid[],
    a_member int[], a_stream text[], a_expected bigint[], a_count int[],
    e_append int[], e_id uuid[], e_type text[], e_schema int[], e_data jsonb[],
    m_chained boolean[])
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
    prev_ok boolean := false;
    c_member int[] := '{}';
    c_stream text[] := '{}';
    c_actual bigint[] := '{}';
    dup_member int[] := '{}';
    rep_member int[] := '{}';
BEGIN
    IF n_appends = 0 THEN
        RETURN;
    END IF;
    -- 1. Every stream lock of the batch, in one order, before any write.
    FOR lock_key IN
        SELECT DISTINCT hashtext(x) FROM unnest(a_stream) AS x ORDER BY 1
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
            prev_ok := false;
        ELSIF m > 1 AND m_command[m] = ANY (m_command[1 : m - 1]) THEN
            rep_member := rep_member || m;
            prev_ok := false;
        ELSIF coalesce(m_chained[m], false) AND NOT prev_ok THEN
            -- Decided on what the refused member before it would have left.
            c_member := c_member || m;
            c_stream := c_stream || a_stream[j];
            c_actual := c_actual || s_ver[array_position(s_name, a_stream[j])];
            prev_ok := false;
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
                prev_ok := true;
            ELSE
                FOR p IN first_j .. j LOOP
                    a_start[p] := NULL;
                END LOOP;
                c_member := c_member || m;
                c_stream := c_stream || bad_stream;
                c_actual := c_actual || bad_actual;
                prev_ok := false;
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

-- The 13-argument form, for binaries of the version before during a rolling upgrade:
-- no member chained.
CREATE FUNCTION gather_append_set(
    m_command uuid[], m_correlation uuid[], m_causation uuid[], m_actor uuid[],
    a_member int[], a_stream text[], a_expected bigint[], a_count int[],
    e_append int[], e_id uuid[], e_type text[], e_schema int[], e_data jsonb[])
RETURNS TABLE (member int, outcome text, stream text, first_position bigint, last_position bigint, version bigint)
LANGUAGE sql AS $$
    SELECT * FROM gather_append_set(m_command, m_correlation, m_causation, m_actor, a_member, a_stream,
        a_expected, a_count, e_append, e_id, e_type, e_schema, e_data,
        array_fill(false, ARRAY[coalesce(array_length(m_command, 1), 0)]))
$$;
