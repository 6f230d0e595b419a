"""The database side of one request's story: one statement (one round trip, its own
transaction) per phase, over the hot-path asyncpg pool:

1. open: the receipt, a reservation and its attempt row (tf_open_attempt), or a `rejected`
   receipt when nothing else will be tried;
2. finish: resolve the attempt's hold (settle, failure charge or void), record its outcome and
   add its charge to the receipt, closing the receipt with the last attempt (tf_finish_attempt).

No transaction spans the upstream call."""

from __future__ import annotations

import asyncio
import contextlib
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


class AccountGate:
    """At most one settle per tenant account at a time in this worker process.

    A tenant's settles lock the same wallet, hold and counter rows; letting many of them queue on
    PostgreSQL row locks (each waiter holding a connection and waking on every release) collapses
    throughput on a hot key. Queuing them here is cheaper and keeps the pool free for other
    tenants. (Reservations are coalesced instead: ReservationBatcher.) Correctness never depends
    on this gate: the database locks do."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, account_id: str):
        lock = self._locks.get(account_id)
        if lock is None:
            lock = self._locks[account_id] = asyncio.Lock()
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._locks.pop(account_id, None)


class ReservationBatcher:
    """Reservations of one key (same run, same bucket) that arrive while another is being written
    are coalesced into one transaction (tf_open_attempts): every hold stays durable, but a burst on
    a hot key pays one WAL flush, not one each. A batch locks the same rows in the same order as a
    single reservation, and caps are still checked item by item, in arrival order."""

    MAX_BATCH = 64

    def __init__(self) -> None:
        self._queues: dict[tuple, list] = {}
        self._draining: set[tuple] = set()
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, pg: asyncpg.Pool, batch_key: tuple, item: tuple) -> asyncpg.Record:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queues.setdefault(batch_key, []).append((item, fut))
        if batch_key not in self._draining:
            self._draining.add(batch_key)
            task = asyncio.create_task(self._drain(pg, batch_key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def _drain(self, pg: asyncpg.Pool, batch_key: tuple) -> None:
        try:
            while self._queues.get(batch_key):
                queue = self._queues[batch_key]
                batch, self._queues[batch_key] = queue[: self.MAX_BATCH], queue[self.MAX_BATCH :]
                await self._write(pg, batch)
        finally:
            self._draining.discard(batch_key)
            if not self._queues.get(batch_key):
                self._queues.pop(batch_key, None)

    async def _write(self, pg: asyncpg.Pool, batch: list) -> None:
        try:
            rows = [await pg.fetchrow(_OPEN, *batch[0][0])] if len(batch) == 1 else \
                await pg.fetch(_OPEN_MANY, *_columns([item for item, _ in batch]))
        except Exception:
            # The batch was one transaction and wrote nothing: retry its items one by one so that
            # one bad item cannot fail the others.
            for item, fut in batch:
                try:
                    _resolve(fut, await pg.fetchrow(_OPEN, *item))
                except Exception as exc:
                    if not fut.done():
                        fut.set_exception(exc)
            return
        for (_, fut), row in zip(batch, rows, strict=True):
            _resolve(fut, row)


def _resolve(fut: asyncio.Future, row: Any) -> None:
    if not fut.done():
        fut.set_result(row)


def _columns(items: list[tuple]) -> tuple:
    """tf_open_attempt's arguments of each item → tf_open_attempts' arrays (the key, project, run
    and bucket are the same for every item of a batch)."""
    c = list(zip(*items, strict=True))
    return (list(c[0]), list(c[1]), c[2][0], c[3][0], c[4][0], c[5][0], list(c[6]), list(c[7]), list(c[8]),
            list(c[9]), list(c[10]), c[11][0], list(c[12]), list(c[13]), list(c[14]), list(c[15]), list(c[16]))


_NO_GATE = AccountGate()  # callers without an app (scripts, benchmarks) still get one per process

_OPEN = "SELECT * FROM tf_open_attempt($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
_OPEN_MANY = ("SELECT o_hold_id AS hold_id, o_refused_scope AS refused_scope, o_remaining AS remaining "
              "FROM tf_open_attempts($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) "
              "ORDER BY o_index")
_FINISH = ("SELECT charged FROM tf_finish_attempt($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
           "$15, $16, $17, $18, $19)")


async def open_attempt(pg: asyncpg.Pool, head: ReceiptHead, route: RouteInfo, attempt_no: int, amount: int,
                       ttl_s: float, *, create: bool, reject: bool,
                       batcher: ReservationBatcher | None = None) -> Reservation:
    item = (head.id, create, head.account_id, head.project_id, head.key_id, head.run_id, head.model, head.stream,
            head.idempotency_key, route.id, route.kind, route.bucket, route.price_snapshot_id, attempt_no, amount,
            ttl_s, reject)
    if batcher is None:
        row = await pg.fetchrow(_OPEN, *item)
    else:
        row = await batcher.submit(pg, (head.key_id, head.run_id, route.bucket), item)
    return Reservation(row["hold_id"], None, row["refused_scope"], int(row["remaining"] or 0))


async def explain_rejection(pg: asyncpg.Pool, receipt_id: str, reason: str) -> None:
    await pg.execute("UPDATE receipts SET reason = $2 WHERE id = $1 AND status = 'rejected'", receipt_id, reason)


async def finish_attempt(pg: asyncpg.Pool, head: ReceiptHead, route: RouteInfo, attempt_no: int, hold_id: int,
                         end: AttemptEnd, final: ReceiptEnd | None, *, durable: bool = True,
                         gate: AccountGate | None = None) -> int:
    """Returns what was actually charged (0 when the sweeper had already released the hold).
    `durable=False` lets the commit skip the WAL flush wait (see tf_finish_attempt)."""
    f = final or ReceiptEnd(status="")
    async with (gate or _NO_GATE).hold(head.account_id):
        return int(await pg.fetchval(
            _FINISH, hold_id, end.charge, end.charge_kind, head.id, attempt_no, end.outcome, end.upstream_status,
            end.prompt_tokens, end.completion_tokens, end.charge_reason, end.error, end.latency_ms,
            final.status if final else None, f.reason, f.error_code, f.usage_estimated, route.kind, route.bucket,
            durable))


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
