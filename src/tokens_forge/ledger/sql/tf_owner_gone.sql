-- Whether the gateway worker that owns a hold (or an idempotency key's lock) is gone: its row was
-- removed at shutdown, or its heartbeat is older than p_dead_after_s. After a restart of the
-- database every heartbeat is old: a worker is only judged once the server has been up that long.
CREATE FUNCTION tf_owner_gone(p_owner TEXT, p_dead_after_s DOUBLE PRECISION) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT p_owner IS NOT NULL
       AND now() - pg_postmaster_start_time() > make_interval(secs => p_dead_after_s)
       AND NOT EXISTS (SELECT 1 FROM gateway_workers w
                        WHERE w.id = p_owner AND w.heartbeat_at > now() - make_interval(secs => p_dead_after_s))
$$;
