"""Gateway workers, as the ledger sees them: every worker process has a row with a heartbeat, and
owns the holds (and idempotency locks) of the requests it serves. A hold lives as long as its
worker: however slowly a client reads a stream, the worker keeps beating and nobody releases the
hold under it. When a worker dies (killed, its host gone) its heartbeat stops, and after
`dead_after_s` the sweeper of any other worker releases what it owned (tf_owner_gone). A worker
that stops cleanly removes its row once its requests have finished."""

from __future__ import annotations

import os
import socket

import asyncpg

from tokens_forge.ids import new_id

_BEAT = """
    INSERT INTO gateway_workers (id, host, pid) VALUES ($1, $2, $3)
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()"""


class Worker:
    def __init__(self) -> None:
        self.id = new_id("wkr")
        self.host = socket.gethostname()[:200]
        self.pid = os.getpid()

    async def beat(self, pg: asyncpg.Pool) -> None:
        """Say this worker is alive (and register it, the first time or after it was forgotten)."""
        await pg.execute(_BEAT, self.id, self.host, self.pid)

    async def leave(self, pg: asyncpg.Pool) -> None:
        """A clean stop: whatever this worker still owns is released by the next sweep."""
        await pg.execute("DELETE FROM gateway_workers WHERE id = $1", self.id)


async def forget_long_dead(pg: asyncpg.Pool, older_than_s: float = 86_400) -> int:
    """Rows of workers that have been silent for a day (their holds were released long ago)."""
    status = await pg.execute("DELETE FROM gateway_workers WHERE heartbeat_at < now() - make_interval(secs => $1)",
                              older_than_s)
    return int(status.split()[-1])
