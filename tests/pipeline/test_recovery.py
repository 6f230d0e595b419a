"""Recovery: released holds are released exactly once, a settle after the release books a late
charge once (never twice), and a gateway killed between reserve and settle leaves nothing the
sweeper cannot mend."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from tests.conftest import ADMIN, free_port, ok, wait_http
from tokens_forge.guard import service as guard
from tokens_forge.ids import new_id
from tokens_forge.ledger.sweeper import sweep_expired


async def _expired_hold(app, t, amount=500):
    """A receipt with one reserved attempt whose hold has already expired."""
    rid = new_id("rcpt")
    async with app.state.engine.begin() as conn:
        await conn.execute(text("""INSERT INTO receipts (id, account_id, project_id, key_id, model)
                                   VALUES (:r, :a, :p, :k, :m)"""),
                           {"r": rid, "a": t.account["id"], "p": t.project["id"], "k": t.key["id"], "m": t.model})
        res = await guard.reserve(conn, key_id=t.key["id"], bucket="credit", amount=amount, receipt_id=rid,
                                  attempt_no=1, run_id=None, ttl_s=-1)
    assert res.ok
    return rid, res.hold_id


async def _settle(app, hold_id, charge):
    async with app.state.engine.begin() as conn:
        return await guard.resolve(conn, hold_id=hold_id, charge=charge)


async def test_settle_vs_sweep_race_one_resolution_each(app, client, tenant):
    t = await tenant()
    for _ in range(40):
        _rid, hold = await _expired_hold(app, t)
        results = await asyncio.gather(_settle(app, hold, 200), sweep_expired(app.state.engine, dead_after_s=30),
                                       _settle(app, hold, 300), return_exceptions=True)
        assert not any(isinstance(r, BaseException) for r in results), results
        settles = (results[0], results[2])
        settled = [r for r in settles if r.resolved]
        late = [r for r in settles if not r.resolved and r.charged]
        async with app.state.engine.connect() as conn:
            status = (await conn.execute(text("SELECT status FROM holds WHERE id = :h"), {"h": hold})).scalar_one()
            n = (await conn.execute(text("SELECT count(*) FROM transfers WHERE hold_id = :h AND kind <> 'reserve'"),
                                    {"h": hold})).scalar_one()
        # exactly one resolution: one settle, or a sweep (ours or another worker's sweeper), after
        # which at most one settle books a late charge
        assert len(settled) <= 1 and status != "open" and len(late) <= (0 if settled else 1)
        assert n == (2 if settled or late else 1)  # settle + release, release + late charge, or one release
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    assert w["buckets"]["credit"]["held_micros"] == 0


async def test_settle_after_sweep_books_a_late_charge_once(app, client, tenant):
    t = await tenant()
    _rid, hold = await _expired_hold(app, t)
    await sweep_expired(app.state.engine, dead_after_s=30)  # or the app's own sweeper did, a moment before
    assert await app.state.pg.fetchval("SELECT status FROM holds WHERE id = $1", hold) == "expired"
    late = await _settle(app, hold, 400)
    assert not late.resolved and late.charged == 400
    again = await _settle(app, hold, 400)
    assert not again.resolved and again.charged == 0
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    assert w["buckets"]["credit"]["available_micros"] == 10_000_000 - 400


def _start_gateway(database, d: Path, port: int, **env_over):
    env = {**os.environ, **database.env(), "TF_ADMIN_TOKEN": ADMIN, "TF_DATA_DIR": str(d), **env_over}
    log = d / f"gw-{port}.log"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "tokens-forge"), "serve", "--port", str(port)],
                            cwd=d, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/healthz", 90, proc, log)
    return proc


def test_sigkill_between_reserve_and_settle_is_recovered(database, live_gateway, tmp_path):
    live = live_gateway
    t = live.tenant(official="slow:20000", timeout_s=30)
    port = free_port()
    # This process's sweeper is slow on purpose: another one must release what it owned.
    proc = _start_gateway(database, tmp_path, port, TF_SWEEP_INTERVAL_S="3600")
    base = f"http://127.0.0.1:{port}"

    def call():
        try:
            httpx.post(base + "/v1/chat/completions", headers=t.auth, timeout=60,
                       json={"model": t.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
        except httpx.HTTPError:
            pass

    import threading

    th = threading.Thread(target=call)
    th.start()
    deadline = time.time() + 15
    while time.time() < deadline:
        w = ok(httpx.get(live.base + "/v1/wallet", headers=t.auth))
        if w["buckets"]["credit"]["held_micros"] > 0:
            break
        time.sleep(0.05)
    assert w["buckets"]["credit"]["held_micros"] > 0, "the request reserved"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    th.join(10)
    # A new gateway (and the live one) sweep: the dead worker's hold is released exactly once.
    proc2 = _start_gateway(database, tmp_path, free_port(), TF_SWEEP_INTERVAL_S="0.5",
                           TF_WORKER_DEAD_AFTER_S="3")
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            w = ok(httpx.get(live.base + "/v1/wallet", headers=t.auth))
            if w["buckets"]["credit"]["held_micros"] == 0:
                break
            time.sleep(0.5)
        assert w["buckets"]["credit"] == {"posted_micros": 10_000_000, "held_micros": 0,
                                          "available_micros": 10_000_000}
        [row] = ok(httpx.get(live.base + "/v1/usage", headers=t.auth))["data"]
        assert row["status"] == "failed" and row["charged_micros"] == 0
        led = ok(httpx.get(live.base + "/v1/wallet/ledger", params={"receipt_id": row["receipt_id"]},
                           headers=t.auth))["data"]
        assert sorted(e["kind"] for e in led) == ["release", "reserve"]  # the wallet's side of each, once
        live.verify()
    finally:
        proc2.terminate()
        proc2.wait(15)
