"""The ledger side of one request's story: one statement per phase, over the hot-path asyncpg
pool, through the worker's group commit (ledger.writer) when there is one:

1. open: the receipt, a reservation and its attempt row, or a `rejected` receipt when nothing
   else will be tried;
2. finish: resolve the attempt's hold with the charge decided by guard.money (settle, failure
   charge or void), record its outcome and add its charge to the receipt, closing the receipt
   with the last attempt.

No transaction spans the upstream call."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from tokens_forge.guard.money import Charge
from tokens_forge.guard.service import Reservation
from tokens_forge.keys import rate_limits
from tokens_forge.ledger.writer import LedgerWriter, write_once
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
    endpoint: str = "chat_completions"  # the client endpoint the receipt answers


@dataclass(frozen=True)
class AttemptEnd:
    outcome: str                  # success | timeout | connect_error | upstream_error | cancelled
    charge: Charge                # decided by guard.money
    upstream_status: int | None = None
    latency_ms: int | None = None
    error: str | None = None

    @property
    def transfer_kind(self) -> str:
        return "failure_charge" if self.charge.rule == "failed_request_charge" else "settle"


@dataclass(frozen=True)
class ReceiptEnd:
    status: str                   # succeeded | failed | cancelled
    reason: str | None = None
    error_code: str | None = None
    usage_estimated: bool = False


async def open_attempt(pg: asyncpg.Pool, head: ReceiptHead, route: RouteInfo, attempt_no: int, amount: int,
                       ttl_s: float, *, create: bool, reject: bool, owner_id: str | None = None,
                       writer: LedgerWriter | None = None, rate_tokens: int = 0) -> Reservation:
    """Reserve `amount` for the attempt (and write its receipt when `create`). `owner_id`: the
    gateway worker that owns the hold (it lives as long as that worker). The first attempt
    (`create`) counts against the key's rate limits, `rate_tokens` of them tokens."""
    item = {"receipt_id": head.id, "create": create, "account_id": head.account_id, "project_id": head.project_id,
            "key_id": head.key_id, "run_id": head.run_id, "model": head.model, "stream": head.stream,
            "endpoint": head.endpoint,
            "idempotency_key": head.idempotency_key, "route_id": route.id, "route_kind": route.kind,
            "bucket": route.bucket, "price_snapshot_id": route.price_snapshot_id, "attempt_no": attempt_no,
            "amount": amount, "ttl_s": float(ttl_s), "owner_id": owner_id, "reject": reject,
            "rate_tokens": rate_tokens}
    row = (await write_once(pg, [], [item], True))[0] if writer is None else await writer.open(pg, item)
    return Reservation(row["hold_id"], None, row["refused_scope"], int(row["remaining"] or 0),
                       rate_limits.state_of(row))


async def explain_rejection(pg: asyncpg.Pool, receipt_id: str, reason: str) -> None:
    await pg.execute("UPDATE receipts SET reason = $2 WHERE id = $1 AND status = 'rejected'", receipt_id, reason)


async def finish_attempt(pg: asyncpg.Pool, head: ReceiptHead, route: RouteInfo, attempt_no: int, hold_id: int,
                         end: AttemptEnd, final: ReceiptEnd | None, *, durable: bool = True,
                         writer: LedgerWriter | None = None, patience_s: float | None = None) -> int | None:
    """Resolve the attempt's hold with its charge; returns what was actually charged (a hold the
    sweeper had released gets a late charge, as far as the funds and caps allow), or None when the
    writer could not commit it within `patience_s` (the database is away: it keeps retrying, and
    the charge decided is what it will book). `durable=False` lets the commit skip the WAL flush
    wait; through a writer, its own setting decides."""
    c = end.charge
    item = {"hold_id": hold_id, "charge": c.amount, "overage": c.overage, "kind": end.transfer_kind,
            "outcome": end.outcome, "upstream_status": end.upstream_status, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens, "charge_rule": c.rule, "reason": c.reason,
            "error": end.error, "latency_ms": end.latency_ms, "route_kind": route.kind, "bucket": route.bucket}
    if final is not None:
        item.update(final_status=final.status, final_reason=final.reason, final_code=final.error_code,
                    usage_estimated=final.usage_estimated)
    if writer is None:
        return int((await write_once(pg, [item], [], durable))[0]["charged"])
    row = await writer.finish(pg, item, patience_s=patience_s)
    return None if row is None else int(row["charged"])


async def close_receipt(pg: asyncpg.Pool, receipt_id: str, final: ReceiptEnd) -> None:
    """Close a receipt whose last attempt was already finished (a refused fallback, a passthrough)."""
    await pg.execute("""
        UPDATE receipts SET status = CASE WHEN status = 'pending' THEN $2 ELSE status END,
               reason = coalesce($3, reason), error_code = $4, completed_at = clock_timestamp()
         WHERE id = $1""", receipt_id, final.status, final.reason, final.error_code)
