"""Per-worker background work: the worker's heartbeat (its holds live as long as it beats), the
hold sweeper, the route-health refresher, and the run-control listener (LISTEN tf_run_control,
plus a poll of in-flight runs as a safety net)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from sqlalchemy import text

from tokens_forge.db.url import plain_url
from tokens_forge.ledger.sweeper import forget_old_idempotency_keys, sweep_expired
from tokens_forge.ledger.workers import forget_long_dead
from tokens_forge.routing.health import RouteHealth
from tokens_forge.runs.flights import FlightRegistry
from tokens_forge.state import AppState

log = logging.getLogger("tokens_forge.background")
CHANNEL = "tf_run_control"


class Background:
    def __init__(self, state: AppState, url: str | None):
        self.state = state
        self.url = url  # a direct connection for LISTEN (never a transaction pooler); None: poll only
        state.flights = FlightRegistry()
        state.health = RouteHealth(state.engine)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.state.health.refresh()
        self._tasks = [
            asyncio.create_task(self._every(self.state.settings.worker_heartbeat_s, self._beat), name="heartbeat"),
            asyncio.create_task(self._every(self.state.settings.sweep_interval_s, self._sweep), name="sweeper"),
            asyncio.create_task(self._every(2.0, self.state.health.refresh), name="health"),
            asyncio.create_task(self._every(1.0, self._poll_cancelled_runs), name="run-poll"),
        ]
        if self.url is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name="run-listen"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _every(self, seconds: float, fn) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be restarting: try again next tick
                log.warning("%s failed: %s", getattr(fn, "__name__", fn), type(exc).__name__)

    async def _beat(self) -> None:
        await self.state.worker.beat(self.state.pg)

    async def _sweep(self) -> int:
        n = await sweep_expired(self.state.engine, dead_after_s=self.state.settings.worker_dead_after_s)
        self.state.obs.metrics.holds_swept(n)
        if n:
            log.info("released %d hold(s) of gone workers", n)
        await forget_old_idempotency_keys(self.state.engine)
        await forget_long_dead(self.state.pg)
        return n

    async def _poll_cancelled_runs(self) -> None:
        runs = self.state.flights.runs()
        if not runs:
            return
        async with self.state.engine.connect() as conn:
            cancelled = (await conn.execute(text("SELECT id FROM runs WHERE id = ANY(:ids) AND status = 'cancelled'"),
                                            {"ids": runs})).scalars().all()
        for run_id in cancelled:
            self.state.flights.cancel_run(run_id)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        action, _, run_id = str(payload).partition(":")
        if action == "cancel":
            self.state.flights.cancel_run(run_id)

    async def _listen(self) -> None:
        url = self.url
        assert url is not None  # started only with a direct URL
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(plain_url(url))
                await conn.add_listener(CHANNEL, self._on_notify)
                while not conn.is_closed():
                    await asyncio.sleep(5)
                    await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("run-control listener reconnecting: %s", type(exc).__name__)
                await asyncio.sleep(1)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
