"""The usage and failure records: one SQL statement each, newest first, keyset-paged on
(created_at, id). The same statement feeds the JSON list and the streaming exports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from tokens_forge.records.filters import RecordFilters

USAGE_COLUMNS = ["receipt_id", "created_at", "model", "route_kind", "bucket", "status", "prompt_tokens",
                 "completion_tokens", "charged_micros", "run_id", "key_id", "project_id", "usage_estimated",
                 "reason"]
FAILURE_COLUMNS = ["receipt_id", "attempt", "created_at", "route_id", "route_kind", "outcome", "upstream_status",
                   "charged_micros", "reason", "model", "run_id", "error", "bucket"]
USAGE_STATUSES = ("pending", "succeeded", "failed", "cancelled", "rejected")
FAILURE_OUTCOMES = ("timeout", "connect_error", "upstream_error", "cancelled", "rejected")

_COMMON = """
   AND (CAST(:a AS TEXT) IS NULL OR {t}.account_id = :a)
   AND (CAST(:since AS TIMESTAMPTZ) IS NULL OR {ts} >= :since)
   AND (CAST(:until AS TIMESTAMPTZ) IS NULL OR {ts} < :until)
   AND (CAST(:model AS TEXT) IS NULL OR {model} = :model)
   AND (CAST(:kind AS TEXT) IS NULL OR {kind} = :kind)
   AND (CAST(:bucket AS TEXT) IS NULL OR {bucket} = :bucket)
   AND (CAST(:run AS TEXT) IS NULL OR {run} = :run)
"""

USAGE_SQL = """
SELECT r.id AS receipt_id, r.created_at, r.model, r.route_kind, r.bucket, r.status, r.prompt_tokens,
       r.completion_tokens, r.total_charged_micros AS charged_micros, r.run_id, r.key_id, r.project_id,
       r.usage_estimated, r.reason, r.id AS sort_id
  FROM receipts r
 WHERE true""" + _COMMON.format(t="r", ts="r.created_at", model="r.model", kind="r.route_kind",
                                bucket="r.bucket", run="r.run_id") + """
   AND (CAST(:status AS TEXT) IS NULL OR r.status = :status)
   AND (CAST(:c_at AS TIMESTAMPTZ) IS NULL OR (r.created_at, r.id) < (:c_at, :c_id))
 ORDER BY r.created_at DESC, r.id DESC"""

# Failed attempts, and refused requests (which have no attempt), as one list.
FAILURES_SQL = """
SELECT * FROM (
  SELECT a.receipt_id, a.attempt_no AS attempt, a.started_at AS created_at, a.route_id, a.route_kind,
         a.outcome, a.upstream_status, a.charged_micros, a.charge_reason AS reason, r.model, r.run_id,
         a.error, a.bucket, a.receipt_id || '#' || lpad(a.attempt_no::text, 4, '0') AS sort_id
    FROM attempts a JOIN receipts r ON r.id = a.receipt_id
   WHERE a.outcome IS NOT NULL AND a.outcome <> 'success'""" + _COMMON.format(
    t="a", ts="a.started_at", model="r.model", kind="a.route_kind", bucket="a.bucket", run="r.run_id") + """
  UNION ALL
  SELECT r.id, NULL, r.created_at, NULL, r.route_kind, 'rejected', NULL, 0, r.reason, r.model, r.run_id,
         r.error_code, r.bucket, r.id || '#0000'
    FROM receipts r
   WHERE r.status = 'rejected'""" + _COMMON.format(
    t="r", ts="r.created_at", model="r.model", kind="r.route_kind", bucket="r.bucket", run="r.run_id") + """
) f
 WHERE (CAST(:status AS TEXT) IS NULL OR f.outcome = :status)
   AND (CAST(:c_at AS TIMESTAMPTZ) IS NULL OR (f.created_at, f.sort_id) < (:c_at, :c_id))
 ORDER BY f.created_at DESC, f.sort_id DESC"""


def statement(sql: str, filters: RecordFilters, cursor: tuple[datetime, str] | None, limit: int | None):
    params = filters.params()
    params.update({"c_at": cursor[0] if cursor else None, "c_id": cursor[1] if cursor else ""})
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return text(sql), params


def row_out(row, columns: list[str]) -> dict:
    m = row._mapping
    out = {}
    for c in columns:
        v = m[c]
        out[c] = v.isoformat() if isinstance(v, datetime) else v
    return out
