"""The database side of one request's story: one statement per phase, over the hot-path asyncpg
pool, through the worker's group commit (pipeline.group_commit) when there is one:

1. open: the receipt, a reservation and its attempt row (tf_open_attempt), or a `rejected`
   receipt when nothing else will be tried;
2. finish: resolve the attempt's hold (settle, failure charge or void), record its outcome and
   add its charge to the receipt, closing the receipt with the last attempt (tf_finish_attempt).

No transaction spans the upstream call."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from tokens_forge.guard.service import Reservation
from tokens_forge.pipeline.group_commit import FINISH_ONE, OPEN_ONE, LedgerWriter
from tokens_forge.routing.cache import RouteInfo


@dataclass(frozen=True)
class ReceiptHead:
    id: str
    account_id: str
    project_id: str
    key_id: str
    run_id: str | None
    model: str
    stream: bool
    idempotency_key: str | None = None


@dataclass
class AttemptEnd:
    outcome: str                  # success | timeout | connect_error | upstream_error | cancelled
    charge: int                   # what to charge (capped at the hold by the ledger)
    charge_kind: str              # settle | failure_charge
    charge_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    upstream_status: int | None = None
    latency_ms: int | None = None
    error: str | None = None


@dataclass
class ReceiptEnd:
    status: str                   # succeeded | failed | cancelled
    reason: str | None = None
    error_code: str | None = None
    usage_estimated: bool = False


async def open_attempt(pg: asyncpg.Pool, head: ReceiptHead, route: RouteInfo, attempt_no: int, amount: int,
                       ttl_s: float, *, create: bool, reject: bool,
                       writer: LedgerWriter | None = None) -> Reservation:
    item = (head.id, create, head.account_id, head.project_id, head.key_id, head.run_id, head.model, head.stream,
            head.idempotency_key, route.id, route.kind, route.bucket, route.price_snapshot_id, attempt_no, amount,
            float(ttl_s), reject)
    row = await pg.fetchrow(OPEN_ONE, *item) if writer is None else await writer.open(pg, item)
    return Reservation(row["hold_id"], None, row["refused_scope"], int(row["remaining"] or 0))


async def explain_rejection(pg: asyncpg.Pool, receipt_id: str, reason: str) -> None:
    await pg.execute("UPDATE receipts SET reason = $2 WHERE id = $1 AND status = 'rejected'", receipt_id, reason)


async def finish_attempt(pg: asyncpg.Pool, head: ReceiptHead, route: RouteInfo, attempt_no: int, hold_id: int,
                         end: AttemptEnd, final: ReceiptEnd | None, *, durable: bool = True,
                         writer: LedgerWriter | None = None) -> int:
    """Returns what was actually charged (0 when the sweeper had already released the hold).
    `durable=False` lets the commit skip the WAL flush wait (see tf_finish_attempt); through a
    writer, its own setting decides."""
    f = final or ReceiptEnd(status="")
    item = (hold_id, end.charge, end.charge_kind, head.id, attempt_no, end.outcome, end.upstream_status,
            end.prompt_tokens, end.completion_tokens, end.charge_reason, end.error, end.latency_ms,
            final.status if final else None, f.reason, f.error_code, f.usage_estimated, route.kind, route.bucket)
    row = await pg.fetchrow(FINISH_ONE, *item, durable) if writer is None else await writer.finish(pg, item)
    return int(row["charged"])


async def close_receipt(pg: asyncpg.Pool, receipt_id: str, final: ReceiptEnd) -> None:
    """Close a receipt whose last attempt was already finished (a refused fallback, a passthrough)."""
    await pg.execute("""
        UPDATE receipts SET status = CASE WHEN status = 'pending' THEN $2 ELSE status END,
               reason = coalesce($3, reason), error_code = $4, completed_at = clock_timestamp()
         WHERE id = $1""", receipt_id, final.status, final.reason, final.error_code)


async def extend_hold(pg: asyncpg.Pool, hold_id: int, ttl_s: float) -> None:
    """A long stream keeps its hold alive so the sweeper never voids a live request."""
    await pg.execute("UPDATE holds SET expires_at = now() + make_interval(secs => $2) WHERE id = $1 AND status = 'open'",
                     hold_id, ttl_s)
