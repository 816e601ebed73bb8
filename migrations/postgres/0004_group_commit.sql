-- Group commit: several appends (of different callers) in ONE transaction, so they
-- share one WAL flush. Each append runs in its own subtransaction (the EXCEPTION
-- block), so one conflicting append fails alone and the others still commit; each
-- caller gets its own result. Batches are capped (32) below the subtransaction cache.
CREATE FUNCTION gather_append_batch(p_batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
    res jsonb;
    results jsonb := '[]'::jsonb;
    v_constraint text;
BEGIN
    FOR r IN SELECT * FROM jsonb_array_elements(p_batch) LOOP
        BEGIN
            res := jsonb_build_object('ok', gather_append(
                (r->>'command_id')::uuid, (r->>'correlation_id')::uuid, (r->>'causation_id')::uuid,
                (r->>'actor')::uuid, r->'appends'));
        EXCEPTION
            WHEN SQLSTATE 'GA409' THEN
                res := jsonb_build_object('error', 'conflict', 'message', SQLERRM);
            WHEN SQLSTATE 'GA208' THEN
                res := jsonb_build_object('error', 'duplicate_command');
            WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
                res := jsonb_build_object('error', 'unique', 'constraint', v_constraint, 'message', SQLERRM);
        END;
        results := results || jsonb_build_array(res);
    END LOOP;
    RETURN results;
END $$;
