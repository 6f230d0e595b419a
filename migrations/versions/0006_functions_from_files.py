"""The ledger functions get one home each (src/tokens_forge/ledger/sql/, applied by name, never
copied), and the hot path one function: tf_write_batch, finishes and opens of any keys in one
transaction with one global lock order (counters, then ledger accounts, then runs, all by id),
taking one typed record per item.

Schema, for the money leaks the ledger's invariants did not see:
- holds are owned by a live gateway worker (`gateway_workers`, a heartbeat each): the sweeper
  releases what dead workers owned (a hold without an owner still expires at `expires_at`); a
  settle that finds its hold released books a late charge, once (`late_charged`);
- idempotency keys' locks are owned by a worker too (`owner_id`);
- token counts are BIGINT (an upstream may report anything); each attempt's charge names its rule
  (`charge_rule`) and the upstream's bill beyond the hold (`overage_micros`);
- routes bound the tokens of media parts (`image_low_tokens`, `image_high_tokens`, `file_tokens`:
  NULL refuses file and audio parts).

The functions of 0001-0005 are dropped; their definitions live on in git history.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

from tokens_forge.db import sqlfiles
from tokens_forge.db.sql import run_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FILES = {
    "tf_forbid_change": "54cdf038d7793d5d",
    "tf_post": "641dfb30e9e114aa",
    "tf_revenue_code": "bf66bf84af29dc83",
    "tf_counter_limit": "f26e6ed6e9734195",
    "tf_owner_gone": "f71088f96356700e",
    "tf_finish_item": "9ab5bf68c5962d6d",
    "tf_open_item": "be88d13e05c07e0e",
    "tf_write_batch": "f7f573414c335564",
}

OLD_FUNCTIONS = ("tf_write_batch", "tf_open_batch", "tf_finish_batch", "tf_add_posted", "tf_counter_ids",
                 "tf_scope_names", "tf_open_attempts", "tf_open_attempt", "tf_finish_attempt", "tf_reserve",
                 "tf_resolve", "tf_post", "tf_revenue_code")

SCHEMA = """
CREATE TABLE gateway_workers (
    id            TEXT PRIMARY KEY CHECK (id LIKE 'wkr\\_%'),
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL CHECK (pid > 0),
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (heartbeat_at >= started_at)
);

ALTER TABLE holds
    ADD COLUMN owner_id TEXT,
    ADD COLUMN late_charged BIGINT NOT NULL DEFAULT 0 CHECK (late_charged >= 0),
    ADD CONSTRAINT holds_late_charge_only_after_release CHECK (late_charged = 0 OR status = 'expired');
CREATE INDEX holds_open_owner ON holds (owner_id) WHERE status = 'open';

ALTER TABLE idempotency_keys ADD COLUMN owner_id TEXT;

ALTER TABLE receipts
    ALTER COLUMN prompt_tokens TYPE BIGINT,
    ALTER COLUMN completion_tokens TYPE BIGINT;
ALTER TABLE attempts
    ALTER COLUMN prompt_tokens TYPE BIGINT,
    ALTER COLUMN completion_tokens TYPE BIGINT,
    ADD COLUMN charge_rule TEXT
        CHECK (charge_rule IN ('usage', 'usage_capped', 'delivered', 'failed_request_charge', 'none')),
    ADD COLUMN overage_micros BIGINT NOT NULL DEFAULT 0 CHECK (overage_micros >= 0),
    ADD CONSTRAINT attempts_charged_within_reservation CHECK (charged_micros <= reserved_micros);

ALTER TABLE routes
    ADD COLUMN image_low_tokens BIGINT NOT NULL DEFAULT 2833 CHECK (image_low_tokens >= 0),
    ADD COLUMN image_high_tokens BIGINT NOT NULL DEFAULT 48169 CHECK (image_high_tokens >= 0),
    ADD COLUMN file_tokens BIGINT CHECK (file_tokens >= 0);
"""


def upgrade() -> None:
    for name in OLD_FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {name} CASCADE")
    run_script(op.execute, SCHEMA)
    sqlfiles.apply(op.execute, FILES)


def downgrade() -> None:
    raise NotImplementedError("0006 changes the ledger's functions and columns; restore from a backup instead")
