"""Set-based batches of the two hot-path phases (tf_open_batch, tf_finish_batch, tf_write_batch).
Superseded by the tf_write_batch of revision 0006 (ledger/sql/), one global lock order across
both phases; their definitions are in git history.

Revision ID: 0005
Revises: 0004
"""
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # the functions live in ledger/sql/ (revision 0006)


def downgrade() -> None:
    pass
