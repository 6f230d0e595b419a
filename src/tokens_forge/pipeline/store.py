"""The database side of one request's story: one statement (one round trip, its own
transaction) per phase, over the hot-path asyncpg pool:

1. open: the receipt, a reservation and its attempt row (tf_open_attempt), or a `rejected`
   receipt when nothing else will be tried;
2. finish: resolve the attempt's hold (settle, failure charge or void), record its outcome and
   add its charge to the receipt, closing the receipt with the last attempt (tf_finish_attempt).

No transaction spans the upstream call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg

from tokens_forge.guard.service import Reservation
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


class PhaseBatcher:
    """One phase's writes in this worker process, coalesced (group commit). A request that reaches
    the phase while a write is in flight queues; the next write carries every queued item (up to
    MAX_BATCH, of any keys) in one statement and one transaction. At low load each write carries
    one item through the single-item function, with no waiting; under load the cost of a
    transaction, its WAL flush and its row locks is paid once per batch, not once per request.

    The batch functions (migration 0005) give every item exactly the semantics of the single one,
    in arrival order, and lock rows in the same global order, so correctness never depends on how
    items were grouped. A batch that fails wrote nothing (one transaction): its items are retried
    one by one, so that one bad item cannot fail the others."""

    MAX_BATCH = 64

    def __init__(self, single_sql: str, batch_sql: str, *, shared_tail: int = 0):
        self._single = single_sql
        self._batch = batch_sql
        self._shared_tail = shared_tail  # trailing arguments that are one value for a whole batch
        self._queues: dict[tuple, list] = {}
        self._draining: set[tuple] = set()
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, pg: asyncpg.Pool, item: tuple) -> asyncpg.Record:
        group = item[len(item) - self._shared_tail:] if self._shared_tail else ()
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queues.setdefault(group, []).append((item, fut))
        if group not in self._draining:
            self._draining.add(group)
            task = asyncio.create_task(self._drain(pg, group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def _drain(self, pg: asyncpg.Pool, group: tuple) -> None:
        try:
            while self._queues.get(group):
                queue = self._queues[group]
                batch, self._queues[group] = queue[: self.MAX_BATCH], queue[self.MAX_BATCH :]
                await self._write(pg, batch)
        finally:
            self._draining.discard(group)
            if not self._queues.get(group):
                self._queues.pop(group, None)

    async def _write(self, pg: asyncpg.Pool, batch: list) -> None:
        try:
            if len(batch) == 1:
                rows = [await pg.fetchrow(self._single, *batch[0][0])]
            else:
                rows = await pg.fetch(self._batch, *self._columns([item for item, _ in batch]))
        except Exception:
            for item, fut in batch:
                try:
                    _resolve(fut, await pg.fetchrow(self._single, *item))
                except Exception as exc:
                    if not fut.done():
                        fut.set_exception(exc)
            return
        for (_, fut), row in zip(batch, rows, strict=True):
            _resolve(fut, row)

    def _columns(self, items: list[tuple]) -> list:
        """The single function's arguments of each item → the batch function's arrays (and the
        shared trailing arguments once)."""
        columns = [list(c) for c in zip(*items, strict=True)]
        if self._shared_tail:
            return columns[: -self._shared_tail] + [c[0] for c in columns[-self._shared_tail:]]
        return columns


def _resolve(fut: asyncio.Future, row: Any) -> None:
    if not fut.done():
        fut.set_result(row)


_OPEN = "SELECT * FROM tf_open_attempt($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
_OPEN_BATCH = ("SELECT o_hold_id AS hold_id, o_refused_scope AS refused_scope, o_remaining AS remaining "
               "FROM tf_open_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) "
               "ORDER BY o_index")
_FINISH = ("SELECT charged FROM tf_finish_attempt($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
           "$15, $16, $17, $18, $19)")
_FINISH_BATCH = ("SELECT o_charged AS charged FROM tf_finish_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
                 "$12, $13, $14, $15, $16, $17, $18, $19) ORDER BY o_index")


@dataclass
class Batchers:
    """The hot path's two phases, each with its own group commit (on app.state)."""
    open: PhaseBatcher
    finish: PhaseBatcher

    @classmethod
    def create(cls) -> Batchers:
        return cls(PhaseBatcher(_OPEN, _OPEN_BATCH), PhaseBatcher(_FINISH, _FINISH_BATCH, shared_tail=1))


async def open_attempt(pg: asyncpg.Pool, head: ReceiptHead, route: RouteInfo, attempt_no: int, amount: int,
                       ttl_s: float, *, create: bool, reject: bool,
                       batchers: Batchers | None = None) -> Reservation:
    item = (head.id, create, head.account_id, head.project_id, head.key_id, head.run_id, head.model, head.stream,
            head.idempotency_key, route.id, route.kind, route.bucket, route.price_snapshot_id, attempt_no, amount,
            float(ttl_s), reject)
    row = await pg.fetchrow(_OPEN, *item) if batchers is None else await batchers.open.submit(pg, item)
    return Reservation(row["hold_id"], None, row["refused_scope"], int(row["remaining"] or 0))


async def explain_rejection(pg: asyncpg.Pool, receipt_id: str, reason: str) -> None:
    await pg.execute("UPDATE receipts SET reason = $2 WHERE id = $1 AND status = 'rejected'", receipt_id, reason)


async def finish_attempt(pg: asyncpg.Pool, head: ReceiptHead, route: RouteInfo, attempt_no: int, hold_id: int,
                         end: AttemptEnd, final: ReceiptEnd | None, *, durable: bool = True,
                         batchers: Batchers | None = None) -> int:
    """Returns what was actually charged (0 when the sweeper had already released the hold).
    `durable=False` lets the commit skip the WAL flush wait (see tf_finish_attempt)."""
    f = final or ReceiptEnd(status="")
    item = (hold_id, end.charge, end.charge_kind, head.id, attempt_no, end.outcome, end.upstream_status,
            end.prompt_tokens, end.completion_tokens, end.charge_reason, end.error, end.latency_ms,
            final.status if final else None, f.reason, f.error_code, f.usage_estimated, route.kind, route.bucket,
            durable)
    row = await pg.fetchrow(_FINISH, *item) if batchers is None else await batchers.finish.submit(pg, item)
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
