"""Per-key rate limits (SPEC §3 `rate_limits`, §11): `requests_per_minute` and `tokens_per_minute`
on the key (NULL: no limit), and one row per limited key with what it has used, kept by the hot
path's one function (tf_write_batch) in the reservation's own transaction.

Invariants stated by the schema:
- a limit, when set, is positive and small enough that its bucket (the limit × 60,000,000 units:
  a request or a token is 60,000,000 units, refilled at the limit's rate each microsecond) and a
  request's cost stay far inside BIGINT;
- a key's use is never negative, and belongs to an existing key of the same account (keys are
  never deleted); like every table of an account's rows, it is keyed by account too
  (`(key_id, account_id)`, docs/scale.md), so that it can be distributed with them.

The row is made by tf_write_batch on a key's first limited request and locked there after the
request rows and before the spend counters (its header states the one lock order).

Revision ID: 0009
Revises: 0010
"""
from alembic import op

from tokens_forge.db import sqlfiles
from tokens_forge.db.sql import run_script

revision = "0009"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE api_keys
    ADD COLUMN requests_per_minute INTEGER
        CONSTRAINT api_keys_requests_per_minute CHECK (requests_per_minute BETWEEN 1 AND 100000000),
    ADD COLUMN tokens_per_minute BIGINT
        CONSTRAINT api_keys_tokens_per_minute CHECK (tokens_per_minute BETWEEN 1 AND 10000000000);

CREATE TABLE key_rate_limits (
    key_id         TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    requests_used  BIGINT NOT NULL DEFAULT 0 CHECK (requests_used >= 0),
    tokens_used    BIGINT NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, account_id),
    FOREIGN KEY (key_id, account_id) REFERENCES api_keys (id, account_id)
);
"""

FILES = {
    "tf_open_item": "a46c6a3ff1456d21",
    "tf_write_batch": "37dc132cecd6667e",
}


def upgrade() -> None:
    run_script(op.execute, UPGRADE)
    sqlfiles.apply(op.execute, FILES)


def downgrade() -> None:
    raise NotImplementedError("0009 changes the ledger's hot-path function (it keeps the rate limits); "
                              "restore from a backup instead")
