"""The database side of one request's story, one short transaction per phase:

1. open: the receipt, the first reservation and its attempt row (or a `rejected` receipt);
2. reserve: a further attempt's reservation (retry, fallback);
3. finish: resolve the attempt's hold (settle, failure charge or void), record the attempt's
   outcome and add its charge to the receipt, closing the receipt when it is the last.

No transaction spans the upstream call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tokens_forge.guard import service as guard
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


Refusal = Callable[[guard.Reservation], tuple[str, str]] | None


async def _reserve_attempt(conn: AsyncConnection, head: ReceiptHead, route: RouteInfo, attempt_no: int,
                           amount: int, ttl_s: float, refusal: Refusal) -> guard.Reservation:
    """Reserve and record the attempt. On refusal, when `refusal` is given (nothing else will be
    tried), the receipt is closed as `rejected` with its reason, in the same transaction."""
    res = await guard.reserve(conn, key_id=head.key_id, bucket=route.bucket, amount=amount, receipt_id=head.id,
                              attempt_no=attempt_no, run_id=head.run_id, ttl_s=ttl_s)
    if not res.ok:
        if refusal is not None:
            reason, code = refusal(res)
            await conn.execute(text("""
                UPDATE receipts SET status = 'rejected', reason = :reason, error_code = :code,
                                    route_kind = :kind, bucket = :b, completed_at = clock_timestamp()
                 WHERE id = :id"""),
                {"id": head.id, "reason": reason, "code": code, "kind": route.kind, "b": route.bucket})
    else:
        await conn.execute(text("""
            INSERT INTO attempts (receipt_id, attempt_no, account_id, route_id, route_kind, bucket,
                                  price_snapshot_id, hold_id, reserved_micros)
            VALUES (:r, :n, :a, :route, :kind, :b, :snap, :hold, :amt)"""),
            {"r": head.id, "n": attempt_no, "a": head.account_id, "route": route.id, "kind": route.kind,
             "b": route.bucket, "snap": route.price_snapshot_id, "hold": res.hold_id, "amt": amount})
        if head.run_id:
            await conn.execute(text("""
                UPDATE runs SET status = CASE WHEN status = 'ready' THEN 'running' ELSE status END,
                                last_activity_at = now(), updated_at = now()
                 WHERE id = :run"""), {"run": head.run_id})
    return res


async def open_receipt(engine: AsyncEngine, head: ReceiptHead, route: RouteInfo, amount: int, ttl_s: float,
                       refusal: Refusal) -> guard.Reservation:
    """Create the receipt and reserve the first attempt, in one transaction."""
    async with engine.begin() as conn:
        await conn.execute(text("""
            INSERT INTO receipts (id, account_id, project_id, key_id, run_id, model, stream, route_kind, bucket,
                                  idempotency_key)
            VALUES (:id, :a, :p, :k, :run, :m, :s, :kind, :b, :idem)"""),
            {"id": head.id, "a": head.account_id, "p": head.project_id, "k": head.key_id, "run": head.run_id,
             "m": head.model, "s": head.stream, "kind": route.kind, "b": route.bucket,
             "idem": head.idempotency_key})
        return await _reserve_attempt(conn, head, route, 1, amount, ttl_s, refusal)


async def reserve_attempt(engine: AsyncEngine, head: ReceiptHead, route: RouteInfo, attempt_no: int,
                          amount: int, ttl_s: float, refusal: Refusal) -> guard.Reservation:
    async with engine.begin() as conn:
        return await _reserve_attempt(conn, head, route, attempt_no, amount, ttl_s, refusal)


async def finish_attempt(engine: AsyncEngine, head: ReceiptHead, route: RouteInfo, attempt_no: int,
                         hold_id: int, end: AttemptEnd, final: ReceiptEnd | None) -> int:
    """Resolve the hold and record the attempt; returns what was actually charged. A hold the
    sweeper already expired resolves to nothing, so a late settle never charges twice."""
    async with engine.begin() as conn:
        status = "settled" if end.charge > 0 or end.outcome == "success" else "voided"
        res = await guard.resolve(conn, hold_id=hold_id, charge=end.charge, kind=end.charge_kind, status=status)
        charged = res.charged if res.resolved else 0
        reason = end.charge_reason if res.resolved else "the hold had expired before settlement; nothing charged"
        await conn.execute(text("""
            UPDATE attempts SET ended_at = clock_timestamp(), outcome = :o, upstream_status = :us,
                   prompt_tokens = :pt, completion_tokens = :ct, charged_micros = :c, charge_reason = :cr,
                   error = :e, latency_ms = :lat
             WHERE receipt_id = :r AND attempt_no = :n"""),
            {"o": end.outcome, "us": end.upstream_status, "pt": end.prompt_tokens, "ct": end.completion_tokens,
             "c": charged, "cr": reason, "e": end.error, "lat": end.latency_ms, "r": head.id, "n": attempt_no})
        await _add_to_receipt(conn, head.id, route, charged, end, final)
        return charged


async def _add_to_receipt(conn: AsyncConnection, receipt_id: str, route: RouteInfo, charged: int,
                          end: AttemptEnd, final: ReceiptEnd | None) -> None:
    if final is None:
        await conn.execute(text("UPDATE receipts SET total_charged_micros = total_charged_micros + :c WHERE id = :r"),
                           {"c": charged, "r": receipt_id})
        return
    await conn.execute(text("""
        UPDATE receipts SET total_charged_micros = total_charged_micros + :c,
               status = CASE WHEN status = 'pending' THEN :s ELSE status END,
               reason = coalesce(:reason, reason), error_code = :code, usage_estimated = :est,
               route_kind = :kind, bucket = :b,
               prompt_tokens = prompt_tokens + :pt, completion_tokens = completion_tokens + :ct,
               completed_at = clock_timestamp()
         WHERE id = :r"""),
        {"c": charged, "s": final.status, "reason": final.reason, "code": final.error_code,
         "est": final.usage_estimated, "kind": route.kind, "b": route.bucket, "pt": end.prompt_tokens,
         "ct": end.completion_tokens, "r": receipt_id})


async def close_receipt(engine: AsyncEngine, receipt_id: str, final: ReceiptEnd) -> None:
    """Close a receipt whose last attempt was already finished (e.g. a fallback refused by the guard)."""
    async with engine.begin() as conn:
        await conn.execute(text("""
            UPDATE receipts SET status = CASE WHEN status = 'pending' THEN :s ELSE status END,
                   reason = coalesce(:reason, reason), error_code = :code, completed_at = clock_timestamp()
             WHERE id = :r"""), {"s": final.status, "reason": final.reason, "code": final.error_code, "r": receipt_id})


async def extend_hold(engine: AsyncEngine, hold_id: int, ttl_s: float) -> None:
    """A long stream keeps its hold alive so the sweeper never voids a live request."""
    async with engine.begin() as conn:
        await conn.execute(text("""UPDATE holds SET expires_at = now() + make_interval(secs => :t)
                                    WHERE id = :h AND status = 'open'"""), {"h": hold_id, "t": ttl_s})
