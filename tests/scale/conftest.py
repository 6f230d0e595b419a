"""Several gateway hosts (SPEC §10): three `tokens-forge serve` processes, one worker each on a
port of its own, behind a real nginx (round robin) and a real PgBouncer (transaction pooling), on
a database of their own that they migrate themselves through the direct URL at start-up (all
three at once: the migrations' lock serializes them); the built-in mock upstream as a process of
its own. Nothing else writes to that database, so whatever sweeps a dead host's holds is one of
the hosts left."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN, LiveGateway, _server_url, free_port, wait_http
from tests.nginx import Nginx
from tests.pgbouncer import PgBouncer
from tokens_forge.db.url import plain_url

HOSTS = 3
# A host's holds are owned by its live worker (a heartbeat row): silent this long, it is dead and
# the others' sweepers release what it owned.
HEARTBEAT_S, DEAD_AFTER_S = 0.5, 3


@dataclass
class Host:
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no settle, no release; its holds stay open in the database."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class Cluster:
    hosts: list[Host]
    nginx: Nginx
    bouncer: PgBouncer
    direct_url: str
    live: LiveGateway  # the admin and tenant helpers, through nginx

    async def fetch(self, sql: str, *args) -> list[asyncpg.Record]:
        """Read the rows themselves, on PostgreSQL directly."""
        conn = await asyncpg.connect(plain_url(self.direct_url))
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


def _sql(url: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(plain_url(url))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("hosts")
    server = _server_url()
    name = "tf_scale_" + uuid.uuid4().hex[:12]
    _sql(server, f"CREATE DATABASE {name}")
    direct = make_url(server).set(database=name).render_as_string(hide_password=False)
    procs: list[subprocess.Popen] = []
    bouncer = PgBouncer(server, d / "pgbouncer", pool_size=30).start()
    nginx = None
    try:
        bin_dir = Path(sys.executable).parent
        mock_port = free_port()
        mock_log = d / "mock.log"
        mock = subprocess.Popen([str(bin_dir / "tokens-forge"), "mock-upstream", "--port", str(mock_port)],
                                stdout=open(mock_log, "w"), stderr=subprocess.STDOUT)
        procs.append(mock)
        env = {**os.environ, "TF_DATABASE_URL": bouncer.url_for(direct), "TF_DATABASE_DIRECT_URL": direct,
               "TF_ADMIN_TOKEN": ADMIN, "TF_SWEEP_INTERVAL_S": "0.5",
               "TF_WORKER_HEARTBEAT_S": str(HEARTBEAT_S), "TF_WORKER_DEAD_AFTER_S": str(DEAD_AFTER_S)}
        hosts = []
        for i in range(HOSTS):
            port, home = free_port(), d / f"host{i}"
            home.mkdir()
            log = home / "gateway.log"
            proc = subprocess.Popen([str(bin_dir / "tokens-forge"), "serve", "--port", str(port), "--workers", "1"],
                                    cwd=home, env={**env, "TF_DATA_DIR": str(home)},
                                    stdout=open(log, "w"), stderr=subprocess.STDOUT)
            procs.append(proc)
            hosts.append(Host(port, proc, log))
        wait_http(f"http://127.0.0.1:{mock_port}/_stats", 30, mock, mock_log)
        for h in hosts:
            wait_http(h.base + "/healthz", 120, h.proc, h.log)
        nginx = Nginx([h.port for h in hosts], d / "nginx").start()
        live = LiveGateway(nginx.base, f"http://127.0.0.1:{mock_port}/v1", d / "nginx" / "access.log", None)
        yield Cluster(hosts, nginx, bouncer, direct, live)
        live.admin.close()
    finally:
        for p in procs:
            _stop(p)
        if nginx is not None:
            nginx.stop()
        bouncer.stop()
        _sql(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
