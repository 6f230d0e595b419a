"""Shard the platform's revenue accounts: every settle credits revenue, so one revenue row per
kind serialises settles across all tenants. 64 shards per kind, chosen by a hash of the tenant
(tf_revenue_code, in ledger/sql/), spread that lock; the old rows stay (their history is valid)
and revenue is the sum over shards.

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
"""


def upgrade() -> None:
    run_script(op.execute, UPGRADE)


def downgrade() -> None:
    raise NotImplementedError("revenue shards hold history; restore from a backup instead")
