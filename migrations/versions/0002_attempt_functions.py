"""One round trip per phase of a request: tf_open_attempt (receipt + reservation + attempt row)
and tf_finish_attempt (resolve the hold + attempt outcome + receipt totals), each a single
statement that commits on its own. They compose tf_reserve and tf_resolve of 0001.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

from tokens_forge.db.sql import run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FUNCTIONS = """
-- Open an attempt: create the receipt (first attempt), reserve, and record the attempt.
-- On refusal with p_reject (nothing else will be tried) the receipt is closed `rejected` in
-- the same transaction; the caller may then refine its human-readable reason.
CREATE FUNCTION tf_open_attempt(
    p_receipt TEXT, p_create BOOLEAN, p_account TEXT, p_project TEXT, p_key TEXT, p_run TEXT,
    p_model TEXT, p_stream BOOLEAN, p_idempotency_key TEXT, p_route TEXT, p_kind TEXT, p_bucket TEXT,
    p_snapshot TEXT, p_attempt INTEGER, p_amount BIGINT, p_ttl_s DOUBLE PRECISION, p_reject BOOLEAN,
    OUT hold_id BIGINT, OUT refused_scope TEXT, OUT remaining BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    IF p_create THEN
        INSERT INTO receipts (id, account_id, project_id, key_id, run_id, model, stream, route_kind, bucket,
                              idempotency_key)
        VALUES (p_receipt, p_account, p_project, p_key, p_run, p_model, p_stream, p_kind, p_bucket,
                p_idempotency_key);
    END IF;
    SELECT * INTO r FROM tf_reserve(p_key, p_bucket, p_amount, p_receipt, p_attempt, p_run, p_ttl_s);
    hold_id := r.hold_id;
    refused_scope := r.refused_scope;
    remaining := r.remaining;
    IF refused_scope IS NOT NULL THEN
        IF p_reject THEN
            UPDATE receipts
               SET status = 'rejected', route_kind = p_kind, bucket = p_bucket, completed_at = clock_timestamp(),
                   reason = 'refused by the spend guard (' || refused_scope || ')',
                   error_code = CASE refused_scope WHEN 'bucket' THEN 'insufficient_balance'
                                                   WHEN 'key_revoked' THEN 'invalid_api_key'
                                                   ELSE 'spend_limit_exceeded' END
             WHERE id = p_receipt;
        END IF;
        RETURN;
    END IF;
    INSERT INTO attempts (receipt_id, attempt_no, account_id, route_id, route_kind, bucket, price_snapshot_id,
                          hold_id, reserved_micros)
    VALUES (p_receipt, p_attempt, p_account, p_route, p_kind, p_bucket, p_snapshot, hold_id, p_amount);
    IF p_run IS NOT NULL THEN
        UPDATE runs SET status = CASE WHEN status = 'ready' THEN 'running' ELSE status END,
                        last_activity_at = now(), updated_at = now()
         WHERE id = p_run;
    END IF;
END $$;

-- Finish an attempt: resolve its hold exactly once (a hold the sweeper already expired charges
-- nothing), record the outcome, add the charge to the receipt and, with p_final_status, close it.
-- Without p_durable the commit does not wait for the WAL flush: a settle lost in a database
-- crash leaves its hold open, the sweeper releases it, and receipt and ledger still agree
-- (the customer is never charged more than the ledger says, and no cap can be exceeded).
CREATE FUNCTION tf_finish_attempt(
    p_hold BIGINT, p_charge BIGINT, p_kind TEXT, p_receipt TEXT, p_attempt INTEGER, p_outcome TEXT,
    p_upstream_status INTEGER, p_prompt_tokens INTEGER, p_completion_tokens INTEGER, p_reason TEXT,
    p_error TEXT, p_latency_ms INTEGER, p_final_status TEXT, p_final_reason TEXT, p_final_code TEXT,
    p_usage_estimated BOOLEAN, p_route_kind TEXT, p_bucket TEXT, p_durable BOOLEAN,
    OUT charged BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    IF NOT p_durable THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    SELECT * INTO r FROM tf_resolve(p_hold, p_charge, p_kind,
                                    CASE WHEN p_charge > 0 OR p_outcome = 'success' THEN 'settled' ELSE 'voided' END);
    charged := CASE WHEN r.resolved THEN r.charged ELSE 0 END;
    UPDATE attempts
       SET ended_at = clock_timestamp(), outcome = p_outcome, upstream_status = p_upstream_status,
           prompt_tokens = p_prompt_tokens, completion_tokens = p_completion_tokens, charged_micros = charged,
           charge_reason = CASE WHEN r.resolved THEN p_reason
                                ELSE 'the hold had expired before settlement; nothing charged' END,
           error = p_error, latency_ms = p_latency_ms
     WHERE receipt_id = p_receipt AND attempt_no = p_attempt;
    IF p_final_status IS NULL THEN
        UPDATE receipts SET total_charged_micros = total_charged_micros + charged WHERE id = p_receipt;
    ELSE
        UPDATE receipts
           SET total_charged_micros = total_charged_micros + charged,
               status = CASE WHEN status = 'pending' THEN p_final_status ELSE status END,
               reason = coalesce(p_final_reason, reason), error_code = p_final_code,
               usage_estimated = p_usage_estimated, route_kind = p_route_kind, bucket = p_bucket,
               prompt_tokens = prompt_tokens + p_prompt_tokens,
               completion_tokens = completion_tokens + p_completion_tokens,
               completed_at = clock_timestamp()
         WHERE id = p_receipt;
    END IF;
END $$;
"""


def upgrade() -> None:
    run_script(op.execute, FUNCTIONS)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS tf_open_attempt, tf_finish_attempt")
