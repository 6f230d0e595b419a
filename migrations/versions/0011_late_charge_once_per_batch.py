"""A hold the sweeper released is late-charged once also when one batch carries two finishes of it
(tf_write_batch): the second matches nothing, as it would in a later batch, whose late_charged
check finds the hold charged. Before, both charged from the wallet (beyond the hold when their
kinds differed, a failure charge and a settle), or, both settles, the batch failed on
transfers_hold_once and the group commit wrote its items again one by one. Found by
tests/ledger/test_batch_properties.py; tests/ledger/test_writer.py has the example.

Revision ID: 0011
Revises: 0009
"""
from alembic import op

from tokens_forge.db import sqlfiles

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None

FILES = {
    "tf_write_batch": "a0162709113f8664",  # a late charge once per hold within a batch
}


def upgrade() -> None:
    sqlfiles.apply(op.execute, FILES)


def downgrade() -> None:
    raise NotImplementedError("0011 changes the ledger's hot-path function; restore from a backup instead")
