"""Shard the platform's revenue accounts: every settle credits revenue, so one revenue row per
kind serialises settles across all tenants. 64 shards per kind, chosen by a hash of the tenant,
spread that lock; the old rows stay (their history is valid) and revenue is the sum over shards.
tf_resolve also locks the overage account only when there is an overage.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

from tokens_forge.db.sql import run_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SHARDS = 64

UPGRADE = f"""
INSERT INTO ledger_accounts (code, kind, no_overdraft)
SELECT 'revenue:' || k || ':' || s, 'revenue', false
  FROM unnest(ARRAY['official', 'routed']) k, generate_series(0, {SHARDS - 1}) s;

CREATE OR REPLACE FUNCTION tf_revenue_code(p_bucket TEXT, p_account TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'revenue:' || CASE p_bucket WHEN 'credit' THEN 'official' ELSE 'routed' END
           || ':' || (hashtext(p_account) & {SHARDS - 1})
$$;

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
    SELECT id INTO v_rev FROM ledger_accounts WHERE code = tf_revenue_code(h.bucket, h.account_id);
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
"""


def upgrade() -> None:
    run_script(op.execute, UPGRADE)


def downgrade() -> None:
    raise NotImplementedError("revenue shards hold history; restore from a backup instead")
