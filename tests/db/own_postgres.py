"""A PostgreSQL of a test's own: pgserver in a tmp dir with the max_connections the test asks for
(the shared test server has 500), migrated; and a sampler of the client connections it holds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

import asyncpg

from tokens_forge.db.url import plain_url

CLIENTS_SQL = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"


class OwnPostgres:
    def __init__(self, max_connections: int):
        import pgserver

        from tokens_forge.db.migrate import upgrade_head

        self.dir = Path(tempfile.mkdtemp(prefix="tf-pgb-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.server = pgserver.get_server(str(self.dir / "pgdata"), cleanup_mode="stop")
        self.server.psql(f"ALTER SYSTEM SET max_connections = '{max_connections}';")
        self._pg_ctl("-w", "-m", "fast", "restart")  # keeps the socket options pgserver started it with
        self.url = self.server.get_uri("postgres")
        assert self.setting("max_connections") == max_connections
        upgrade_head(self.url)

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def setting(self, name: str) -> int:
        async def get() -> int:
            conn = await asyncpg.connect(plain_url(self.url))
            try:
                return int(await conn.fetchval("SELECT setting FROM pg_settings WHERE name = $1", name))
            finally:
                await conn.close()

        return asyncio.run(get())

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()
        with contextlib.suppress(Exception):
            self._pg_ctl("-w", "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class ConnectionSampler:
    """Counts the server's client connections every 20 ms on a connection of its own (not counted)
    in a thread, until stopped: `peak` is the most seen at once."""

    def __init__(self, url: str):
        self.url = plain_url(url)
        self.peak = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.url)
        self._ready.set()
        try:
            while not self._stop.is_set():
                self.peak = max(self.peak, await conn.fetchval(CLIENTS_SQL) - 1)
                await asyncio.sleep(0.02)
        finally:
            await conn.close()

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        assert self._ready.wait(30), "the sampler could not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
