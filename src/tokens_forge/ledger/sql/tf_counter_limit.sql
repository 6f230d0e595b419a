-- The cap a spend counter counts against, read from its owner's row (NULL: no cap).
CREATE FUNCTION tf_counter_limit(p_scope TEXT, p_owner TEXT) RETURNS BIGINT
LANGUAGE sql STABLE AS $$
    SELECT CASE p_scope
        WHEN 'key_daily' THEN (SELECT daily_limit_micros FROM api_keys WHERE id = p_owner)
        WHEN 'key_total' THEN (SELECT total_limit_micros FROM api_keys WHERE id = p_owner)
        WHEN 'project_daily' THEN (SELECT daily_limit_micros FROM projects WHERE id = p_owner)
        WHEN 'project_total' THEN (SELECT total_limit_micros FROM projects WHERE id = p_owner)
        WHEN 'run' THEN (SELECT budget_micros FROM runs WHERE id = p_owner)
    END
$$;
