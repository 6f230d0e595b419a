"""Requests in flight per run, in this worker process, so that a cancel (arriving by LISTEN/NOTIFY
from whichever process took it) can abort them within a second or two."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class RunCancelled(Exception):
    pass


class Flight:
    def __init__(self, run_id: str):
        self.run_id = run_id
        self.cancelled = False
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def cancel(self) -> None:
        self.cancelled = True
        if not self._future.done():
            self._future.set_result(None)

    async def race(self, aw: Awaitable[T], timeout: float | None) -> T:
        """Await `aw` unless the run is cancelled first (RunCancelled) or time runs out (TimeoutError)."""
        task = asyncio.ensure_future(aw)
        try:
            racing: set[asyncio.Future[Any]] = {task, self._future}
            done, _ = await asyncio.wait(racing, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        if self.cancelled:
            raise RunCancelled(self.run_id)
        raise TimeoutError


async def bounded(aw: Awaitable[T], flight: Flight | None, timeout: float | None) -> T:
    if flight is not None:
        return await flight.race(aw, timeout)
    async with asyncio.timeout(timeout):
        return await aw


class FlightRegistry:
    def __init__(self) -> None:
        self._by_run: dict[str, set[Flight]] = {}

    def register(self, run_id: str) -> Flight:
        flight = Flight(run_id)
        self._by_run.setdefault(run_id, set()).add(flight)
        return flight

    def unregister(self, flight: Flight) -> None:
        flights = self._by_run.get(flight.run_id)
        if flights is not None:
            flights.discard(flight)
            if not flights:
                del self._by_run[flight.run_id]

    def cancel_run(self, run_id: str) -> int:
        flights = list(self._by_run.get(run_id, ()))
        for f in flights:
            f.cancel()
        return len(flights)

    def runs(self) -> list[str]:
        return list(self._by_run)
