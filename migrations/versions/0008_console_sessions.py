"""Console sessions: a signed-in browser holds a random session id; the database keeps only its
SHA-256, who it signs in (an API key, or the admin), and when it expires or was revoked.

Invariants stated by the schema:
- a key session names its key and account, an admin session names neither and carries the check
  value that binds it to the admin token it was opened with;
- a session lives at most one day and ends once: `revoked_at` and its reason are set together,
  never before the session began.

The table is looked up by the hash alone (all a request brings), so, like the routes, it is keyed
by that hash rather than by account: admin sessions have no account.

Revision ID: 0008
Revises: 0006
"""
from alembic import op

from tokens_forge.db.sql import run_script

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE console_sessions (
    token_hash      TEXT PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    kind            TEXT NOT NULL CHECK (kind IN ('key', 'admin')),
    account_id      TEXT REFERENCES accounts(id),
    key_id          TEXT REFERENCES api_keys(id),
    admin_check     TEXT CHECK (admin_check ~ '^[0-9a-f]{64}$'),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ,
    revoked_reason  TEXT CHECK (revoked_reason IN ('sign_out', 'key_revoked', 'admin_token_changed')),
    CONSTRAINT console_sessions_subject CHECK (
        (kind = 'key' AND key_id IS NOT NULL AND account_id IS NOT NULL AND admin_check IS NULL)
        OR (kind = 'admin' AND key_id IS NULL AND account_id IS NULL AND admin_check IS NOT NULL)),
    CONSTRAINT console_sessions_lifetime CHECK (
        expires_at > created_at AND expires_at <= created_at + interval '1 day'),
    CONSTRAINT console_sessions_revoked_once CHECK (
        (revoked_at IS NULL) = (revoked_reason IS NULL) AND (revoked_at IS NULL OR revoked_at >= created_at))
);
CREATE INDEX console_sessions_live_key ON console_sessions (key_id) WHERE revoked_at IS NULL;
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
"""


def upgrade() -> None:
    run_script(op.execute, UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS console_sessions")
