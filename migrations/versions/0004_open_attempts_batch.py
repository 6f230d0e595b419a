"""Coalesced reservations: tf_open_attempts opens many attempts of ONE key (same run, same bucket)
in one transaction, so that the holds that queue behind each other on that key's rows share one
WAL flush instead of paying one each. Items are processed in order with exactly the semantics of
tf_open_attempt; since every item locks the same rows in the same order, the lock order of a batch
is that of a single reservation.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

from tokens_forge.db.sql import run_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE FUNCTION tf_open_attempts(
    p_receipts TEXT[], p_creates BOOLEAN[], p_account TEXT, p_project TEXT, p_key TEXT, p_run TEXT,
    p_models TEXT[], p_streams BOOLEAN[], p_idempotency_keys TEXT[], p_routes TEXT[], p_kinds TEXT[],
    p_bucket TEXT, p_snapshots TEXT[], p_attempts INTEGER[], p_amounts BIGINT[],
    p_ttls DOUBLE PRECISION[], p_rejects BOOLEAN[])
RETURNS TABLE (o_index INTEGER, o_hold_id BIGINT, o_refused_scope TEXT, o_remaining BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_receipts, 1), 0) LOOP
        SELECT * INTO r FROM tf_open_attempt(
            p_receipts[i], p_creates[i], p_account, p_project, p_key, p_run, p_models[i], p_streams[i],
            p_idempotency_keys[i], p_routes[i], p_kinds[i], p_bucket, p_snapshots[i], p_attempts[i],
            p_amounts[i], p_ttls[i], p_rejects[i]);
        o_index := i;
        o_hold_id := r.hold_id;
        o_refused_scope := r.refused_scope;
        o_remaining := r.remaining;
        RETURN NEXT;
    END LOOP;
END $$;
"""


def upgrade() -> None:
    run_script(op.execute, UPGRADE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS tf_open_attempts")
