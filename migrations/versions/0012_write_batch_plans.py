"""tf_write_batch plans once per session and never JIT-compiles: `jit = off` and
`plan_cache_mode = force_generic_plan` beside its `enable_seqscan = off`. Under that setting a
custom plan's cost kept the plan cache from settling on the generic plan, so every statement was
planned again on every call, and a plan still holding a disabled scan (cost 10^10) passed
jit_above_cost and was compiled each time. pg_stat_user_functions, one connection, reserve +
settle on the bench (bench/ledger_bench.py): 3.0 ms per call before, 1.7 ms after; results unchanged.

Revision ID: 0012
Revises: 0011
"""
from alembic import op

from tokens_forge.db import sqlfiles

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FILES = {
    "tf_write_batch": "34b7e24872975f93",  # plans once per session, no JIT
}


def upgrade() -> None:
    sqlfiles.apply(op.execute, FILES)


def downgrade() -> None:
    raise NotImplementedError("0012 changes the ledger's hot-path function; restore from a backup instead")
