-- One attempt that opens, as tf_write_batch takes it (a jsonb object with these names): its
-- receipt (`create` on the first attempt), the reservation of `amount` on `bucket`, and its
-- attempt row (none without a route: ledger tests). `owner_id` is the gateway worker that owns the
-- hold; `ttl_s` bounds a hold that has no owner. `reject`: nothing else will be tried, so a refusal
-- closes the receipt `rejected`. `endpoint`: the client endpoint of the receipt (NULL: chat_completions).
-- `rate_tokens`: what a first attempt counts against its key's tokens_per_minute (keys/rate_limits.py).
CREATE TYPE tf_open_item AS (
    receipt_id TEXT, "create" BOOLEAN, account_id TEXT, project_id TEXT, key_id TEXT, run_id TEXT,
    model TEXT, stream BOOLEAN, idempotency_key TEXT, route_id TEXT, route_kind TEXT, bucket TEXT,
    price_snapshot_id TEXT, attempt_no INTEGER, amount BIGINT, ttl_s DOUBLE PRECISION, owner_id TEXT,
    reject BOOLEAN, endpoint TEXT, rate_tokens BIGINT
);
