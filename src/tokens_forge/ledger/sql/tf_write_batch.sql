-- The money of the hot path, in one transaction: the attempts that finish and the attempts that
-- open, of any keys (a worker's group commit, ledger/writer.py; a single request is a batch of one;
-- the sweeper's releases are finishes too). One typed record per item: a jsonb array of objects
-- with the names of tf_finish_item and tf_open_item.
--
-- What is charged was decided by guard.money: `charge` never exceeds the hold, `overage` is what
-- the upstream billed beyond it (booked to the platform's overage account). Here the caps and the
-- balances are checked and the transfers posted.
--
-- A hold the sweeper released (its worker was judged dead) still gets what was delivered: a late
-- charge from the wallet, once, as far as the funds and every cap allow (also when one batch carries
-- two finishes of it). A hold that was settled or voided matches nothing: a repeated finish charges
-- nothing.
--
-- Lock order, the same for every transaction that moves money, so that no two deadlock: the rows
-- of the requests themselves (receipts, holds, attempts: each belongs to one request); then the
-- rate-limit rows of the batch's keys by key id; then spend counters by id, then ledger accounts
-- by id, of finishes and opens together; then runs by id.
--
-- Rate limits (SPEC §11): a request's first attempt (`create`) of a key with `requests_per_minute`
-- or `tokens_per_minute` counts one request and `rate_tokens` tokens against them, before any cap
-- (a request the spend guard refuses afterwards still counted; later attempts count nothing). Each
-- limit is a bucket that refills continuously: its use is kept in units of 1/60,000,000 (a request
-- or a token is UNIT of them), so a limit of N a minute gives back exactly N units a microsecond,
-- in integers, on the database's clock: exact across workers and hosts. A refusal is scope
-- `requests_per_minute` or `tokens_per_minute` and always closes the receipt `rejected` (nothing
-- else is tried); its wait is in `rl_retry_after_us` (NULL: the request's tokens exceed the limit
-- itself, no wait helps).
-- Items are decided in order, finishes first (they free money that opens may need), each exactly
-- as if it were alone, against the locked rows as the earlier items left them.
--
-- Returns a row per item: for a finish what it charged and whether it resolved its hold (false: the
-- hold was no longer open; a charge then is a late one); for an open its hold, or the scope that
-- refused it and what is left there, else what is left in the bucket; for a first attempt of a key
-- with rate limits, where they stand after it (the `rl_` columns; reset: microseconds until full).
CREATE FUNCTION tf_write_batch(p_finishes JSONB, p_opens JSONB, p_durable BOOLEAN)
RETURNS TABLE (phase TEXT, idx INTEGER, hold_id BIGINT, refused_scope TEXT, remaining BIGINT, charged BIGINT,
               resolved BOOLEAN, rl_requests_limit INTEGER, rl_requests_remaining BIGINT,
               rl_requests_reset_us BIGINT, rl_tokens_limit BIGINT, rl_tokens_remaining BIGINT,
               rl_tokens_reset_us BIGINT, rl_retry_after_us BIGINT)
LANGUAGE plpgsql
SET enable_seqscan = off  -- every lookup here goes through a key: a young table's statistics must not pick a scan
-- A scan left in a plan then costs 10^10, far past jit_above_cost: JIT would compile it on every call.
SET jit = off
-- The statements' plans are the same for every batch (lookups by key), and a custom plan's cost under
-- enable_seqscan = off never lets the plan cache settle on the generic one: plan once per session.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    fi tf_finish_item[] := ARRAY(SELECT jsonb_populate_recordset(NULL::tf_finish_item, p_finishes));
    oi tf_open_item[] := ARRAY(SELECT jsonb_populate_recordset(NULL::tf_open_item, p_opens));
    nf INTEGER := coalesce(array_length(fi, 1), 0);
    nop INTEGER := coalesce(array_length(oi, 1), 0);
    v_day TEXT := to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD');
    f tf_finish_item;
    o tf_open_item;
    r RECORD;
    -- finishes: the hold as it was (h_amount NULL: no longer open; h_late: then charged from the wallet)
    h_amount BIGINT[] := array_fill(NULL::BIGINT, ARRAY[nf]);
    h_charged BIGINT[] := array_fill(0::BIGINT, ARRAY[nf]);
    h_late BOOLEAN[] := array_fill(false, ARRAY[nf]);
    h_status TEXT[] := array_fill(NULL::TEXT, ARRAY[nf]);
    h_acct TEXT[] := array_fill(NULL::TEXT, ARRAY[nf]);
    h_bucket TEXT[] := array_fill(NULL::TEXT, ARRAY[nf]);
    h_run TEXT[] := array_fill(NULL::TEXT, ARRAY[nf]);
    h_receipt TEXT[] := array_fill(NULL::TEXT, ARRAY[nf]);
    h_attempt INTEGER[] := array_fill(NULL::INTEGER, ARRAY[nf]);
    h_counters TEXT[] := array_fill(NULL::TEXT, ARRAY[nf]);
    -- opens: the keys of the batch (with their projects' limits) and runs, read once
    k_ids TEXT[]; k_acct TEXT[]; k_proj TEXT[]; k_active BOOLEAN[]; k_per_req BIGINT[];
    k_daily BIGINT[]; k_total BIGINT[]; k_pdaily BIGINT[]; k_ptotal BIGINT[]; k_rpm BIGINT[]; k_tpm BIGINT[];
    r_ids TEXT[]; r_acct TEXT[]; r_budget BIGINT[];
    w_acct TEXT[]; w_scope TEXT[]; w_owner TEXT[]; w_period TEXT[];
    w_names TEXT[] := ARRAY[]::TEXT[]; w_ids BIGINT[] := ARRAY[]::BIGINT[];
    o_hold BIGINT[] := array_fill(NULL::BIGINT, ARRAY[nop]);
    o_scope TEXT[] := array_fill(NULL::TEXT, ARRAY[nop]);
    o_rem BIGINT[] := array_fill(0::BIGINT, ARRAY[nop]);
    o_acct TEXT[] := array_fill(NULL::TEXT, ARRAY[nop]);
    o_counters TEXT[] := array_fill(NULL::TEXT, ARRAY[nop]);
    -- rate limits: the locked rows (key, use in units, per limit) and what each first attempt is told
    UNIT CONSTANT BIGINT := 60000000;
    l_keys TEXT[]; l_req BIGINT[]; l_tok BIGINT[]; l_at TIMESTAMPTZ[]; l_now TIMESTAMPTZ; li INTEGER;
    l_used BOOLEAN := false; v_elapsed BIGINT; v_cost BIGINT; v_wait BIGINT;
    o_rpm BIGINT[] := array_fill(NULL::BIGINT, ARRAY[nop]); o_req_left BIGINT[] := array_fill(NULL::BIGINT, ARRAY[nop]);
    o_req_reset BIGINT[] := array_fill(NULL::BIGINT, ARRAY[nop]); o_tpm BIGINT[] := array_fill(NULL::BIGINT, ARRAY[nop]);
    o_tok_left BIGINT[] := array_fill(NULL::BIGINT, ARRAY[nop]); o_tok_reset BIGINT[] := array_fill(NULL::BIGINT, ARRAY[nop]);
    o_wait BIGINT[] := array_fill(NULL::BIGINT, ARRAY[nop]);
    -- the locked rows: counters (id, name, used, deltas) and ledger accounts (code, id, balance, deltas)
    v_counters BIGINT[] := ARRAY[]::BIGINT[];
    v_codes TEXT[] := ARRAY['overage'];
    c_ids BIGINT[]; c_names TEXT[]; c_used BIGINT[]; c_pending BIGINT[]; c_posted BIGINT[];
    a_codes TEXT[]; a_ids BIGINT[]; a_bal BIGINT[]; a_deb BIGINT[]; a_cred BIGINT[];
    -- the transfers of the batch, in decision order
    t_deb BIGINT[] := ARRAY[]::BIGINT[]; t_cred BIGINT[] := ARRAY[]::BIGINT[]; t_amount BIGINT[] := ARRAY[]::BIGINT[];
    t_kind TEXT[] := ARRAY[]::TEXT[]; t_acct TEXT[] := ARRAY[]::TEXT[]; t_bucket TEXT[] := ARRAY[]::TEXT[];
    t_hold BIGINT[] := ARRAY[]::BIGINT[]; t_receipt TEXT[] := ARRAY[]::TEXT[]; t_attempt INTEGER[] := ARRAY[]::INTEGER[];
    t_run TEXT[] := ARRAY[]::TEXT[]; t_reason TEXT[] := ARRAY[]::TEXT[];
    t_deb_after BIGINT[] := ARRAY[]::BIGINT[]; t_cred_after BIGINT[] := ARRAY[]::BIGINT[];
    ki INTEGER; ri INTEGER; wi INTEGER; hi INTEGER; vi INTEGER; ovi INTEGER; ci INTEGER; j INTEGER; n0 INTEGER;
    v_ids BIGINT[]; v_cis INTEGER[]; v_amount BIGINT; v_left BIGINT; s_names TEXT[]; s_limits BIGINT[];
BEGIN
    IF NOT p_durable AND nop = 0 THEN
        -- settles alone may skip the WAL flush wait (TF_DURABLE_SETTLE): a settle lost in a crash
        -- leaves its hold, which the sweeper releases; holds themselves are always durable
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;

    -- 1. The rows of the requests themselves.
    -- Finishes: resolve each hold exactly once (a hold that is no longer open matches nothing).
    FOR i IN 1 .. nf LOOP
        f := fi[i];
        UPDATE holds h
           SET status = coalesce(f.status, CASE WHEN f.charge > 0 OR f.outcome = 'success' THEN 'settled'
                                                ELSE 'voided' END),
               charged = least(greatest(f.charge, 0), h.amount), resolved_at = now()
         WHERE h.id = f.hold_id AND h.status = 'open'
        RETURNING h.amount, h.charged, h.status, h.account_id, h.bucket, h.run_id, h.receipt_id, h.attempt_no,
                  h.counter_ids INTO r;
        IF FOUND THEN
            h_amount[i] := r.amount; h_charged[i] := r.charged; h_status[i] := r.status;
        ELSE
            SELECT NULL::BIGINT AS amount, 0::BIGINT AS charged, h.status, h.account_id, h.bucket, h.run_id,
                   h.receipt_id, h.attempt_no, h.counter_ids INTO r
              FROM holds h WHERE h.id = f.hold_id AND h.status = 'expired' AND h.late_charged = 0
               FOR NO KEY UPDATE;  -- two late settles of one hold: the second finds it charged
            CONTINUE WHEN NOT FOUND OR coalesce(f.charge, 0) <= 0;
            h_late[i] := true;  -- charged below from the wallet, as far as the funds and every cap allow
        END IF;
        h_acct[i] := r.account_id; h_bucket[i] := r.bucket; h_run[i] := r.run_id;
        h_receipt[i] := r.receipt_id; h_attempt[i] := r.attempt_no; h_counters[i] := r.counter_ids::TEXT;
        v_counters := v_counters || r.counter_ids;
        v_codes := v_codes || ('wallet:' || r.account_id || ':' || r.bucket) || ('hold:' || r.account_id || ':' || r.bucket)
                           || tf_revenue_code(r.bucket, r.account_id);
    END LOOP;

    -- Opens: receipts, then the keys, runs and spend counters they count against.
    IF nop > 0 THEN
        INSERT INTO receipts (id, account_id, project_id, key_id, run_id, model, stream, route_kind, bucket,
                              idempotency_key, endpoint)
        SELECT x.receipt_id, x.account_id, x.project_id, x.key_id, x.run_id, x.model, coalesce(x.stream, false),
               x.route_kind, x.bucket, x.idempotency_key, coalesce(x.endpoint, 'chat_completions')
          FROM unnest(oi) WITH ORDINALITY x WHERE x."create" ORDER BY x.ordinality;
        SELECT array_agg(k.id), array_agg(k.account_id), array_agg(k.project_id), array_agg(k.status = 'active'),
               array_agg(k.per_request_limit_micros), array_agg(k.daily_limit_micros), array_agg(k.total_limit_micros),
               array_agg(p.daily_limit_micros), array_agg(p.total_limit_micros), array_agg(k.requests_per_minute::BIGINT),
               array_agg(k.tokens_per_minute)
          INTO k_ids, k_acct, k_proj, k_active, k_per_req, k_daily, k_total, k_pdaily, k_ptotal, k_rpm, k_tpm
          FROM api_keys k JOIN projects p ON p.id = k.project_id
         WHERE k.id IN (SELECT x.key_id FROM unnest(oi) x);
        -- The rate limits of the first attempts: each limited key's row (made when missing), locked
        -- in key order, decayed to now, then each first attempt decided in order.
        l_keys := ARRAY[]::TEXT[];
        FOR i IN 1 .. nop LOOP  -- from the keys just read: no statement when no key is limited
            CONTINUE WHEN NOT coalesce(oi[i]."create", false);
            ki := array_position(k_ids, oi[i].key_id);
            IF ki IS NOT NULL AND k_active[ki] AND (k_rpm[ki] IS NOT NULL OR k_tpm[ki] IS NOT NULL)
               AND array_position(l_keys, oi[i].key_id) IS NULL THEN
                l_keys := l_keys || oi[i].key_id;
            END IF;
        END LOOP;
        IF array_length(l_keys, 1) > 0 THEN
            INSERT INTO key_rate_limits (key_id, account_id)
            SELECT t.k, k_acct[array_position(k_ids, t.k)] FROM unnest(l_keys) t(k) ORDER BY t.k
            ON CONFLICT (key_id, account_id) DO NOTHING;
            SELECT array_agg(l.key_id ORDER BY l.key_id), array_agg(l.requests_used ORDER BY l.key_id),
                   array_agg(l.tokens_used ORDER BY l.key_id), array_agg(l.updated_at ORDER BY l.key_id)
              INTO l_keys, l_req, l_tok, l_at
              FROM (SELECT rl.* FROM key_rate_limits rl WHERE rl.key_id = ANY(l_keys) ORDER BY rl.key_id
                    FOR NO KEY UPDATE) l;
            l_now := clock_timestamp();
            FOR j IN 1 .. array_length(l_keys, 1) LOOP  -- what has refilled since (a minute refills all)
                ki := array_position(k_ids, l_keys[j]);
                v_elapsed := least(greatest((extract(epoch FROM l_now - l_at[j]) * 1000000)::BIGINT, 0), UNIT);
                l_req[j] := greatest(l_req[j] - v_elapsed * coalesce(k_rpm[ki], UNIT), 0);
                l_tok[j] := greatest(l_tok[j] - v_elapsed * coalesce(k_tpm[ki], UNIT), 0);
            END LOOP;
            FOR i IN 1 .. nop LOOP
                o := oi[i];
                CONTINUE WHEN NOT coalesce(o."create", false);
                li := array_position(l_keys, o.key_id);
                CONTINUE WHEN li IS NULL;
                ki := array_position(k_ids, o.key_id);
                -- a request's tokens beyond the limit itself can never pass: counted as the limit plus one
                v_cost := least(greatest(coalesce(o.rate_tokens, 0), 0), coalesce(k_tpm[ki], 0) + 1) * UNIT;
                v_wait := 0;
                IF k_rpm[ki] IS NOT NULL AND l_req[li] + UNIT > k_rpm[ki] * UNIT THEN
                    o_scope[i] := 'requests_per_minute';
                    v_wait := (l_req[li] + UNIT - k_rpm[ki] * UNIT + k_rpm[ki] - 1) / k_rpm[ki];
                END IF;
                IF k_tpm[ki] IS NOT NULL AND l_tok[li] + v_cost > k_tpm[ki] * UNIT THEN
                    o_scope[i] := coalesce(o_scope[i], 'tokens_per_minute');
                    v_wait := CASE WHEN v_cost > k_tpm[ki] * UNIT THEN NULL
                                   ELSE greatest(v_wait, (l_tok[li] + v_cost - k_tpm[ki] * UNIT + k_tpm[ki] - 1) / k_tpm[ki])
                              END;
                END IF;
                IF o_scope[i] IS NULL THEN
                    IF k_rpm[ki] IS NOT NULL THEN l_req[li] := l_req[li] + UNIT; END IF;
                    IF k_tpm[ki] IS NOT NULL THEN l_tok[li] := l_tok[li] + v_cost; END IF;
                    l_used := true;
                ELSE
                    o_wait[i] := v_wait;
                END IF;
                IF k_rpm[ki] IS NOT NULL THEN
                    o_rpm[i] := k_rpm[ki]; o_req_left[i] := greatest(k_rpm[ki] * UNIT - l_req[li], 0) / UNIT;
                    o_req_reset[i] := (l_req[li] + k_rpm[ki] - 1) / k_rpm[ki];
                END IF;
                IF k_tpm[ki] IS NOT NULL THEN
                    o_tpm[i] := k_tpm[ki]; o_tok_left[i] := greatest(k_tpm[ki] * UNIT - l_tok[li], 0) / UNIT;
                    o_tok_reset[i] := (l_tok[li] + k_tpm[ki] - 1) / k_tpm[ki];
                END IF;
            END LOOP;
            IF l_used THEN
                UPDATE key_rate_limits rl SET requests_used = u.r, tokens_used = u.tk, updated_at = l_now
                  FROM unnest(l_keys, l_req, l_tok) u(k, r, tk) WHERE rl.key_id = u.k;
            END IF;
        END IF;
        SELECT array_agg(ru.id), array_agg(ru.account_id), array_agg(ru.budget_micros) INTO r_ids, r_acct, r_budget
          FROM runs ru WHERE ru.id IN (SELECT x.run_id FROM unnest(oi) x);
        -- Every counter the opens need exists (a new UTC day creates them): missing ones are made in
        -- one sorted statement, so that two batches take the unique index's locks in the same order.
        SELECT array_agg(w.account_id ORDER BY w.s, w.o, w.pr), array_agg(w.s ORDER BY w.s, w.o, w.pr),
               array_agg(w.o ORDER BY w.s, w.o, w.pr), array_agg(w.pr ORDER BY w.s, w.o, w.pr)
          INTO w_acct, w_scope, w_owner, w_period
          FROM (SELECT DISTINCT k.account_id, v.s, v.o, v.pr
                  FROM unnest(oi) x JOIN api_keys k ON k.id = x.key_id AND k.status = 'active'
                 CROSS JOIN LATERAL (VALUES ('key_daily', k.id, v_day), ('key_total', k.id, 'total'),
                                            ('project_daily', k.project_id, v_day),
                                            ('project_total', k.project_id, 'total'),
                                            ('run', x.run_id, 'total')) v(s, o, pr)
                 WHERE v.o IS NOT NULL) w;
        -- Read first (each through the unique index): only a new day, key, project or run writes.
        FOR j IN 1 .. 2 LOOP
            SELECT coalesce(array_agg(t.s || '|' || t.o || '|' || t.pr ORDER BY t.n), ARRAY[]::TEXT[]),
                   coalesce(array_agg(sc.id ORDER BY t.n), ARRAY[]::BIGINT[])
              INTO w_names, w_ids
              FROM unnest(w_scope, w_owner, w_period) WITH ORDINALITY t(s, o, pr, n)
              LEFT JOIN spend_counters sc ON sc.scope = t.s AND sc.owner_id = t.o AND sc.period = t.pr;
            EXIT WHEN array_position(w_ids, NULL) IS NULL;
            INSERT INTO spend_counters (account_id, scope, owner_id, period)
            SELECT t.a, t.s, t.o, t.pr FROM unnest(w_acct, w_scope, w_owner, w_period) WITH ORDINALITY t(a, s, o, pr, n)
             ORDER BY t.n
            ON CONFLICT (scope, owner_id, period, account_id) DO NOTHING;
        END LOOP;
        v_counters := v_counters || w_ids;
        -- Every item that may pass gets its hold and attempt rows now, before any hot row is locked
        -- (the hot rows then stay locked only for the money); a refused item's rows go again below.
        FOR i IN 1 .. nop LOOP
            o := oi[i];
            ki := array_position(k_ids, o.key_id);
            CONTINUE WHEN ki IS NULL OR NOT k_active[ki] OR (k_per_req[ki] IS NOT NULL AND o.amount > k_per_req[ki])
                          OR o_scope[i] IS NOT NULL;  -- refused by its key's rate limit
            o_acct[i] := k_acct[ki];
            o_hold[i] := nextval(pg_get_serial_sequence('holds', 'id'));
            v_ids := ARRAY[w_ids[array_position(w_names, 'key_daily|' || o.key_id || '|' || v_day)],
                           w_ids[array_position(w_names, 'key_total|' || o.key_id || '|total')],
                           w_ids[array_position(w_names, 'project_daily|' || k_proj[ki] || '|' || v_day)],
                           w_ids[array_position(w_names, 'project_total|' || k_proj[ki] || '|total')]];
            IF o.run_id IS NOT NULL THEN
                v_ids := v_ids || w_ids[array_position(w_names, 'run|' || o.run_id || '|total')];
            END IF;
            o_counters[i] := v_ids::TEXT;
            v_codes := v_codes || ('wallet:' || k_acct[ki] || ':' || o.bucket) || ('hold:' || k_acct[ki] || ':' || o.bucket);
        END LOOP;
        INSERT INTO holds (id, account_id, bucket, amount, counter_ids, receipt_id, attempt_no, run_id, owner_id,
                           expires_at)
        SELECT o_hold[x.ordinality], o_acct[x.ordinality], x.bucket, x.amount, o_counters[x.ordinality]::BIGINT[],
               x.receipt_id, x.attempt_no, x.run_id, x.owner_id, now() + make_interval(secs => x.ttl_s)
          FROM unnest(oi) WITH ORDINALITY x WHERE o_hold[x.ordinality] IS NOT NULL ORDER BY x.ordinality;
        INSERT INTO attempts (receipt_id, attempt_no, account_id, route_id, route_kind, bucket, price_snapshot_id,
                              hold_id, reserved_micros)
        SELECT x.receipt_id, x.attempt_no, o_acct[x.ordinality], x.route_id, x.route_kind, x.bucket,
               x.price_snapshot_id, o_hold[x.ordinality], x.amount
          FROM unnest(oi) WITH ORDINALITY x
         WHERE o_hold[x.ordinality] IS NOT NULL AND x.route_id IS NOT NULL ORDER BY x.ordinality;
    END IF;

    -- 2. The hot rows, all of them, in the one global order: counters by id, then ledger accounts by id.
    SELECT array_agg(c.id ORDER BY c.id), array_agg(c.scope || '|' || c.owner_id || '|' || c.period ORDER BY c.id),
           array_agg(c.pending_micros + c.posted_micros ORDER BY c.id)
      INTO c_ids, c_names, c_used
      FROM (SELECT sc.* FROM spend_counters sc WHERE sc.id = ANY(v_counters) ORDER BY sc.id FOR NO KEY UPDATE) c;
    c_pending := array_fill(0::BIGINT, ARRAY[coalesce(array_length(c_ids, 1), 0)]);
    c_posted := c_pending;
    SELECT array_agg(s.code ORDER BY s.id), array_agg(s.id ORDER BY s.id),
           array_agg(s.credits_posted - s.debits_posted ORDER BY s.id)
      INTO a_codes, a_ids, a_bal
      FROM (SELECT la.* FROM ledger_accounts la WHERE la.code = ANY(v_codes) ORDER BY la.id FOR NO KEY UPDATE) s;
    a_deb := array_fill(0::BIGINT, ARRAY[array_length(a_ids, 1)]);
    a_cred := a_deb;
    ovi := array_position(a_codes, 'overage');

    -- 3. The money, item by item: finishes first.
    FOR i IN 1 .. nf LOOP
        CONTINUE WHEN h_acct[i] IS NULL;
        f := fi[i];
        IF h_late[i] THEN
            -- a hold an earlier item of this batch late-charged matches nothing, as in a later batch
            -- (whose late_charged check finds it charged): it is charged once, whatever the grouping
            FOR j IN 1 .. i - 1 LOOP
                IF h_late[j] AND h_charged[j] > 0 AND (fi[j]).hold_id = f.hold_id THEN
                    h_late[i] := false; h_receipt[i] := NULL;
                    EXIT;
                END IF;
            END LOOP;
            CONTINUE WHEN NOT h_late[i];
        END IF;
        n0 := coalesce(array_length(t_deb, 1), 0);
        wi := array_position(a_codes, 'wallet:' || h_acct[i] || ':' || h_bucket[i]);
        hi := array_position(a_codes, 'hold:' || h_acct[i] || ':' || h_bucket[i]);
        vi := array_position(a_codes, tf_revenue_code(h_bucket[i], h_acct[i]));
        v_cis := ARRAY(SELECT array_position(c_ids, u) FROM unnest(h_counters[i]::BIGINT[]) u);
        IF h_late[i] THEN
            -- the hold is gone: charge what was delivered from the wallet, within every cap and the funds
            v_amount := least(f.charge, greatest(a_bal[wi], 0));
            FOREACH ci IN ARRAY v_cis LOOP
                v_left := tf_counter_limit(split_part(c_names[ci], '|', 1), split_part(c_names[ci], '|', 2));
                IF v_left IS NOT NULL THEN v_amount := least(v_amount, greatest(v_left - c_used[ci], 0)); END IF;
            END LOOP;
            h_charged[i] := v_amount;
            IF v_amount > 0 THEN  -- wallet -> revenue
                FOREACH ci IN ARRAY v_cis LOOP
                    c_used[ci] := c_used[ci] + v_amount; c_posted[ci] := c_posted[ci] + v_amount;
                END LOOP;
                a_bal[wi] := a_bal[wi] - v_amount; a_deb[wi] := a_deb[wi] + v_amount;
                a_bal[vi] := a_bal[vi] + v_amount; a_cred[vi] := a_cred[vi] + v_amount;
                t_deb := t_deb || a_ids[wi]; t_cred := t_cred || a_ids[vi]; t_amount := t_amount || v_amount;
                t_kind := t_kind || f.kind; t_reason := t_reason || 'late charge: the hold had been released'::TEXT;
                t_deb_after := t_deb_after || a_bal[wi]; t_cred_after := t_cred_after || a_bal[vi];
            END IF;
        ELSE
            FOREACH ci IN ARRAY v_cis LOOP
                c_used[ci] := c_used[ci] - h_amount[i] + h_charged[i];
                c_pending[ci] := c_pending[ci] - h_amount[i]; c_posted[ci] := c_posted[ci] + h_charged[i];
            END LOOP;
            IF h_charged[i] > 0 THEN  -- hold -> revenue
                a_bal[hi] := a_bal[hi] - h_charged[i]; a_deb[hi] := a_deb[hi] + h_charged[i];
                a_bal[vi] := a_bal[vi] + h_charged[i]; a_cred[vi] := a_cred[vi] + h_charged[i];
                t_deb := t_deb || a_ids[hi]; t_cred := t_cred || a_ids[vi]; t_amount := t_amount || h_charged[i];
                t_kind := t_kind || f.kind; t_reason := t_reason || NULL::TEXT;
                t_deb_after := t_deb_after || a_bal[hi]; t_cred_after := t_cred_after || a_bal[vi];
            END IF;
            IF h_amount[i] > h_charged[i] THEN  -- hold -> wallet: the rest is released
                v_amount := h_amount[i] - h_charged[i];
                a_bal[hi] := a_bal[hi] - v_amount; a_deb[hi] := a_deb[hi] + v_amount;
                a_bal[wi] := a_bal[wi] + v_amount; a_cred[wi] := a_cred[wi] + v_amount;
                t_deb := t_deb || a_ids[hi]; t_cred := t_cred || a_ids[wi]; t_amount := t_amount || v_amount;
                t_kind := t_kind || 'release'::TEXT; t_reason := t_reason || h_status[i];
                t_deb_after := t_deb_after || a_bal[hi]; t_cred_after := t_cred_after || a_bal[wi];
            END IF;
            IF coalesce(f.overage, 0) > 0 THEN  -- overage -> revenue: the upstream's bill beyond the hold
                a_bal[ovi] := a_bal[ovi] - f.overage; a_deb[ovi] := a_deb[ovi] + f.overage;
                a_bal[vi] := a_bal[vi] + f.overage; a_cred[vi] := a_cred[vi] + f.overage;
                t_deb := t_deb || a_ids[ovi]; t_cred := t_cred || a_ids[vi]; t_amount := t_amount || f.overage;
                t_kind := t_kind || f.kind; t_reason := t_reason || 'overage: upstream usage beyond the hold'::TEXT;
                t_deb_after := t_deb_after || a_bal[ovi]; t_cred_after := t_cred_after || a_bal[vi];
            END IF;
        END IF;
        FOR j IN n0 + 1 .. coalesce(array_length(t_deb, 1), 0) LOOP  -- what this item's transfers belong to
            t_acct := t_acct || h_acct[i]; t_bucket := t_bucket || h_bucket[i]; t_hold := t_hold || f.hold_id;
            t_receipt := t_receipt || h_receipt[i]; t_attempt := t_attempt || h_attempt[i]; t_run := t_run || h_run[i];
        END LOOP;
    END LOOP;

    -- Then the opens: every cap in order, then the bucket.
    FOR i IN 1 .. nop LOOP
        CONTINUE WHEN o_scope[i] IS NOT NULL;  -- refused by its key's rate limit (above)
        o := oi[i];
        ki := array_position(k_ids, o.key_id);
        IF ki IS NULL OR NOT k_active[ki] THEN
            o_scope[i] := 'key_revoked'; CONTINUE;
        END IF;
        IF k_per_req[ki] IS NOT NULL AND o.amount > k_per_req[ki] THEN
            o_scope[i] := 'key_per_request'; o_rem[i] := k_per_req[ki]; CONTINUE;
        END IF;
        s_names := ARRAY['key_daily|' || o.key_id || '|' || v_day, 'key_total|' || o.key_id || '|total',
                         'project_daily|' || k_proj[ki] || '|' || v_day, 'project_total|' || k_proj[ki] || '|total'];
        s_limits := ARRAY[k_daily[ki], k_total[ki], k_pdaily[ki], k_ptotal[ki]];
        IF o.run_id IS NOT NULL THEN
            ri := array_position(r_ids, o.run_id);
            s_names := s_names || ('run|' || o.run_id || '|total');
            s_limits := s_limits || CASE WHEN ri IS NOT NULL AND r_acct[ri] = k_acct[ki] THEN r_budget[ri] END;
        END IF;
        FOR j IN 1 .. array_length(s_names, 1) LOOP
            ci := array_position(c_names, s_names[j]);
            IF s_limits[j] IS NOT NULL AND s_limits[j] - c_used[ci] < o.amount THEN
                o_scope[i] := split_part(s_names[j], '|', 1); o_rem[i] := greatest(s_limits[j] - c_used[ci], 0);
                EXIT;
            END IF;
        END LOOP;
        CONTINUE WHEN o_scope[i] IS NOT NULL;
        wi := array_position(a_codes, 'wallet:' || k_acct[ki] || ':' || o.bucket);
        hi := array_position(a_codes, 'hold:' || k_acct[ki] || ':' || o.bucket);
        IF wi IS NULL OR hi IS NULL OR a_bal[wi] < o.amount THEN
            o_scope[i] := 'bucket'; o_rem[i] := coalesce(a_bal[wi], 0); CONTINUE;
        END IF;
        FOR j IN 1 .. array_length(s_names, 1) LOOP
            ci := array_position(c_names, s_names[j]);
            c_used[ci] := c_used[ci] + o.amount; c_pending[ci] := c_pending[ci] + o.amount;
        END LOOP;
        IF o.amount > 0 THEN  -- wallet -> hold
            a_bal[wi] := a_bal[wi] - o.amount; a_deb[wi] := a_deb[wi] + o.amount;
            a_bal[hi] := a_bal[hi] + o.amount; a_cred[hi] := a_cred[hi] + o.amount;
            t_deb := t_deb || a_ids[wi]; t_cred := t_cred || a_ids[hi]; t_amount := t_amount || o.amount;
            t_kind := t_kind || 'reserve'::TEXT; t_reason := t_reason || NULL::TEXT;
            t_deb_after := t_deb_after || a_bal[wi]; t_cred_after := t_cred_after || a_bal[hi];
            t_acct := t_acct || k_acct[ki]; t_bucket := t_bucket || o.bucket; t_hold := t_hold || o_hold[i];
            t_receipt := t_receipt || o.receipt_id; t_attempt := t_attempt || o.attempt_no; t_run := t_run || o.run_id;
        END IF;
        o_rem[i] := a_bal[wi];
    END LOOP;

    -- 4. Write what was decided: one statement for the locked counters and one for the locked
    -- accounts that moved (their ids are distinct), the transfers in decision order (their ids are
    -- drawn now, while the accounts are locked, so running balances follow transfer ids).
    UPDATE spend_counters sc SET pending_micros = sc.pending_micros + u.p, posted_micros = sc.posted_micros + u.q
      FROM unnest(c_ids, c_pending, c_posted) u(id, p, q)
     WHERE sc.id = u.id AND (u.p <> 0 OR u.q <> 0);
    UPDATE ledger_accounts la SET debits_posted = la.debits_posted + u.d, credits_posted = la.credits_posted + u.c
      FROM unnest(a_ids, a_deb, a_cred) u(id, d, c)
     WHERE la.id = u.id AND (u.d <> 0 OR u.c <> 0);
    INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, account_id, bucket, hold_id,
                           receipt_id, attempt_no, run_id, reason, debit_balance_after, credit_balance_after)
    SELECT nextval(pg_get_serial_sequence('transfers', 'id')), t.deb, t.cred, t.amount, t.kind, t.acct, t.bucket,
           t.hold, t.receipt, t.attempt, t.run, t.reason, t.deb_after, t.cred_after
      FROM unnest(t_deb, t_cred, t_amount, t_kind, t_acct, t_bucket, t_hold, t_receipt, t_attempt, t_run, t_reason,
                  t_deb_after, t_cred_after) WITH ORDINALITY
           AS t(deb, cred, amount, kind, acct, bucket, hold, receipt, attempt, run, reason, deb_after, cred_after, n)
     ORDER BY t.n;

    -- The outcome of each finish on its attempt and receipt (and a late charge on its hold).
    FOR i IN 1 .. nf LOOP
        f := fi[i];
        IF h_late[i] AND h_charged[i] > 0 THEN
            UPDATE holds SET late_charged = h_charged[i] WHERE id = f.hold_id;
        END IF;
        CONTINUE WHEN h_receipt[i] IS NULL;
        IF f.record IS FALSE THEN  -- the receipt's total still follows the ledger
            UPDATE receipts SET total_charged_micros = total_charged_micros + h_charged[i] WHERE id = h_receipt[i];
            CONTINUE;
        END IF;
        UPDATE attempts
           SET ended_at = clock_timestamp(), outcome = f.outcome, upstream_status = f.upstream_status,
               prompt_tokens = coalesce(f.prompt_tokens, 0), completion_tokens = coalesce(f.completion_tokens, 0),
               charged_micros = h_charged[i],
               overage_micros = CASE WHEN h_late[i] THEN 0 ELSE coalesce(f.overage, 0) END,
               charge_rule = f.charge_rule,
               charge_reason = CASE WHEN NOT h_late[i] THEN f.reason
                                    ELSE f.reason || '; late charge of ' || h_charged[i]
                                         || ' micros: the hold had been released before settlement' END,
               error = f.error, latency_ms = f.latency_ms
         WHERE receipt_id = h_receipt[i] AND attempt_no = h_attempt[i];
        IF f.final_status IS NULL THEN
            UPDATE receipts SET total_charged_micros = total_charged_micros + h_charged[i] WHERE id = h_receipt[i];
        ELSE
            UPDATE receipts
               SET total_charged_micros = total_charged_micros + h_charged[i],
                   -- a receipt the sweeper closed is the settle's again: the answer was delivered
                   status = CASE WHEN status = 'pending' OR error_code = 'hold_expired' THEN f.final_status
                                 ELSE status END,
                   reason = coalesce(f.final_reason, reason), error_code = f.final_code,
                   usage_estimated = coalesce(f.usage_estimated, false),
                   route_kind = coalesce(f.route_kind, route_kind), bucket = coalesce(f.bucket, bucket),
                   prompt_tokens = prompt_tokens + coalesce(f.prompt_tokens, 0),
                   completion_tokens = completion_tokens + coalesce(f.completion_tokens, 0),
                   completed_at = clock_timestamp()
             WHERE id = h_receipt[i];
        END IF;
    END LOOP;

    -- The rows written ahead for opens that were refused; a refused receipt closed when asked.
    FOR i IN 1 .. nop LOOP
        CONTINUE WHEN o_scope[i] IS NULL;
        o := oi[i];
        IF o_hold[i] IS NOT NULL THEN
            DELETE FROM attempts WHERE receipt_id = o.receipt_id AND attempt_no = o.attempt_no;
            DELETE FROM holds WHERE id = o_hold[i];
            o_hold[i] := NULL;
        END IF;
        -- a rate limit's refusal ends the request whatever is left to try
        CONTINUE WHEN NOT coalesce(o.reject, false) AND o_scope[i] NOT IN ('requests_per_minute', 'tokens_per_minute');
        UPDATE receipts
           SET status = 'rejected', route_kind = o.route_kind, bucket = o.bucket, completed_at = clock_timestamp(),
               reason = CASE WHEN o_scope[i] IN ('requests_per_minute', 'tokens_per_minute')
                             THEN 'refused by the key''s rate limit (' || o_scope[i] || ')'
                             ELSE 'refused by the spend guard (' || o_scope[i] || ')' END,
               error_code = CASE o_scope[i] WHEN 'bucket' THEN 'insufficient_balance'
                                           WHEN 'key_revoked' THEN 'invalid_api_key'
                                           WHEN 'requests_per_minute' THEN 'rate_limit_exceeded'
                                           WHEN 'tokens_per_minute' THEN 'rate_limit_exceeded'
                                           ELSE 'spend_limit_exceeded' END
         WHERE id = o.receipt_id;
    END LOOP;

    -- Last in the lock order: the runs that got a reservation are running (r_ids: the batch's runs).
    IF r_ids IS NOT NULL THEN
        PERFORM 1 FROM runs WHERE id IN (SELECT x.run_id FROM unnest(oi) WITH ORDINALITY x
                                          WHERE o_hold[x.ordinality] IS NOT NULL)
         ORDER BY id FOR NO KEY UPDATE;
        UPDATE runs SET status = CASE WHEN status = 'ready' THEN 'running' ELSE status END,
                        last_activity_at = now(), updated_at = now()
         WHERE id IN (SELECT x.run_id FROM unnest(oi) WITH ORDINALITY x WHERE o_hold[x.ordinality] IS NOT NULL);
    END IF;

    RETURN QUERY
        SELECT 'finish'::TEXT, i, NULL::BIGINT, NULL::TEXT, NULL::BIGINT, h_charged[i], h_amount[i] IS NOT NULL,
               NULL::INTEGER, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT
          FROM generate_series(1, nf) i
        UNION ALL
        SELECT 'open'::TEXT, i, o_hold[i], o_scope[i], o_rem[i], NULL::BIGINT, NULL::BOOLEAN, o_rpm[i]::INTEGER,
               o_req_left[i], o_req_reset[i], o_tpm[i], o_tok_left[i], o_tok_reset[i], o_wait[i]
          FROM generate_series(1, nop) i;
END $$;
