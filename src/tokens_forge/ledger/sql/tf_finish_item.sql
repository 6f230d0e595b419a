-- One attempt that finishes, as tf_write_batch takes it (a jsonb object with these names). What is
-- charged was decided by guard.money: `charge` never exceeds the hold; `overage` is what the
-- upstream billed beyond it. `status` is set by the sweeper ('expired'); without it a hold with a
-- charge or a success is 'settled', else 'voided'. `record` false: the attempt and the receipt's
-- status are left as they are (ledger tests; the receipt's total still adds the charge).
-- `final_status` closes the receipt.
CREATE TYPE tf_finish_item AS (
    hold_id BIGINT, charge BIGINT, overage BIGINT, kind TEXT, status TEXT, record BOOLEAN,
    outcome TEXT, upstream_status INTEGER, prompt_tokens BIGINT, completion_tokens BIGINT,
    charge_rule TEXT, reason TEXT, error TEXT, latency_ms INTEGER,
    final_status TEXT, final_reason TEXT, final_code TEXT, usage_estimated BOOLEAN, route_kind TEXT, bucket TEXT
);
