"""Keys by account, so that the tables of an account's rows can be distributed by `account_id`
(Citus, docs/scale.md): `account_id` in every primary and unique key of those tables, and in every
foreign key between them; the platform tables (routes, price snapshots) reference no account's
rows, as reference tables may not.

Every key gets `account_id` as its last column: lookups by id alone (all of today's queries) keep
using the same index, and a distributed table only needs the column in the key, in any position.
The foreign keys now also state that a key's project, a run's key, a receipt's key, project and
run, a hold's receipt, a transfer's hold, an attempt's receipt and hold, an idempotency key's key
and a console session's key all belong to the same account as the row that names them. The
existing rows are checked against that when the constraints are added: a migration that fails
here has found rows of one account pointing at another's.

Ids stay globally unique by construction (time-led random ids, random secrets); the database
enforces uniqueness per account, as a distributed table can.

Not changed here (docs/scale.md, "What the schema needs"): `ledger_accounts` holds the
platform's accounts (funding, revenue shards, overage) beside the tenants' wallets and holds, so
its key and the transfers' references to it stay by id until those become per account; the
audit log, the worker heartbeats and the console sessions are not an account's rows.

Revision ID: 0010
Revises: 0007
"""
from alembic import op

from tokens_forge.db import sqlfiles
from tokens_forge.db.sql import run_script

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

FILES = {
    "tf_write_batch": "889394355bfe20a5",  # ON CONFLICT on the counters' new unique key
}

UPGRADE = """
-- The references to the keys about to change go first.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_project_id_fkey;
ALTER TABLE runs DROP CONSTRAINT runs_project_id_fkey, DROP CONSTRAINT runs_key_id_fkey;
ALTER TABLE receipts DROP CONSTRAINT receipts_project_id_fkey, DROP CONSTRAINT receipts_key_id_fkey,
                     DROP CONSTRAINT receipts_run_id_fkey;
ALTER TABLE holds DROP CONSTRAINT holds_receipt_id_fkey;
ALTER TABLE transfers DROP CONSTRAINT transfers_hold_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_receipt_id_fkey, DROP CONSTRAINT attempts_hold_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_key_id_fkey;
ALTER TABLE console_sessions DROP CONSTRAINT console_sessions_key_id_fkey;

-- Primary keys: the row's own key, then its account.
ALTER TABLE projects DROP CONSTRAINT projects_pkey, ADD CONSTRAINT projects_pkey PRIMARY KEY (id, account_id);
ALTER TABLE api_keys DROP CONSTRAINT api_keys_pkey, ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id, account_id);
ALTER TABLE runs DROP CONSTRAINT runs_pkey, ADD CONSTRAINT runs_pkey PRIMARY KEY (id, account_id);
ALTER TABLE receipts DROP CONSTRAINT receipts_pkey, ADD CONSTRAINT receipts_pkey PRIMARY KEY (id, account_id);
ALTER TABLE holds DROP CONSTRAINT holds_pkey, ADD CONSTRAINT holds_pkey PRIMARY KEY (id, account_id);
ALTER TABLE transfers DROP CONSTRAINT transfers_pkey, ADD CONSTRAINT transfers_pkey PRIMARY KEY (id, account_id);
ALTER TABLE spend_counters DROP CONSTRAINT spend_counters_pkey,
                           ADD CONSTRAINT spend_counters_pkey PRIMARY KEY (id, account_id);
ALTER TABLE attempts DROP CONSTRAINT attempts_pkey,
                     ADD CONSTRAINT attempts_pkey PRIMARY KEY (receipt_id, attempt_no, account_id);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey,
                             ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (key_id, idempotency_key, account_id);

-- Unique keys: the same, per account.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_secret_hash_key,
                     ADD CONSTRAINT api_keys_secret_hash_key UNIQUE (secret_hash, account_id);
ALTER TABLE spend_counters DROP CONSTRAINT spend_counters_scope_owner_id_period_key,
                           ADD CONSTRAINT spend_counters_scope_owner_id_period_key
                               UNIQUE (scope, owner_id, period, account_id);
DROP INDEX transfers_hold_once;  -- a hold transfer of each kind exists at most once per hold and debit account
CREATE UNIQUE INDEX transfers_hold_once ON transfers (hold_id, kind, debit_account_id, account_id)
    WHERE hold_id IS NOT NULL;

-- Foreign keys between an account's rows name the account on both sides.
ALTER TABLE api_keys ADD CONSTRAINT api_keys_project_id_fkey
    FOREIGN KEY (project_id, account_id) REFERENCES projects (id, account_id);
ALTER TABLE runs ADD CONSTRAINT runs_project_id_fkey
        FOREIGN KEY (project_id, account_id) REFERENCES projects (id, account_id),
    ADD CONSTRAINT runs_key_id_fkey FOREIGN KEY (key_id, account_id) REFERENCES api_keys (id, account_id);
ALTER TABLE receipts ADD CONSTRAINT receipts_project_id_fkey
        FOREIGN KEY (project_id, account_id) REFERENCES projects (id, account_id),
    ADD CONSTRAINT receipts_key_id_fkey FOREIGN KEY (key_id, account_id) REFERENCES api_keys (id, account_id),
    ADD CONSTRAINT receipts_run_id_fkey FOREIGN KEY (run_id, account_id) REFERENCES runs (id, account_id);
ALTER TABLE holds ADD CONSTRAINT holds_receipt_id_fkey
    FOREIGN KEY (receipt_id, account_id) REFERENCES receipts (id, account_id);
ALTER TABLE transfers ADD CONSTRAINT transfers_hold_id_fkey
    FOREIGN KEY (hold_id, account_id) REFERENCES holds (id, account_id);
ALTER TABLE attempts ADD CONSTRAINT attempts_receipt_id_fkey
        FOREIGN KEY (receipt_id, account_id) REFERENCES receipts (id, account_id),
    ADD CONSTRAINT attempts_hold_id_fkey FOREIGN KEY (hold_id, account_id) REFERENCES holds (id, account_id);
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_key_id_fkey
    FOREIGN KEY (key_id, account_id) REFERENCES api_keys (id, account_id);
-- an admin session has neither (MATCH SIMPLE: not checked); a key session has both
ALTER TABLE console_sessions ADD CONSTRAINT console_sessions_key_id_fkey
    FOREIGN KEY (key_id, account_id) REFERENCES api_keys (id, account_id);
"""


def upgrade() -> None:
    run_script(op.execute, UPGRADE)
    sqlfiles.apply(op.execute, FILES)


def downgrade() -> None:
    raise NotImplementedError("0010 re-keys the tables of an account's rows; restore from a backup instead")
