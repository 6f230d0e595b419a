"""The usage and failure records: one SQL statement each, newest first, keyset-paged on
(created_at, sort id). The same statement feeds the JSON list, the streaming exports, the
summaries (per day, key, model) and the console's chart, so every view sums the same rows.

Money comes from the ledger's own rows (`records.charges.CHARGE_TRANSFERS`), never from a
receipt's header: usage has one row per receipt and paying bucket, so a request whose failed
attempt was charged on `credit` and whose fallback succeeded on `routed` is two rows, and usage
summed by bucket equals the ledger by bucket to the micro."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from tokens_forge.errors import InvalidRequest
from tokens_forge.records.charges import CHARGE_TRANSFERS
from tokens_forge.records.filters import RecordFilters

USAGE_COLUMNS = ["receipt_id", "created_at", "model", "route_kind", "bucket", "status", "prompt_tokens",
                 "completion_tokens", "charged_micros", "run_id", "key_id", "project_id", "attempts",
                 "usage_estimated", "reason"]
FAILURE_COLUMNS = ["receipt_id", "attempt", "created_at", "route_id", "route_kind", "outcome", "upstream_status",
                   "charged_micros", "reason", "model", "run_id", "error", "bucket", "key_id"]
USAGE_STATUSES = ("pending", "succeeded", "failed", "cancelled", "rejected")
FAILURE_OUTCOMES = ("timeout", "connect_error", "upstream_error", "cancelled", "rejected")

_COMMON = """
   AND (CAST(:a AS TEXT) IS NULL OR {t}.account_id = :a)
   AND (CAST(:since AS TIMESTAMPTZ) IS NULL OR {ts} >= :since)
   AND (CAST(:until AS TIMESTAMPTZ) IS NULL OR {ts} < :until)
   AND (CAST(:model AS TEXT) IS NULL OR {model} = :model)
   AND (CAST(:run AS TEXT) IS NULL OR {run} = :run)
   AND (CAST(:key AS TEXT) IS NULL OR {key} = :key)
"""
_KIND_BUCKET = """
   AND (CAST(:kind AS TEXT) IS NULL OR {kind} = :kind)
   AND (CAST(:bucket AS TEXT) IS NULL OR {bucket} = :bucket)
"""
_KIND_OF_BUCKET = "CASE u.bucket WHEN 'credit' THEN 'official' WHEN 'routed' THEN 'routed' END"

# Per receipt, one row per bucket that the ledger charged or whose attempts reported tokens, plus
# the receipt's own bucket (so a request that cost nothing, or was refused before a route was
# chosen, still has its one row). Set-based: the receipts are chosen first (through their
# (account, created_at, id) index, newest first, at most {receipt_limit} of them for a page), then
# their charges and attempts are summed per bucket in one pass each. A page needs no more receipts
# than rows (each has at least one row) plus the one the cursor stops inside; a bucket or kind
# filter may drop receipts' rows, so then every receipt of the other filters is read.
USAGE_SQL = """
WITH rr AS (
  SELECT r.* FROM receipts r
   WHERE true""" + _COMMON.format(t="r", ts="r.created_at", model="r.model", run="r.run_id", key="r.key_id") + """
     AND (CAST(:status AS TEXT) IS NULL OR r.status = :status)
     AND (CAST(:c_at AS TIMESTAMPTZ) IS NULL OR (r.created_at, r.id) <= (:c_at, split_part(:c_id, '#', 1)))
   ORDER BY r.created_at DESC, r.id DESC {receipt_limit}),
u AS (
  SELECT x.receipt_id, x.bucket, sum(x.charged)::bigint AS charged_micros, sum(x.pt)::bigint AS prompt_tokens,
         sum(x.ct)::bigint AS completion_tokens, sum(x.n)::int AS attempts
    FROM (SELECT c.receipt_id, c.bucket, c.amount AS charged, 0 AS pt, 0 AS ct, 0 AS n
            FROM (""" + CHARGE_TRANSFERS + """) c JOIN rr ON rr.id = c.receipt_id AND rr.account_id = c.account_id
          UNION ALL
          SELECT a.receipt_id, a.bucket, 0, a.prompt_tokens, a.completion_tokens, 1
            FROM attempts a JOIN rr ON rr.id = a.receipt_id AND rr.account_id = a.account_id
          UNION ALL
          SELECT rr.id, rr.bucket, 0, 0, 0, 0 FROM rr) x
   GROUP BY x.receipt_id, x.bucket)
SELECT r.id AS receipt_id, r.created_at, r.model, """ + _KIND_OF_BUCKET + """ AS route_kind, u.bucket,
       r.status, u.prompt_tokens, u.completion_tokens, u.charged_micros, r.run_id, r.key_id, r.project_id,
       u.attempts, r.usage_estimated, r.reason, r.id || '#' || coalesce(u.bucket, '') AS sort_id
  FROM rr r JOIN u ON u.receipt_id = r.id
 WHERE (u.bucket IS NOT DISTINCT FROM r.bucket OR u.charged_micros > 0 OR u.prompt_tokens + u.completion_tokens > 0)
""" + _KIND_BUCKET.format(kind=_KIND_OF_BUCKET, bucket="u.bucket") + """
   AND (CAST(:c_at AS TIMESTAMPTZ) IS NULL OR (r.created_at, r.id || '#' || coalesce(u.bucket, '')) < (:c_at, :c_id))
 ORDER BY r.created_at DESC, sort_id DESC"""

# Failed attempts (charged what the ledger posted for each), and refused requests (which charge
# nothing), as one list.
FAILURES_SQL = """
SELECT * FROM (
  SELECT a.receipt_id, a.attempt_no AS attempt, a.started_at AS created_at, a.route_id, a.route_kind,
         a.outcome, a.upstream_status, coalesce(c.charged, 0)::bigint AS charged_micros, a.charge_reason AS reason,
         r.model, r.run_id, a.error, a.bucket, r.key_id,
         a.receipt_id || '#' || lpad(a.attempt_no::text, 4, '0') AS sort_id
    FROM attempts a JOIN receipts r ON r.id = a.receipt_id
    LEFT JOIN LATERAL (SELECT sum(ct.amount) AS charged FROM (""" + CHARGE_TRANSFERS + """) ct
                        WHERE ct.account_id = a.account_id AND ct.receipt_id = a.receipt_id
                          AND ct.attempt_no = a.attempt_no) c ON true
   WHERE a.outcome IS NOT NULL AND a.outcome <> 'success'""" + _COMMON.format(
    t="a", ts="a.started_at", model="r.model", run="r.run_id", key="r.key_id") + _KIND_BUCKET.format(
    kind="a.route_kind", bucket="a.bucket") + """
  UNION ALL
  SELECT r.id, NULL, r.created_at, NULL, r.route_kind, 'rejected', NULL, 0, r.reason, r.model, r.run_id,
         r.error_code, r.bucket, r.key_id, r.id || '#0000'
    FROM receipts r
   WHERE r.status = 'rejected'""" + _COMMON.format(
    t="r", ts="r.created_at", model="r.model", run="r.run_id", key="r.key_id") + _KIND_BUCKET.format(
    kind="r.route_kind", bucket="r.bucket") + """
) f
 WHERE (CAST(:status AS TEXT) IS NULL OR f.outcome = :status)
   AND (CAST(:c_at AS TIMESTAMPTZ) IS NULL OR (f.created_at, f.sort_id) < (:c_at, :c_id))
 ORDER BY f.created_at DESC, f.sort_id DESC"""

# What a summary groups the usage rows by (each group is split by bucket as well).
SUMMARY_GROUPS = {
    "day": "to_char((u.created_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')",
    "key": "u.key_id",
    "model": "u.model",
    "project": "u.project_id",
    "bucket": "u.bucket",
}
SUMMARY_COLUMNS = ["group", "bucket", "requests", "prompt_tokens", "completion_tokens", "charged_micros"]


def statement(sql: str, filters: RecordFilters, cursor: tuple[datetime, str] | None, limit: int | None):
    params = filters.params()
    params.update({"c_at": cursor[0] if cursor else None, "c_id": cursor[1] if cursor else ""})
    if "{receipt_limit}" in sql:
        pre = limit is not None and filters.route_kind is None and filters.bucket is None
        sql = sql.replace("{receipt_limit}", "LIMIT :receipt_limit" if pre else "")
        if pre and limit is not None:
            params["receipt_limit"] = limit + 1
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return text(sql), params


def summary_statement(filters: RecordFilters, by: str):
    """The usage rows summed per `by` group and bucket (largest charge first)."""
    if by not in SUMMARY_GROUPS:
        raise InvalidRequest(f"by must be one of {', '.join(SUMMARY_GROUPS)}", param="by")
    usage, params = statement(USAGE_SQL, filters, None, None)
    return text(f"""
        SELECT {SUMMARY_GROUPS[by]} AS "group", u.bucket, count(*) AS requests,
               sum(u.prompt_tokens)::bigint AS prompt_tokens, sum(u.completion_tokens)::bigint AS completion_tokens,
               sum(u.charged_micros)::bigint AS charged_micros
          FROM ({usage.text}) u
         GROUP BY 1, 2
         ORDER BY sum(u.charged_micros) DESC, 1, 2"""), params


def row_out(row, columns: list[str]) -> dict:
    m = row._mapping
    out = {}
    for c in columns:
        v = m[c]
        out[c] = v.isoformat() if isinstance(v, datetime) else v
    return out
