"""Receipts as users see them: one per client request, with every attempt and the ids of the
ledger transfers each attempt wrote. Read from the same rows the ledger verifier checks: what
each bucket paid (`charged_by_bucket`) is summed from the ledger's charge transfers
(`records.charges`), so a request paid from two buckets says so in its header."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tokens_forge.errors import NotFound
from tokens_forge.records.charges import is_charge
from tokens_forge.records.filters import BUCKETS


def _iso(v):
    return v.isoformat() if v is not None else None


async def get_receipt(conn: AsyncSession | AsyncConnection, receipt_id: str, account_id: str | None) -> dict:
    """account_id scopes the lookup to one tenant (None: admin, any account). Another tenant's
    receipt is indistinguishable from a missing one."""
    views = await receipts_view(conn, [receipt_id], account_id)
    if not views:
        raise NotFound(f"receipt {receipt_id!r} does not exist", param="receipt_id")
    return views[0]


async def receipts_view(conn: AsyncSession | AsyncConnection, receipt_ids: list[str],
                        account_id: str | None) -> list[dict]:
    rows = (await conn.execute(text("""
        SELECT * FROM receipts WHERE id = ANY(:ids) AND (CAST(:a AS TEXT) IS NULL OR account_id = :a)
         ORDER BY created_at, id"""), {"ids": receipt_ids, "a": account_id})).mappings().all()
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    attempts = (await conn.execute(text("""
        SELECT a.*, p.input_per_mtok, p.output_per_mtok FROM attempts a
          JOIN price_snapshots p ON p.id = a.price_snapshot_id
         WHERE a.receipt_id = ANY(:ids) ORDER BY a.receipt_id, a.attempt_no"""), {"ids": ids})).mappings().all()
    transfers = (await conn.execute(text("""
        SELECT t.id, t.receipt_id, t.attempt_no, t.kind, t.amount, t.bucket, la.kind AS debit_side
          FROM transfers t JOIN ledger_accounts la ON la.id = t.debit_account_id
         WHERE t.receipt_id = ANY(:ids) ORDER BY t.id"""), {"ids": ids})).mappings().all()
    by_attempt: dict[tuple[str, int], list[str]] = defaultdict(list)
    charged: dict[str, dict[str, int]] = defaultdict(dict)
    for t in transfers:
        by_attempt[(t["receipt_id"], t["attempt_no"])].append(f"tr_{t['id']}")
        if is_charge(t["kind"], t["debit_side"]):
            per_bucket = charged[t["receipt_id"]]
            per_bucket[t["bucket"]] = per_bucket.get(t["bucket"], 0) + int(t["amount"])
    attempts_by_receipt: dict[str, list[dict]] = defaultdict(list)
    for a in attempts:
        attempts_by_receipt[a["receipt_id"]].append(attempt_out(a, by_attempt[(a["receipt_id"], a["attempt_no"])]))
    return [receipt_out(r, attempts_by_receipt[r["id"]], charged[r["id"]]) for r in rows]


def attempt_out(a, transfer_ids: list[str]) -> dict:
    return {
        "number": a["attempt_no"], "route_id": a["route_id"], "route_kind": a["route_kind"],
        "bucket": a["bucket"], "price_snapshot_id": a["price_snapshot_id"],
        "price": {"input_per_mtok": a["input_per_mtok"], "output_per_mtok": a["output_per_mtok"]},
        "started_at": _iso(a["started_at"]), "ended_at": _iso(a["ended_at"]), "outcome": a["outcome"],
        "upstream_status": a["upstream_status"], "latency_ms": a["latency_ms"],
        "prompt_tokens": a["prompt_tokens"], "completion_tokens": a["completion_tokens"],
        "reserved_micros": a["reserved_micros"], "charged_micros": a["charged_micros"],
        "charge_rule": a["charge_rule"], "overage_micros": a["overage_micros"], "charge_reason": a["charge_reason"], "error": a["error"], "transfer_ids": transfer_ids,
    }


def receipt_out(r, attempts: list[dict], charged_by_bucket: dict[str, int]) -> dict:
    return {
        "id": r["id"], "object": "receipt", "account_id": r["account_id"], "project_id": r["project_id"],
        "key_id": r["key_id"], "run_id": r["run_id"], "model": r["model"], "endpoint": r["endpoint"],
        "stream": r["stream"],
        "status": r["status"], "reason": r["reason"], "error_code": r["error_code"],
        "usage_estimated": r["usage_estimated"], "route_kind": r["route_kind"], "bucket": r["bucket"],
        "prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
        "total_reserved_micros": sum(a["reserved_micros"] for a in attempts),
        "total_charged_micros": r["total_charged_micros"],
        "charged_by_bucket": {b: charged_by_bucket.get(b, 0) for b in BUCKETS},
        "created_at": _iso(r["created_at"]), "completed_at": _iso(r["completed_at"]),
        "attempts": attempts,
    }
