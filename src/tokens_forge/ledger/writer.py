"""Group commit: a worker's ledger writes of both hot-path phases, coalesced.

A request that opens or finishes an attempt while a write is in flight queues; the next write
carries every queued item (up to MAX_BATCH, of any keys, finishes before opens) in one statement
and one transaction (tf_write_batch, ledger/sql/). At low load each write carries one item and
nothing waits; under load a transaction, its WAL flush and the row locks of a hot key are paid
once per batch rather than once per request, and the database sees one writer per worker instead
of one per request.

tf_write_batch decides each item exactly as if it were alone, in order, and locks every row in
one global order, so correctness never depends on how items were grouped, and two workers'
batches cannot deadlock. Failures:
- a conflict (deadlock, serialization) rolled everything back: the batch runs again;
- the database is unavailable: opens fail after a few quick tries (nothing was forwarded, the
  client gets a 503), finishes are kept and retried with backoff until the database is back (for
  up to `settle_retry_s`): a settle is never dropped while its worker lives;
- any other failure wrote nothing: the items are written one by one, so that one bad item cannot
  fail the others."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from tokens_forge.db.retry import backoff_s, is_conflict, is_transient

log = logging.getLogger("tokens_forge.ledger")

WRITE = "SELECT * FROM tf_write_batch($1::jsonb, $2::jsonb, $3)"
OPEN_TRIES = 4          # quick tries of a reservation while the database is unavailable
CONFLICT_TRIES = 20     # a crossed transaction is retried at once, this many times at most

Item = dict[str, Any]
Pending = tuple[Item, asyncio.Future]


async def write_once(conn: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy, finishes: list[Item], opens: list[Item],
                     durable: bool) -> list[asyncpg.Record]:
    """One tf_write_batch call (one transaction) for these items."""
    return await conn.fetch(WRITE, orjson.dumps(finishes).decode(), orjson.dumps(opens).decode(), durable)


class LedgerWriter:
    MAX_BATCH = 64

    def __init__(self, *, durable_settle: bool, settle_retry_s: float = 900.0,
                 on_retry: Callable[[], None] | None = None):
        self._durable_settle = durable_settle
        self._on_retry = on_retry  # told of each retried write (the metrics' tf_ledger_write_retries_total)
        self._settle_retry_s = settle_retry_s
        self._opens: list[Pending] = []
        self._finishes: list[Pending] = []
        # One write in flight per worker. Two were measured too: smaller batches and more waiting
        # on a hot key's rows cost more than the overlap gained (bench/quick.sh).
        self._writing = False
        self._tasks: set[asyncio.Task] = set()
        self.writes = 0   # statements sent (each one transaction), and the items they carried
        self.items = 0
        self.retries = 0  # writes tried again after a conflict or while the database was away
        # The writer keeps one pooled connection for itself: a checkout and return of the pool
        # per write cost about 0.1 ms a request at one connection. Given back by close(), or
        # when a write fails (the next write takes a fresh one).
        self._pool: asyncpg.Pool | None = None
        self._conn: PoolConnectionProxy | None = None

    async def open(self, pg: asyncpg.Pool, item: Item) -> asyncpg.Record:
        """An open item (tf_open_item) → a record with hold_id, refused_scope, remaining."""
        return await self._submit(pg, self._opens, item)

    async def finish(self, pg: asyncpg.Pool, item: Item, *, patience_s: float | None = None) -> asyncpg.Record | None:
        """A finish item (tf_finish_item) → a record with charged. With `patience_s`, None when the
        write has not committed by then (the database is away): the writer keeps retrying it, and
        the caller answers its client meanwhile."""
        fut = self._enqueue(pg, self._finishes, item)
        if patience_s is None:
            return await fut
        try:
            return await asyncio.wait_for(asyncio.shield(fut), patience_s)
        except TimeoutError:
            fut.add_done_callback(_log_late_settle)
            return None

    async def _submit(self, pg: asyncpg.Pool, queue: list[Pending], item: Item) -> asyncpg.Record:
        return await self._enqueue(pg, queue, item)

    def _enqueue(self, pg: asyncpg.Pool, queue: list[Pending], item: Item) -> asyncio.Future:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        queue.append((item, fut))
        if not self._writing:
            self._writing = True
            task = asyncio.create_task(self._drain(pg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return fut

    async def _drain(self, pg: asyncpg.Pool) -> None:
        try:
            while self._opens or self._finishes:
                finishes, self._finishes = self._finishes[: self.MAX_BATCH], self._finishes[self.MAX_BATCH :]
                room = self.MAX_BATCH - len(finishes)
                opens, self._opens = self._opens[:room], self._opens[room:]
                await self._write(pg, finishes, opens)
        finally:
            self._writing = False

    async def close(self) -> None:
        """Give the writer's connection back to its pool (before the pool is closed)."""
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        await self._drop_connection()

    async def _connection(self, pg: asyncpg.Pool) -> PoolConnectionProxy:
        if self._conn is None or self._conn.is_closed():
            await self._drop_connection()
            self._pool, self._conn = pg, await pg.acquire()
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pool is not None:
            try:
                await self._pool.release(conn)
            except Exception:  # a broken connection: the pool replaces it
                conn.terminate()

    async def _write(self, pg: asyncpg.Pool, finishes: list[Pending], opens: list[Pending]) -> None:
        started, tries, conflicts = time.monotonic(), 0, 0
        while finishes or opens:
            self.writes += 1
            self.items += len(finishes) + len(opens)
            try:
                conn = await self._connection(pg)
                rows = await write_once(conn, [i for i, _ in finishes], [i for i, _ in opens],
                                        self._durable_settle)
            except Exception as exc:
                await self._drop_connection()
                if not is_transient(exc):
                    await self._after_failure(pg, finishes, opens, exc)
                    return
                self.retries += 1
                if self._on_retry is not None:
                    self._on_retry()
                if is_conflict(exc) and conflicts < CONFLICT_TRIES:
                    conflicts += 1
                    continue
                tries += 1
                if tries >= OPEN_TRIES:
                    _fail(opens, exc)
                    opens = []
                if time.monotonic() - started > self._settle_retry_s:
                    log.error("the database was away for %.0fs: %d settle(s) given up", self._settle_retry_s,
                              len(finishes))
                    _fail(finishes, exc)
                    return
                if tries == 1:
                    log.warning("ledger write failed (%s); retrying %d settle(s) and %d reservation(s)",
                                type(exc).__name__, len(finishes), len(opens))
                await asyncio.sleep(backoff_s(tries))
                continue
            _deliver(rows, finishes, opens)
            return

    async def _after_failure(self, pg: asyncpg.Pool, finishes: list[Pending], opens: list[Pending],
                             exc: Exception) -> None:
        if len(finishes) + len(opens) == 1:
            _fail(finishes + opens, exc)
            return
        log.warning("a group commit of %d items failed (%s: %s); writing them one by one",
                    len(finishes) + len(opens), type(exc).__name__, exc)
        alone: list[tuple[list[Pending], list[Pending]]] = [([p], []) for p in finishes] + [([], [p]) for p in opens]
        for f, o in alone:
            try:
                rows = await write_once(pg, [i for i, _ in f], [i for i, _ in o], self._durable_settle)
                _deliver(rows, f, o)
            except Exception as one:
                _fail(f + o, one)


def _deliver(rows: list[asyncpg.Record], finishes: list[Pending], opens: list[Pending]) -> None:
    for row in rows:
        queue = finishes if row["phase"] == "finish" else opens
        fut = queue[row["idx"] - 1][1]
        if not fut.done():
            fut.set_result(row)


def _log_late_settle(fut: asyncio.Future) -> None:
    if fut.cancelled():
        return
    if fut.exception() is not None:
        log.error("a settle was given up after retrying: %s", type(fut.exception()).__name__)
    else:
        log.info("a settle delayed by the database committed")


def _fail(pending: list[Pending], exc: BaseException) -> None:
    for _, fut in pending:
        if not fut.done():
            fut.set_exception(exc)
