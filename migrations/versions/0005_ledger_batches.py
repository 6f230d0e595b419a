"""Set-based batches of the two hot-path phases, for many requests of any keys at once:

- tf_open_batch: the receipts, reservations and attempt rows of N requests in one transaction
  (one WAL flush for N durable holds);
- tf_finish_batch: the resolutions, outcomes and receipt totals of N attempts in one transaction;
- tf_write_batch: both, finishes first, in one transaction: a worker's group commit.

Each item has exactly the semantics of tf_open_attempt / tf_finish_attempt, in item order: caps
and balances are checked item by item against the locked rows as the earlier items of the batch
left them. What changes is the cost: every spend counter and ledger account that the batch
touches is locked once (counters by id, then ledger accounts by id: the order of the single
functions, so batches and single calls never deadlock), updated once with the sum of its items,
and new rows are written with one INSERT per table; every lookup and update goes through a key
(a join in a cached plan may turn into a scan of a table that keeps growing). Transfer ids are
drawn in item order while the accounts are locked, so running balances follow transfer ids.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

from tokens_forge.db.sql import run_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
-- The ids of the spend counters named by (scope, owner, period), each found through the unique
-- index (a join would let the planner scan the table).
CREATE FUNCTION tf_counter_ids(p_scopes TEXT[], p_owners TEXT[], p_periods TEXT[]) RETURNS BIGINT[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ids BIGINT[] := ARRAY[]::BIGINT[];
    v_id  BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_scopes, 1), 0) LOOP
        SELECT id INTO v_id FROM spend_counters WHERE scope = p_scopes[i] AND owner_id = p_owners[i]
                                                  AND period = p_periods[i];
        IF FOUND THEN v_ids := v_ids || v_id; END IF;
    END LOOP;
    RETURN v_ids;
END $$;

-- The spend counters a request of this key (and run) counts against, in the order their caps are
-- checked: 'scope|owner|period'.
CREATE FUNCTION tf_scope_names(p_key TEXT, p_project TEXT, p_run TEXT, p_day TEXT) RETURNS TEXT[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['key_daily|' || p_key || '|' || p_day, 'key_total|' || p_key || '|total',
                 'project_daily|' || p_project || '|' || p_day, 'project_total|' || p_project || '|total']
           || CASE WHEN p_run IS NULL THEN ARRAY[]::TEXT[] ELSE ARRAY['run|' || p_run || '|total'] END
$$;

-- Add a batch's debits and credits to its (locked) ledger accounts, one row update each.
CREATE FUNCTION tf_add_posted(p_ids BIGINT[], p_debits BIGINT[], p_credits BIGINT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        CONTINUE WHEN p_debits[i] = 0 AND p_credits[i] = 0;
        UPDATE ledger_accounts SET debits_posted = debits_posted + p_debits[i],
                                   credits_posted = credits_posted + p_credits[i]
         WHERE id = p_ids[i];
    END LOOP;
END $$;

CREATE FUNCTION tf_open_batch(
    p_receipts TEXT[], p_creates BOOLEAN[], p_accounts TEXT[], p_projects TEXT[], p_keys TEXT[], p_runs TEXT[],
    p_models TEXT[], p_streams BOOLEAN[], p_idempotency_keys TEXT[], p_routes TEXT[], p_kinds TEXT[],
    p_buckets TEXT[], p_snapshots TEXT[], p_attempts INTEGER[], p_amounts BIGINT[],
    p_ttls DOUBLE PRECISION[], p_rejects BOOLEAN[])
RETURNS TABLE (o_index INTEGER, o_hold_id BIGINT, o_refused_scope TEXT, o_remaining BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    n        INTEGER := coalesce(array_length(p_receipts, 1), 0);
    v_day    TEXT := to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD');
    -- the keys of the batch (and their projects' limits), read once
    k_ids TEXT[]; k_acct TEXT[]; k_proj TEXT[]; k_active BOOLEAN[]; k_per_req BIGINT[];
    k_daily BIGINT[]; k_total BIGINT[]; k_pdaily BIGINT[]; k_ptotal BIGINT[];
    -- the runs of the batch: budget per run (NULL when the run is not the key's account's)
    r_ids TEXT[]; r_acct TEXT[]; r_budget BIGINT[];
    -- the spend counters of the batch, locked: 'scope|owner|period' -> id, used, added
    c_names TEXT[]; c_ids BIGINT[]; c_used BIGINT[]; c_add BIGINT[];
    -- the ledger accounts of the batch, locked: code -> id, balance, debits and credits added
    a_codes TEXT[]; a_ids BIGINT[]; a_bal BIGINT[]; a_deb BIGINT[]; a_cred BIGINT[];
    -- per item
    o_hold BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    o_scope TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
    o_rem BIGINT[] := array_fill(0::BIGINT, ARRAY[n]);
    o_acct TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
    o_counters TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
    o_transfer BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    o_wallet BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    o_holdacct BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    o_wallet_after BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    o_hold_after BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    ki INTEGER; ri INTEGER; wi INTEGER; hi INTEGER; ci INTEGER; j INTEGER;
    s_names TEXT[]; s_name TEXT; s_limits BIGINT[]; v_ids BIGINT[]; v_all BIGINT[]; v_amount BIGINT; v_left BIGINT;
    w_acct TEXT[]; w_scope TEXT[]; w_owner TEXT[]; w_period TEXT[]; w_names TEXT[];
BEGIN
    IF n = 0 THEN RETURN; END IF;
    INSERT INTO receipts (id, account_id, project_id, key_id, run_id, model, stream, route_kind, bucket,
                          idempotency_key)
    SELECT p_receipts[i], p_accounts[i], p_projects[i], p_keys[i], p_runs[i], p_models[i], p_streams[i],
           p_kinds[i], p_buckets[i], p_idempotency_keys[i]
      FROM generate_subscripts(p_receipts, 1) i
     WHERE p_creates[i]
     ORDER BY i;

    SELECT array_agg(k.id), array_agg(k.account_id), array_agg(k.project_id), array_agg(k.status = 'active'),
           array_agg(k.per_request_limit_micros), array_agg(k.daily_limit_micros), array_agg(k.total_limit_micros),
           array_agg(p.daily_limit_micros), array_agg(p.total_limit_micros)
      INTO k_ids, k_acct, k_proj, k_active, k_per_req, k_daily, k_total, k_pdaily, k_ptotal
      FROM api_keys k JOIN projects p ON p.id = k.project_id
     WHERE k.id = ANY(p_keys);
    SELECT array_agg(r.id), array_agg(r.account_id), array_agg(r.budget_micros)
      INTO r_ids, r_acct, r_budget
      FROM runs r WHERE r.id = ANY(p_runs);

    -- Every counter the batch needs exists (a new UTC day creates them), then all are locked in
    -- id order. Missing rows are created in one sorted statement so that two batches creating
    -- the same counters take the unique index's locks in the same order.
    SELECT array_agg(w.account_id ORDER BY w.s, w.o, w.pr), array_agg(w.s ORDER BY w.s, w.o, w.pr),
           array_agg(w.o ORDER BY w.s, w.o, w.pr), array_agg(w.pr ORDER BY w.s, w.o, w.pr)
      INTO w_acct, w_scope, w_owner, w_period
      FROM (SELECT DISTINCT k.account_id, v.s, v.o, v.pr
              FROM generate_subscripts(p_keys, 1) i
              JOIN api_keys k ON k.id = p_keys[i] AND k.status = 'active'
             CROSS JOIN LATERAL (VALUES ('key_daily', k.id, v_day), ('key_total', k.id, 'total'),
                                        ('project_daily', k.project_id, v_day),
                                        ('project_total', k.project_id, 'total'),
                                        ('run', p_runs[i], 'total')) v(s, o, pr)
             WHERE v.o IS NOT NULL) w;
    v_all := tf_counter_ids(w_scope, w_owner, w_period);
    IF coalesce(array_length(v_all, 1), 0) < coalesce(array_length(w_scope, 1), 0) THEN
        INSERT INTO spend_counters (account_id, scope, owner_id, period)
        SELECT t.a, t.s, t.o, t.pr FROM unnest(w_acct, w_scope, w_owner, w_period) WITH ORDINALITY t(a, s, o, pr, n)
         ORDER BY t.n
        ON CONFLICT (scope, owner_id, period) DO NOTHING;
        v_all := tf_counter_ids(w_scope, w_owner, w_period);
    END IF;
    IF coalesce(array_length(v_all, 1), 0) < coalesce(array_length(w_scope, 1), 0) THEN
        RAISE EXCEPTION 'spend counters of the batch are missing';
    END IF;
    SELECT array_agg(t.s || '|' || t.o || '|' || t.pr ORDER BY t.n) INTO w_names
      FROM unnest(w_scope, w_owner, w_period) WITH ORDINALITY t(s, o, pr, n);
    -- Every item that may pass gets its hold and attempt rows now, before any hot row is locked:
    -- the locks of a hot key's counters and wallet are then held only for the decisions, the
    -- counter and balance updates and the transfers. The rows of a refused item are deleted again.
    FOR i IN 1 .. n LOOP
        ki := array_position(k_ids, p_keys[i]);
        CONTINUE WHEN ki IS NULL OR NOT k_active[ki] OR (k_per_req[ki] IS NOT NULL AND p_amounts[i] > k_per_req[ki]);
        o_acct[i] := k_acct[ki];
        o_hold[i] := nextval(pg_get_serial_sequence('holds', 'id'));
        v_ids := ARRAY[]::BIGINT[];
        FOREACH s_name IN ARRAY tf_scope_names(p_keys[i], k_proj[ki], p_runs[i], v_day) LOOP
            v_ids := v_ids || v_all[array_position(w_names, s_name)];
        END LOOP;
        o_counters[i] := v_ids::TEXT;
    END LOOP;
    INSERT INTO holds (id, account_id, bucket, amount, counter_ids, receipt_id, attempt_no, run_id, expires_at)
    SELECT o_hold[i], o_acct[i], p_buckets[i], p_amounts[i], o_counters[i]::BIGINT[], p_receipts[i], p_attempts[i],
           p_runs[i], now() + make_interval(secs => p_ttls[i])
      FROM generate_subscripts(p_receipts, 1) i WHERE o_hold[i] IS NOT NULL ORDER BY i;
    INSERT INTO attempts (receipt_id, attempt_no, account_id, route_id, route_kind, bucket, price_snapshot_id,
                          hold_id, reserved_micros)
    SELECT p_receipts[i], p_attempts[i], o_acct[i], p_routes[i], p_kinds[i], p_buckets[i], p_snapshots[i],
           o_hold[i], p_amounts[i]
      FROM generate_subscripts(p_receipts, 1) i WHERE o_hold[i] IS NOT NULL ORDER BY i;

    -- Lock order: counters by id. NO KEY UPDATE so foreign-key checks elsewhere never wait.
    SELECT array_agg(c.scope || '|' || c.owner_id || '|' || c.period ORDER BY c.id), array_agg(c.id ORDER BY c.id),
           array_agg(c.pending_micros + c.posted_micros ORDER BY c.id)
      INTO c_names, c_ids, c_used
      FROM (SELECT sc.* FROM spend_counters sc WHERE sc.id = ANY(v_all) ORDER BY sc.id FOR NO KEY UPDATE) c;
    c_add := array_fill(0::BIGINT, ARRAY[coalesce(array_length(c_ids, 1), 0)]);

    -- Then the wallets and hold accounts, by id.
    SELECT array_agg(s.code ORDER BY s.id), array_agg(s.id ORDER BY s.id),
           array_agg(s.credits_posted - s.debits_posted ORDER BY s.id)
      INTO a_codes, a_ids, a_bal
      FROM (SELECT la.* FROM ledger_accounts la
             WHERE la.code = ANY(ARRAY(SELECT kind || ':' || k_acct[x.k] || ':' || p_buckets[i]
                                         FROM generate_subscripts(p_keys, 1) i,
                                              array_position(k_ids, p_keys[i]) x(k),
                                              unnest(ARRAY['wallet', 'hold']) kind
                                        WHERE x.k IS NOT NULL))
             ORDER BY la.id FOR NO KEY UPDATE) s;
    a_deb := array_fill(0::BIGINT, ARRAY[coalesce(array_length(a_ids, 1), 0)]);
    a_cred := array_fill(0::BIGINT, ARRAY[coalesce(array_length(a_ids, 1), 0)]);

    FOR i IN 1 .. n LOOP
        v_amount := p_amounts[i];
        ki := array_position(k_ids, p_keys[i]);
        IF ki IS NULL OR NOT k_active[ki] THEN
            o_scope[i] := 'key_revoked'; CONTINUE;
        END IF;
        IF k_per_req[ki] IS NOT NULL AND v_amount > k_per_req[ki] THEN
            o_scope[i] := 'key_per_request'; o_rem[i] := k_per_req[ki]; CONTINUE;
        END IF;
        s_names := tf_scope_names(p_keys[i], k_proj[ki], p_runs[i], v_day);
        s_limits := ARRAY[k_daily[ki], k_total[ki], k_pdaily[ki], k_ptotal[ki]];
        IF p_runs[i] IS NOT NULL THEN
            ri := array_position(r_ids, p_runs[i]);
            s_limits := s_limits || CASE WHEN ri IS NOT NULL AND r_acct[ri] = k_acct[ki] THEN r_budget[ri] END;
        END IF;
        FOR j IN 1 .. array_length(s_names, 1) LOOP
            ci := array_position(c_names, s_names[j]);
            IF s_limits[j] IS NOT NULL THEN
                v_left := s_limits[j] - c_used[ci];
                IF v_left < v_amount THEN
                    o_scope[i] := split_part(s_names[j], '|', 1); o_rem[i] := greatest(v_left, 0); EXIT;
                END IF;
            END IF;
        END LOOP;
        CONTINUE WHEN o_scope[i] IS NOT NULL;
        wi := array_position(a_codes, 'wallet:' || k_acct[ki] || ':' || p_buckets[i]);
        hi := array_position(a_codes, 'hold:' || k_acct[ki] || ':' || p_buckets[i]);
        IF wi IS NULL OR hi IS NULL OR a_bal[wi] < v_amount THEN
            o_scope[i] := 'bucket'; o_rem[i] := coalesce(a_bal[wi], 0); CONTINUE;
        END IF;
        FOR j IN 1 .. array_length(s_names, 1) LOOP
            ci := array_position(c_names, s_names[j]);
            c_used[ci] := c_used[ci] + v_amount;
            c_add[ci] := c_add[ci] + v_amount;
        END LOOP;
        IF v_amount > 0 THEN
            a_bal[wi] := a_bal[wi] - v_amount; a_deb[wi] := a_deb[wi] + v_amount;
            a_bal[hi] := a_bal[hi] + v_amount; a_cred[hi] := a_cred[hi] + v_amount;
            o_transfer[i] := nextval(pg_get_serial_sequence('transfers', 'id'));
            o_wallet[i] := a_ids[wi]; o_holdacct[i] := a_ids[hi];
            o_wallet_after[i] := a_bal[wi]; o_hold_after[i] := a_bal[hi];
        END IF;
        o_rem[i] := a_bal[wi];
    END LOOP;

    FOR j IN 1 .. coalesce(array_length(c_ids, 1), 0) LOOP
        CONTINUE WHEN c_add[j] = 0;
        UPDATE spend_counters SET pending_micros = pending_micros + c_add[j] WHERE id = c_ids[j];
    END LOOP;
    PERFORM tf_add_posted(a_ids, a_deb, a_cred);
    INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, account_id, bucket, hold_id,
                           receipt_id, attempt_no, run_id, debit_balance_after, credit_balance_after)
    SELECT o_transfer[i], o_wallet[i], o_holdacct[i], p_amounts[i], 'reserve', o_acct[i], p_buckets[i], o_hold[i],
           p_receipts[i], p_attempts[i], p_runs[i], o_wallet_after[i], o_hold_after[i]
      FROM generate_subscripts(p_receipts, 1) i WHERE o_transfer[i] IS NOT NULL ORDER BY i;
    -- The rows written ahead for items that were refused.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN o_hold[i] IS NULL OR o_scope[i] IS NULL;
        DELETE FROM attempts WHERE receipt_id = p_receipts[i] AND attempt_no = p_attempts[i];
        DELETE FROM holds WHERE id = o_hold[i];
        o_hold[i] := NULL;
    END LOOP;
    UPDATE runs SET status = CASE WHEN status = 'ready' THEN 'running' ELSE status END,
                    last_activity_at = now(), updated_at = now()
     WHERE id = ANY(ARRAY(SELECT p_runs[i] FROM generate_subscripts(p_receipts, 1) i
                           WHERE o_hold[i] IS NOT NULL AND p_runs[i] IS NOT NULL));
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN o_scope[i] IS NULL OR NOT p_rejects[i];
        UPDATE receipts
           SET status = 'rejected', route_kind = p_kinds[i], bucket = p_buckets[i], completed_at = clock_timestamp(),
               reason = 'refused by the spend guard (' || o_scope[i] || ')',
               error_code = CASE o_scope[i] WHEN 'bucket' THEN 'insufficient_balance'
                                            WHEN 'key_revoked' THEN 'invalid_api_key'
                                            ELSE 'spend_limit_exceeded' END
         WHERE id = p_receipts[i];
    END LOOP;

    RETURN QUERY SELECT i, o_hold[i], o_scope[i], o_rem[i] FROM generate_subscripts(p_receipts, 1) i ORDER BY i;
END $$;

CREATE FUNCTION tf_finish_batch(
    p_holds BIGINT[], p_charges BIGINT[], p_kinds TEXT[], p_receipts TEXT[], p_attempts INTEGER[],
    p_outcomes TEXT[], p_upstream_statuses INTEGER[], p_prompt_tokens INTEGER[], p_completion_tokens INTEGER[],
    p_reasons TEXT[], p_errors TEXT[], p_latencies INTEGER[], p_final_statuses TEXT[], p_final_reasons TEXT[],
    p_final_codes TEXT[], p_usage_estimated BOOLEAN[], p_route_kinds TEXT[], p_buckets TEXT[],
    p_durable BOOLEAN)
RETURNS TABLE (o_index INTEGER, o_charged BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    n        INTEGER := coalesce(array_length(p_holds, 1), 0);
    -- per item, set when its hold was still open and is resolved now
    h_amount BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    h_charged BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    h_status TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
    h_acct TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
    h_bucket TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
    h_run TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
    h_counters TEXT[] := array_fill(NULL::TEXT, ARRAY[n]);
    r RECORD;
    d RECORD;
    v_counters BIGINT[] := ARRAY[]::BIGINT[];
    v_codes TEXT[] := ARRAY[]::TEXT[];
    a_codes TEXT[]; a_ids BIGINT[]; a_bal BIGINT[]; a_deb BIGINT[]; a_cred BIGINT[];
    -- the transfers of the batch, in order
    t_id BIGINT[] := ARRAY[]::BIGINT[]; t_deb BIGINT[] := ARRAY[]::BIGINT[]; t_cred BIGINT[] := ARRAY[]::BIGINT[];
    t_amount BIGINT[] := ARRAY[]::BIGINT[]; t_kind TEXT[] := ARRAY[]::TEXT[]; t_item INTEGER[] := ARRAY[]::INTEGER[];
    t_reason TEXT[] := ARRAY[]::TEXT[]; t_deb_after BIGINT[] := ARRAY[]::BIGINT[];
    t_cred_after BIGINT[] := ARRAY[]::BIGINT[];
    wi INTEGER; hi INTEGER; vi INTEGER; oi INTEGER; v_over BIGINT;
BEGIN
    IF n = 0 THEN RETURN; END IF;
    IF NOT p_durable THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- Resolve each hold exactly once: a hold that is no longer open (the sweeper expired it)
    -- matches nothing and charges nothing.
    FOR i IN 1 .. n LOOP
        UPDATE holds
           SET status = CASE WHEN p_charges[i] > 0 OR p_outcomes[i] = 'success' THEN 'settled' ELSE 'voided' END,
               charged = least(greatest(p_charges[i], 0), amount), resolved_at = now()
         WHERE id = p_holds[i] AND status = 'open'
        RETURNING amount, charged, status, account_id, bucket, run_id, counter_ids INTO r;
        CONTINUE WHEN NOT FOUND;
        h_amount[i] := r.amount; h_charged[i] := r.charged; h_status[i] := r.status;
        h_acct[i] := r.account_id; h_bucket[i] := r.bucket; h_run[i] := r.run_id;
        h_counters[i] := r.counter_ids::TEXT;
        v_counters := v_counters || r.counter_ids;
        IF r.amount > 0 OR p_charges[i] > r.amount THEN
            v_codes := v_codes || ('wallet:' || r.account_id || ':' || r.bucket) || ('hold:' || r.account_id || ':' || r.bucket)
                               || tf_revenue_code(r.bucket, r.account_id);
            IF p_charges[i] > r.amount THEN v_codes := v_codes || 'overage'::TEXT; END IF;
        END IF;
    END LOOP;

    -- The attempts and receipts first: the hot rows below stay locked only for the money.
    FOR i IN 1 .. n LOOP
        UPDATE attempts
           SET ended_at = clock_timestamp(), outcome = p_outcomes[i], upstream_status = p_upstream_statuses[i],
               prompt_tokens = p_prompt_tokens[i], completion_tokens = p_completion_tokens[i],
               charged_micros = coalesce(h_charged[i], 0),
               charge_reason = CASE WHEN h_amount[i] IS NOT NULL THEN p_reasons[i]
                                    ELSE 'the hold had expired before settlement; nothing charged' END,
               error = p_errors[i], latency_ms = p_latencies[i]
         WHERE receipt_id = p_receipts[i] AND attempt_no = p_attempts[i];
        IF p_final_statuses[i] IS NULL THEN
            UPDATE receipts SET total_charged_micros = total_charged_micros + coalesce(h_charged[i], 0)
             WHERE id = p_receipts[i];
        ELSE
            UPDATE receipts
               SET total_charged_micros = total_charged_micros + coalesce(h_charged[i], 0),
                   status = CASE WHEN status = 'pending' THEN p_final_statuses[i] ELSE status END,
                   reason = coalesce(p_final_reasons[i], reason), error_code = p_final_codes[i],
                   usage_estimated = p_usage_estimated[i], route_kind = p_route_kinds[i], bucket = p_buckets[i],
                   prompt_tokens = prompt_tokens + p_prompt_tokens[i],
                   completion_tokens = completion_tokens + p_completion_tokens[i],
                   completed_at = clock_timestamp()
             WHERE id = p_receipts[i];
        END IF;
    END LOOP;

    IF array_length(v_counters, 1) > 0 THEN
        PERFORM 1 FROM spend_counters WHERE id = ANY(v_counters) ORDER BY id FOR NO KEY UPDATE;
        FOR d IN
            SELECT c.id, sum(h_amount[i]) AS amount, sum(h_charged[i]) AS charged
              FROM generate_subscripts(p_holds, 1) i, unnest(h_counters[i]::BIGINT[]) c(id)
             WHERE h_amount[i] IS NOT NULL
             GROUP BY c.id ORDER BY c.id
        LOOP
            UPDATE spend_counters SET pending_micros = pending_micros - d.amount, posted_micros = posted_micros + d.charged
             WHERE id = d.id;
        END LOOP;
    END IF;

    IF array_length(v_codes, 1) > 0 THEN
        -- Lock order: ledger accounts by id (the revenue shards and overage were created first).
        SELECT array_agg(s.code ORDER BY s.id), array_agg(s.id ORDER BY s.id),
               array_agg(s.credits_posted - s.debits_posted ORDER BY s.id)
          INTO a_codes, a_ids, a_bal
          FROM (SELECT la.* FROM ledger_accounts la WHERE la.code = ANY(v_codes) ORDER BY la.id FOR NO KEY UPDATE) s;
        a_deb := array_fill(0::BIGINT, ARRAY[array_length(a_ids, 1)]);
        a_cred := array_fill(0::BIGINT, ARRAY[array_length(a_ids, 1)]);
        FOR i IN 1 .. n LOOP
            CONTINUE WHEN h_amount[i] IS NULL;
            v_over := greatest(p_charges[i] - h_amount[i], 0);
            CONTINUE WHEN h_amount[i] = 0 AND v_over = 0;
            wi := array_position(a_codes, 'wallet:' || h_acct[i] || ':' || h_bucket[i]);
            hi := array_position(a_codes, 'hold:' || h_acct[i] || ':' || h_bucket[i]);
            vi := array_position(a_codes, tf_revenue_code(h_bucket[i], h_acct[i]));
            IF h_charged[i] > 0 THEN  -- hold -> revenue
                a_bal[hi] := a_bal[hi] - h_charged[i]; a_deb[hi] := a_deb[hi] + h_charged[i];
                a_bal[vi] := a_bal[vi] + h_charged[i]; a_cred[vi] := a_cred[vi] + h_charged[i];
                t_id := t_id || nextval(pg_get_serial_sequence('transfers', 'id')); t_item := t_item || i;
                t_deb := t_deb || a_ids[hi]; t_cred := t_cred || a_ids[vi]; t_amount := t_amount || h_charged[i];
                t_kind := t_kind || p_kinds[i]; t_reason := t_reason || NULL::TEXT;
                t_deb_after := t_deb_after || a_bal[hi]; t_cred_after := t_cred_after || a_bal[vi];
            END IF;
            IF h_amount[i] > h_charged[i] THEN  -- hold -> wallet: the rest is released
                a_bal[hi] := a_bal[hi] - (h_amount[i] - h_charged[i]); a_deb[hi] := a_deb[hi] + (h_amount[i] - h_charged[i]);
                a_bal[wi] := a_bal[wi] + (h_amount[i] - h_charged[i]); a_cred[wi] := a_cred[wi] + (h_amount[i] - h_charged[i]);
                t_id := t_id || nextval(pg_get_serial_sequence('transfers', 'id')); t_item := t_item || i;
                t_deb := t_deb || a_ids[hi]; t_cred := t_cred || a_ids[wi]; t_amount := t_amount || (h_amount[i] - h_charged[i]);
                t_kind := t_kind || 'release'::TEXT; t_reason := t_reason || h_status[i];
                t_deb_after := t_deb_after || a_bal[hi]; t_cred_after := t_cred_after || a_bal[wi];
            END IF;
            IF v_over > 0 THEN  -- overage -> revenue: the upstream's usage beyond the hold
                oi := array_position(a_codes, 'overage');
                a_bal[oi] := a_bal[oi] - v_over; a_deb[oi] := a_deb[oi] + v_over;
                a_bal[vi] := a_bal[vi] + v_over; a_cred[vi] := a_cred[vi] + v_over;
                t_id := t_id || nextval(pg_get_serial_sequence('transfers', 'id')); t_item := t_item || i;
                t_deb := t_deb || a_ids[oi]; t_cred := t_cred || a_ids[vi]; t_amount := t_amount || v_over;
                t_kind := t_kind || p_kinds[i]; t_reason := t_reason || 'overage: upstream usage beyond the hold'::TEXT;
                t_deb_after := t_deb_after || a_bal[oi]; t_cred_after := t_cred_after || a_bal[vi];
            END IF;
        END LOOP;
        PERFORM tf_add_posted(a_ids, a_deb, a_cred);
        INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, account_id, bucket, hold_id,
                               receipt_id, attempt_no, run_id, reason, debit_balance_after, credit_balance_after)
        SELECT t.id, t.deb, t.cred, t.amount, t.kind, h_acct[t.item], h_bucket[t.item], p_holds[t.item],
               p_receipts[t.item], p_attempts[t.item], h_run[t.item], t.reason, t.deb_after, t.cred_after
          FROM unnest(t_id, t_deb, t_cred, t_amount, t_kind, t_item, t_reason, t_deb_after, t_cred_after)
               AS t(id, deb, cred, amount, kind, item, reason, deb_after, cred_after)
         ORDER BY t.id;
    END IF;

    RETURN QUERY SELECT i, coalesce(h_charged[i], 0::BIGINT) FROM generate_subscripts(p_holds, 1) i ORDER BY i;
END $$;

-- One group commit of a gateway worker: the attempts that finished, then the attempts that open,
-- in one transaction (finishing first frees the held money the opening ones may need). The
-- commit waits for the WAL flush whenever a hold is opened (every hold is durable); a batch of
-- finishes alone follows p_durable (see tf_finish_attempt).
CREATE FUNCTION tf_write_batch(
    f_holds BIGINT[], f_charges BIGINT[], f_kinds TEXT[], f_receipts TEXT[], f_attempts INTEGER[],
    f_outcomes TEXT[], f_upstream_statuses INTEGER[], f_prompt_tokens INTEGER[], f_completion_tokens INTEGER[],
    f_reasons TEXT[], f_errors TEXT[], f_latencies INTEGER[], f_final_statuses TEXT[], f_final_reasons TEXT[],
    f_final_codes TEXT[], f_usage_estimated BOOLEAN[], f_route_kinds TEXT[], f_buckets TEXT[],
    p_durable BOOLEAN,
    o_receipts TEXT[], o_creates BOOLEAN[], o_accounts TEXT[], o_projects TEXT[], o_keys TEXT[], o_runs TEXT[],
    o_models TEXT[], o_streams BOOLEAN[], o_idempotency_keys TEXT[], o_routes TEXT[], o_kinds TEXT[],
    o_buckets TEXT[], o_snapshots TEXT[], o_attempts INTEGER[], o_amounts BIGINT[],
    o_ttls DOUBLE PRECISION[], o_rejects BOOLEAN[])
RETURNS TABLE (w_phase TEXT, w_index INTEGER, w_hold_id BIGINT, w_refused_scope TEXT, w_remaining BIGINT,
               w_charged BIGINT)
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(array_length(f_holds, 1), 0) > 0 THEN
        RETURN QUERY SELECT 'finish'::TEXT, b.o_index, NULL::BIGINT, NULL::TEXT, NULL::BIGINT, b.o_charged
          FROM tf_finish_batch(f_holds, f_charges, f_kinds, f_receipts, f_attempts, f_outcomes, f_upstream_statuses,
                               f_prompt_tokens, f_completion_tokens, f_reasons, f_errors, f_latencies,
                               f_final_statuses, f_final_reasons, f_final_codes, f_usage_estimated, f_route_kinds,
                               f_buckets, p_durable OR coalesce(array_length(o_receipts, 1), 0) > 0) b;
    END IF;
    IF coalesce(array_length(o_receipts, 1), 0) > 0 THEN
        RETURN QUERY SELECT 'open'::TEXT, b.o_index, b.o_hold_id, b.o_refused_scope, b.o_remaining, NULL::BIGINT
          FROM tf_open_batch(o_receipts, o_creates, o_accounts, o_projects, o_keys, o_runs, o_models, o_streams,
                             o_idempotency_keys, o_routes, o_kinds, o_buckets, o_snapshots, o_attempts, o_amounts,
                             o_ttls, o_rejects) b;
    END IF;
END $$;

-- tf_resolve of 0003, with the revenue shard's code computed before its lookup.
CREATE OR REPLACE FUNCTION tf_resolve(p_hold BIGINT, p_charge BIGINT, p_kind TEXT, p_status TEXT,
                                      OUT resolved BOOLEAN, OUT charged BIGINT, OUT overage BIGINT,
                                      OUT transfer_ids BIGINT[])
LANGUAGE plpgsql AS $$
DECLARE
    h        holds%ROWTYPE;
    v_wallet BIGINT;
    v_hold   BIGINT;
    v_rev    BIGINT;
    v_over   BIGINT;
    v_id     BIGINT;
    v_code   TEXT;
BEGIN
    transfer_ids := ARRAY[]::BIGINT[];
    UPDATE holds SET status = p_status, charged = least(greatest(p_charge, 0), amount), resolved_at = now()
     WHERE id = p_hold AND status = 'open'
    RETURNING * INTO h;
    IF NOT FOUND THEN
        resolved := false; charged := 0; overage := 0; RETURN;
    END IF;
    resolved := true;
    charged := h.charged;
    overage := greatest(p_charge - h.amount, 0);

    PERFORM 1 FROM spend_counters WHERE id = ANY(h.counter_ids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE spend_counters SET pending_micros = pending_micros - h.amount,
                              posted_micros = posted_micros + h.charged
     WHERE id = ANY(h.counter_ids);
    IF h.amount = 0 AND overage = 0 THEN RETURN; END IF;

    SELECT id INTO v_wallet FROM ledger_accounts WHERE code = 'wallet:' || h.account_id || ':' || h.bucket;
    SELECT id INTO v_hold FROM ledger_accounts WHERE code = 'hold:' || h.account_id || ':' || h.bucket;
    -- The code computed apart: as an expression in the condition it cost an index scan of its own.
    v_code := tf_revenue_code(h.bucket, h.account_id);
    SELECT id INTO v_rev FROM ledger_accounts WHERE code = v_code;
    IF overage > 0 THEN
        SELECT id INTO v_over FROM ledger_accounts WHERE code = 'overage';
    END IF;
    -- Lock order: ledger accounts by id (the revenue shards and overage were created first).
    PERFORM 1 FROM ledger_accounts WHERE id IN (v_wallet, v_hold, v_rev, v_over) ORDER BY id FOR NO KEY UPDATE;

    IF h.charged > 0 THEN
        v_id := tf_post(v_hold, v_rev, h.charged, p_kind, h.account_id, h.bucket, h.id,
                        h.receipt_id, h.attempt_no, h.run_id, NULL, NULL);
        transfer_ids := transfer_ids || v_id;
    END IF;
    IF h.amount > h.charged THEN
        v_id := tf_post(v_hold, v_wallet, h.amount - h.charged, 'release', h.account_id, h.bucket, h.id,
                        h.receipt_id, h.attempt_no, h.run_id, NULL, p_status);
        transfer_ids := transfer_ids || v_id;
    END IF;
    IF overage > 0 THEN
        v_id := tf_post(v_over, v_rev, overage, p_kind, h.account_id, h.bucket, h.id,
                        h.receipt_id, h.attempt_no, h.run_id, NULL, 'overage: upstream usage beyond the hold');
        transfer_ids := transfer_ids || v_id;
    END IF;
END $$;

-- The hot-path functions look rows up by key only (primary keys, unique codes, the counters'
-- unique key). Plans are cached per session and made from the statistics of the moment: on a
-- young database (or a server without autovacuum) the tables look empty and the planner picks
-- sequential scans and hash joins that then scan every row ever written. Index paths always
-- exist for these statements, so seq scans are switched off inside them.
ALTER FUNCTION tf_open_batch SET enable_seqscan = off;
ALTER FUNCTION tf_finish_batch SET enable_seqscan = off;
ALTER FUNCTION tf_open_attempt SET enable_seqscan = off;
ALTER FUNCTION tf_finish_attempt SET enable_seqscan = off;
ALTER FUNCTION tf_reserve SET enable_seqscan = off;
ALTER FUNCTION tf_resolve SET enable_seqscan = off;
"""


def upgrade() -> None:
    run_script(op.execute, UPGRADE)


def downgrade() -> None:
    for fn in ("tf_open_attempt", "tf_finish_attempt", "tf_reserve", "tf_resolve"):
        op.execute(f"ALTER FUNCTION {fn} RESET enable_seqscan")
    op.execute("DROP FUNCTION IF EXISTS tf_write_batch, tf_open_batch, tf_finish_batch, tf_add_posted, tf_counter_ids, tf_scope_names")
