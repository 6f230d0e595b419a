"""tf_revenue_code is inlined: its body concatenated the shard number as an integer, whose output
function is only stable, so the planner would not inline an immutable function that calls it, and
each of the two calls of a settle in tf_write_batch set up a SQL function again in every
transaction (`perf` of the backend: 4 % of its time under reserve + settle; about 0.05 ms a call).
The shard is now cast to text: the same codes for every tenant, the same accounts.

Revision ID: 0014
Revises: 0013
"""
from alembic import op

from tokens_forge.db import sqlfiles

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

FILES = {
    "tf_revenue_code": "7d6daac7f82fd77b",  # the shard cast to text: inlinable
}


def upgrade() -> None:
    sqlfiles.apply(op.execute, FILES)


def downgrade() -> None:
    raise NotImplementedError("0014 changes a ledger function; restore from a backup instead")
