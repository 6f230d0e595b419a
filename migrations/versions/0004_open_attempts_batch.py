"""Coalesced reservations of one key (tf_open_attempts). Superseded by tf_write_batch (revision
0006, ledger/sql/), which dropped it; its definition is in git history.

Revision ID: 0004
Revises: 0003
"""
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # the functions live in ledger/sql/ (revision 0006)


def downgrade() -> None:
    pass
