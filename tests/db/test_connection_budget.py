"""The connection budget against real servers: `tokens-forge serve --workers 4` on a PostgreSQL
whose max_connections is the default 100 (a server of the test's own) sizes its pools so that a
burst never meets "too many clients": every answer of the burst is a 200, the server never held
more connections than it has for ordinary users, and the ledger verifies. On a server too small
for even the smallest pools, `serve` refuses to start and says why, with both numbers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, LiveGateway, free_port, wait_http
from tests.db.own_postgres import ConnectionSampler, OwnPostgres
from tests.faults.conftest import fault_upstream, make_fault_tenant  # noqa: F401 - the fault upstream, here too

TF = str(Path(sys.executable).parent / "tokens-forge")


def start_serve(pg: OwnPostgres, workers: int, **env: str) -> tuple[subprocess.Popen, Path, int]:
    port, log = free_port(), pg.dir / f"serve-{uuid.uuid4().hex[:6]}.log"
    full = {**os.environ, "TF_DATABASE_URL": pg.url, "TF_ADMIN_TOKEN": ADMIN, "TF_DATA_DIR": str(pg.dir), **env}
    proc = subprocess.Popen([TF, "serve", "--port", str(port), "--workers", str(workers)], cwd=pg.dir, env=full,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return proc, log, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def pg100():
    pg = OwnPostgres(max_connections=100)
    yield pg
    pg.close()


async def _burst(base: str, tenants: list, per_tenant: int) -> list[tuple[str, int, str]]:
    """Every request at once: plain, streamed and idempotent chat completions (a 300 ms upstream,
    so they overlap), wallet and usage reads. (kind, status, body head) of each."""
    async def one(c: httpx.AsyncClient, t, i: int) -> tuple[str, int, str]:
        body = {"model": t.model, "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 5}
        kind = ("plain", "stream", "idempotent", "wallet", "usage")[i % 5]
        if kind == "wallet":
            r = await c.get("/v1/wallet", headers=t.auth)
        elif kind == "usage":
            r = await c.get("/v1/usage", params={"limit": 5}, headers=t.auth)
        else:
            headers = {**t.auth, **({"Idempotency-Key": f"burst-{i}"} if kind == "idempotent" else {})}
            r = await c.post("/v1/chat/completions", json={**body, "stream": kind == "stream"}, headers=headers)
        return kind, r.status_code, r.text[:200]

    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as c:
        return await asyncio.gather(*(one(c, t, i) for t in tenants for i in range(per_tenant)))


def test_four_workers_on_max_connections_100_never_meet_too_many_clients(pg100, fault_upstream):  # noqa: F811
    reserved = pg100.setting("superuser_reserved_connections")
    proc, log, port = start_serve(pg100, 4)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 90, proc, log)
        live = LiveGateway(f"http://127.0.0.1:{port}", fault_upstream, log, proc)
        tenants = [make_fault_tenant(live, fault_upstream, "slow:300", "slow:300") for _ in range(8)]
        with ConnectionSampler(pg100.url) as sampler:
            answers = asyncio.run(_burst(live.base, tenants, 60))
        refused = [a for a in answers if a[1] != 200]
        print(f"\nserve --workers 4, max_connections=100: {len(answers)} requests, {len(refused)} not 200, "
              f"peak {sampler.peak} connections")
        assert not refused, f"{len(refused)} of {len(answers)} answers were not 200: {refused[:5]}"
        assert sampler.peak <= 100 - reserved, f"the gateway held {sampler.peak} connections at once"
        assert "too many clients" not in log.read_text()
        live.verify()
        live.admin.close()
    finally:
        stop(proc)


def test_serve_refuses_a_server_too_small_naming_both_numbers():
    pg = OwnPostgres(max_connections=12)
    try:
        proc, log, _ = start_serve(pg, 4)
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            stop(proc)
            raise AssertionError(f"serve started on a server too small for 4 workers: {log.read_text()[-2000:]}") from None
        out = log.read_text()
        assert code == 2, out[-2000:]
        assert "4 workers" in out and "max_connections=12" in out, out[-2000:]
        assert "Traceback" not in out, out[-2000:]
    finally:
        pg.close()
