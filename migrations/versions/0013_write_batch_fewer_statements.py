"""tf_write_batch in fewer statements: the spend counters a batch needs are read first and made
only when one is missing (a new UTC day, key, project or run), instead of an INSERT … ON CONFLICT
and one SELECT per counter on every batch; the locked counters and ledger accounts are updated in
one statement each instead of one per row; a batch without runs touches no run row. Decisions,
lock order and results are unchanged (tests/ledger/test_batch_properties.py, test_properties.py).

Revision ID: 0013
Revises: 0012
"""
from alembic import op

from tokens_forge.db import sqlfiles

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

FILES = {
    "tf_write_batch": "53fce66f7f8ddfdb",  # counters read before made; set-based updates
}


def upgrade() -> None:
    sqlfiles.apply(op.execute, FILES)


def downgrade() -> None:
    raise NotImplementedError("0013 changes the ledger's hot-path function; restore from a backup instead")
