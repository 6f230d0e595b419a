"""One round trip per phase of a request: tf_open_attempt and tf_finish_attempt (receipt +
reservation + attempt row; resolution + outcome + receipt totals). Superseded by tf_write_batch
(revision 0006, ledger/sql/), which dropped them; their definitions are in git history.

Revision ID: 0002
Revises: 0001
"""
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # the functions live in ledger/sql/ (revision 0006)


def downgrade() -> None:
    pass
