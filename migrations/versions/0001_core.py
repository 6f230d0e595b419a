"""Core schema: tenants, keys, routes, prices, the ledger, holds, spend counters, receipts, runs,
idempotency, audit.

Invariants are stated by the schema itself:
- money is BIGINT micros; ledger totals are never negative; an account that may not overdraw
  says so with `no_overdraft` and a CHECK;
- a transfer moves a positive amount between two different accounts and never changes
  (trigger); a price snapshot and an audit row never change either;
- a hold is resolved exactly once (`holds.status` moves from 'open' once, under a conditional
  UPDATE) and a hold transfer of each kind exists at most once per hold and debit account;
- the ledger's functions are not here: each lives in its own file under ledger/sql/, applied by
  revision 0006 (their first definitions are in git history);
- a top-up reference is unique per account, so a repeated top-up cannot post twice.

Revision ID: 0001
Revises:
"""
from alembic import op

from tokens_forge.db import sqlfiles
from tokens_forge.db.sql import run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY CHECK (id LIKE 'acct\\_%'),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id                  TEXT PRIMARY KEY CHECK (id LIKE 'proj\\_%'),
    account_id          TEXT NOT NULL REFERENCES accounts(id),
    name                TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    daily_limit_micros  BIGINT CHECK (daily_limit_micros >= 0),
    total_limit_micros  BIGINT CHECK (total_limit_micros >= 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX projects_account ON projects (account_id, created_at);

CREATE TABLE api_keys (
    id                        TEXT PRIMARY KEY CHECK (id LIKE 'key\\_%'),
    account_id                TEXT NOT NULL REFERENCES accounts(id),
    project_id                TEXT NOT NULL REFERENCES projects(id),
    name                      TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    secret_hash               TEXT NOT NULL UNIQUE,
    prefix                    TEXT NOT NULL,
    daily_limit_micros        BIGINT CHECK (daily_limit_micros >= 0),
    total_limit_micros        BIGINT CHECK (total_limit_micros >= 0),
    per_request_limit_micros  BIGINT CHECK (per_request_limit_micros >= 0),
    min_balance_micros        BIGINT NOT NULL DEFAULT 0 CHECK (min_balance_micros >= 0),
    allowed_models            TEXT[],
    allowed_route_kinds       TEXT[] NOT NULL DEFAULT ARRAY['official','routed']
                              CHECK (allowed_route_kinds <@ ARRAY['official','routed']),
    retry_policy              JSONB NOT NULL,
    fallback_policy           TEXT NOT NULL DEFAULT 'none'
                              CHECK (fallback_policy IN ('none','same_bucket','any_bucket')),
    status                    TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active','revoked')),
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at                TIMESTAMPTZ,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX api_keys_account ON api_keys (account_id, created_at);

CREATE TABLE routes (
    id                         TEXT PRIMARY KEY CHECK (id LIKE 'route\\_%'),
    model                      TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    kind                       TEXT NOT NULL CHECK (kind IN ('official','routed')),
    base_url                   TEXT NOT NULL CHECK (base_url ~ '^https?://'),
    upstream_model             TEXT NOT NULL CHECK (length(upstream_model) BETWEEN 1 AND 200),
    -- write-only: the API never returns it; config routes name an environment variable instead
    upstream_api_key           TEXT,
    upstream_api_key_env       TEXT,
    price_snapshot_id          TEXT,
    failed_charge_mode         TEXT NOT NULL DEFAULT 'none'
                               CHECK (failed_charge_mode IN ('none','input_tokens','flat')),
    failed_charge_flat_micros  BIGINT NOT NULL DEFAULT 0 CHECK (failed_charge_flat_micros >= 0),
    timeout_s                  DOUBLE PRECISION NOT NULL DEFAULT 60 CHECK (timeout_s > 0 AND timeout_s <= 3600),
    priority                   INTEGER NOT NULL DEFAULT 100,
    enabled                    BOOLEAN NOT NULL DEFAULT true,
    config_name                TEXT UNIQUE,
    created_at                 TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                 TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX routes_model ON routes (model, priority);

CREATE TABLE price_snapshots (
    id               TEXT PRIMARY KEY CHECK (id LIKE 'price\\_%'),
    route_id         TEXT NOT NULL REFERENCES routes(id),
    input_per_mtok   BIGINT NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok  BIGINT NOT NULL CHECK (output_per_mtok >= 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX price_snapshots_route ON price_snapshots (route_id, created_at);
ALTER TABLE routes ADD CONSTRAINT routes_price_snapshot_fk
    FOREIGN KEY (price_snapshot_id) REFERENCES price_snapshots(id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE runs (
    id                TEXT PRIMARY KEY CHECK (id LIKE 'run\\_%'),
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    project_id        TEXT NOT NULL REFERENCES projects(id),
    key_id            TEXT NOT NULL REFERENCES api_keys(id),
    name              TEXT,
    model             TEXT NOT NULL,
    mode              TEXT NOT NULL CHECK (mode IN ('quick','standard','deep')),
    budget_micros     BIGINT NOT NULL CHECK (budget_micros >= 0),
    route_preference  TEXT NOT NULL DEFAULT 'auto' CHECK (route_preference IN ('official','routed','auto')),
    status            TEXT NOT NULL DEFAULT 'ready'
                      CHECK (status IN ('ready','running','paused','cancelled','finished','budget_exhausted')),
    preflight         JSONB NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_activity_at  TIMESTAMPTZ
);
CREATE INDEX runs_account ON runs (account_id, created_at DESC);

CREATE TABLE ledger_accounts (
    id              BIGSERIAL PRIMARY KEY,
    code            TEXT NOT NULL UNIQUE,
    account_id      TEXT REFERENCES accounts(id),
    kind            TEXT NOT NULL CHECK (kind IN ('wallet','hold','revenue','funding','overage')),
    bucket          TEXT CHECK (bucket IN ('credit','routed')),
    debits_posted   BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted  BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    no_overdraft    BOOLEAN NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT ledger_accounts_no_overdraft CHECK (NOT no_overdraft OR credits_posted >= debits_posted),
    CHECK ((kind IN ('wallet','hold')) = (account_id IS NOT NULL AND bucket IS NOT NULL))
);

CREATE TABLE spend_counters (
    id              BIGSERIAL PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    scope           TEXT NOT NULL CHECK (scope IN ('key_daily','key_total','project_daily','project_total','run')),
    owner_id        TEXT NOT NULL,
    period          TEXT NOT NULL,  -- 'total' or the UTC day 'YYYY-MM-DD'
    pending_micros  BIGINT NOT NULL DEFAULT 0 CHECK (pending_micros >= 0),
    posted_micros   BIGINT NOT NULL DEFAULT 0 CHECK (posted_micros >= 0),
    UNIQUE (scope, owner_id, period)
);

CREATE TABLE receipts (
    id                    TEXT PRIMARY KEY CHECK (id LIKE 'rcpt\\_%'),
    account_id            TEXT NOT NULL REFERENCES accounts(id),
    project_id            TEXT NOT NULL REFERENCES projects(id),
    key_id                TEXT NOT NULL REFERENCES api_keys(id),
    run_id                TEXT REFERENCES runs(id),
    model                 TEXT NOT NULL,
    stream                BOOLEAN NOT NULL DEFAULT false,
    status                TEXT NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending','succeeded','failed','cancelled','rejected')),
    reason                TEXT,
    error_code            TEXT,
    usage_estimated       BOOLEAN NOT NULL DEFAULT false,
    route_kind            TEXT,
    bucket                TEXT,
    prompt_tokens         INTEGER NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens     INTEGER NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    total_charged_micros  BIGINT NOT NULL DEFAULT 0 CHECK (total_charged_micros >= 0),
    idempotency_key       TEXT,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    completed_at          TIMESTAMPTZ
);
CREATE INDEX receipts_account_created ON receipts (account_id, created_at DESC, id DESC);
CREATE INDEX receipts_run ON receipts (run_id, created_at) WHERE run_id IS NOT NULL;
CREATE INDEX receipts_pending ON receipts (created_at) WHERE status = 'pending';

CREATE TABLE holds (
    id           BIGSERIAL PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    bucket       TEXT NOT NULL CHECK (bucket IN ('credit','routed')),
    amount       BIGINT NOT NULL CHECK (amount >= 0),
    status       TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open','settled','voided','expired')),
    charged      BIGINT CHECK (charged >= 0 AND charged <= amount),
    counter_ids  BIGINT[] NOT NULL,
    receipt_id   TEXT NOT NULL REFERENCES receipts(id),
    attempt_no   INTEGER NOT NULL,
    run_id       TEXT,
    expires_at   TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at  TIMESTAMPTZ,
    CHECK ((status = 'open') = (resolved_at IS NULL)),
    CHECK ((status = 'open') = (charged IS NULL))
);
CREATE INDEX holds_open_expiry ON holds (expires_at) WHERE status = 'open';
CREATE INDEX holds_receipt ON holds (receipt_id);

CREATE TABLE transfers (
    id                 BIGSERIAL PRIMARY KEY,
    debit_account_id   BIGINT NOT NULL REFERENCES ledger_accounts(id),
    credit_account_id  BIGINT NOT NULL REFERENCES ledger_accounts(id),
    amount             BIGINT NOT NULL CHECK (amount > 0),
    kind               TEXT NOT NULL
                       CHECK (kind IN ('topup','adjustment','reserve','settle','release','failure_charge')),
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    bucket             TEXT NOT NULL CHECK (bucket IN ('credit','routed')),
    hold_id            BIGINT REFERENCES holds(id),
    receipt_id         TEXT,
    attempt_no         INTEGER,
    run_id             TEXT,
    reference          TEXT,
    reason             TEXT,
    -- each side's balance (credits - debits) right after this transfer: running balances for free
    debit_balance_after   BIGINT NOT NULL,
    credit_balance_after  BIGINT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind IN ('reserve','settle','release','failure_charge')) = (hold_id IS NOT NULL)),
    CHECK (kind <> 'topup' OR reference IS NOT NULL)
);
CREATE UNIQUE INDEX transfers_topup_reference ON transfers (account_id, reference) WHERE kind = 'topup';
CREATE UNIQUE INDEX transfers_hold_once ON transfers (hold_id, kind, debit_account_id) WHERE hold_id IS NOT NULL;
CREATE INDEX transfers_account ON transfers (account_id, id);
CREATE INDEX transfers_receipt ON transfers (receipt_id) WHERE receipt_id IS NOT NULL;
CREATE INDEX transfers_run ON transfers (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE attempts (
    receipt_id         TEXT NOT NULL REFERENCES receipts(id),
    attempt_no         INTEGER NOT NULL CHECK (attempt_no >= 1),
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    route_id           TEXT NOT NULL REFERENCES routes(id),
    route_kind         TEXT NOT NULL,
    bucket             TEXT NOT NULL,
    price_snapshot_id  TEXT NOT NULL REFERENCES price_snapshots(id),
    hold_id            BIGINT REFERENCES holds(id),
    started_at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    ended_at           TIMESTAMPTZ,
    outcome            TEXT CHECK (outcome IN ('success','timeout','connect_error','upstream_error','cancelled')),
    upstream_status    INTEGER,
    latency_ms         INTEGER,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    reserved_micros    BIGINT NOT NULL CHECK (reserved_micros >= 0),
    charged_micros     BIGINT NOT NULL DEFAULT 0 CHECK (charged_micros >= 0),
    charge_reason      TEXT,
    error              TEXT,
    PRIMARY KEY (receipt_id, attempt_no)
);
CREATE INDEX attempts_account_failed ON attempts (account_id, started_at DESC)
    WHERE outcome IS NOT NULL AND outcome <> 'success';
CREATE INDEX attempts_route_recent ON attempts (route_id, started_at DESC);

CREATE TABLE idempotency_keys (
    key_id            TEXT NOT NULL REFERENCES api_keys(id),
    idempotency_key   TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    fingerprint       TEXT NOT NULL,
    receipt_id        TEXT,
    status            TEXT NOT NULL DEFAULT 'in_progress' CHECK (status IN ('in_progress','done')),
    response_status   INTEGER,
    response_headers  JSONB,
    response_body     BYTEA,
    locked_until      TIMESTAMPTZ NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at        TIMESTAMPTZ NOT NULL DEFAULT now() + interval '48 hours',
    PRIMARY KEY (key_id, idempotency_key)
);

CREATE TABLE audit_log (
    id           BIGSERIAL PRIMARY KEY,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    before       JSONB,
    after        JSONB,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id);

INSERT INTO ledger_accounts (code, kind, no_overdraft) VALUES
    ('funding', 'funding', false),
    ('revenue:official', 'revenue', false),
    ('revenue:routed', 'revenue', false),
    ('overage', 'overage', false);
"""

TRIGGERS = """
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION tf_forbid_change();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION tf_forbid_change();
CREATE TRIGGER price_snapshots_immutable BEFORE UPDATE OR DELETE ON price_snapshots
    FOR EACH ROW EXECUTE FUNCTION tf_forbid_change();
"""


def upgrade() -> None:
    run_script(op.execute, TABLES)
    # the append-only triggers need their function now (its one home: ledger/sql/tf_forbid_change.sql)
    sqlfiles.apply_one(op.execute, "tf_forbid_change")
    run_script(op.execute, TRIGGERS)


def downgrade() -> None:
    run_script(op.execute, """
        DROP FUNCTION IF EXISTS tf_resolve, tf_reserve, tf_post, tf_forbid_change CASCADE;
        DROP TABLE IF EXISTS audit_log, idempotency_keys, attempts, transfers, holds, receipts,
            spend_counters, ledger_accounts, runs, price_snapshots, routes, api_keys, projects,
            accounts CASCADE;
        """)
