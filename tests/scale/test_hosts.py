"""Three gateway hosts behind nginx and PgBouncer keep the guarantees of one (SPEC §4, §8, §10):
a cap raced from all of them admits exactly what fits and the ledger posts exactly the cap; a
run cancel taken by one host cuts the run's streams on every host within 2 s; and the holds of a
host killed mid-stream are released, exactly once, by the hosts left."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import httpx

from tests.conftest import PRICE, Tenant, ok
from tests.runs.test_cancel_live import PROMPT, StreamWatch, settled_receipt
from tests.scale.conftest import Cluster

CAP_FITS = 25          # requests the key's total cap pays for
CAP_REQUESTS = 75      # sent at once, through nginx, to the three hosts
MAX_TOKENS = 10        # at 1 micro per output token and nothing for input: reserved = charged = 10
KILL_DEADLINE_S = 60   # generous: the hosts left find the dead one silent after TF_WORKER_DEAD_AFTER_S (3 s)


def cap_tenant(cluster: Cluster, cap: int) -> Tenant:
    """A key whose every request reserves exactly what it is charged (input free, the mock answers
    max_tokens tokens), so that the cap admits exactly cap / MAX_TOKENS requests in any order."""
    a, model = cluster.live.admin, "m-" + uuid.uuid4().hex[:10]
    acct = ok(a.post("/accounts", json={"name": model}))
    ok(a.post(f"/accounts/{acct['id']}/topups", json={"bucket": "credit", "amount_micros": 1_000_000,
                                                      "reference": model}))
    proj = ok(a.post("/projects", json={"account_id": acct["id"], "name": "p"}))
    route = ok(a.post("/routes", json={
        "model": model, "kind": "official", "base_url": cluster.live.mock_base, "upstream_model": "ok",
        "upstream_api_key": "sk-upstream-secret", "price": {"input_per_mtok": 0, "output_per_mtok": 1_000_000},
        "timeout_s": 30, "priority": 1}))
    key = ok(a.post("/keys", json={"project_id": proj["id"], "name": "k", "limits": {"total_micros": cap},
                                   "retry_policy": {"max_attempts": 1, "retry_on": [], "backoff_ms": 0}}))
    return Tenant(model, acct, proj, {"official": route}, key)


async def test_cap_race_across_hosts_admits_exactly_what_fits(cluster):
    cap = CAP_FITS * MAX_TOKENS
    t = cap_tenant(cluster, cap)
    body = {"model": t.model, "messages": [{"role": "user", "content": "race"}], "max_tokens": MAX_TOKENS}
    limits = httpx.Limits(max_connections=CAP_REQUESTS, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=cluster.nginx.base, timeout=60, limits=limits) as c:
        answers = await asyncio.gather(*(c.post("/v1/chat/completions", json=body, headers=t.auth)
                                         for _ in range(CAP_REQUESTS)))
        passed = [r for r in answers if r.status_code == 200]
        refused = [r for r in answers if r.status_code == 402]
        assert len(passed) == CAP_FITS and len(refused) == CAP_REQUESTS - CAP_FITS, \
            sorted({(r.status_code, r.text[:200]) for r in answers if r.status_code not in (200, 402)})
        assert {r.json()["error"]["code"] for r in refused} == {"spend_limit_exceeded"}
        assert sum(int(r.headers["x-tf-charged-micros"]) for r in passed) == cap
        wallet = ok(await c.get("/v1/wallet", headers=t.auth))
    assert wallet["key_spend_micros"]["total"] == cap
    assert wallet["buckets"]["credit"] == {"posted_micros": 1_000_000 - cap, "held_micros": 0,
                                           "available_micros": 1_000_000 - cap}
    [counter] = await cluster.fetch("SELECT pending_micros, posted_micros FROM spend_counters "
                                    "WHERE owner_id = $1 AND scope = 'key_total'", t.key["id"])
    assert (counter["pending_micros"], counter["posted_micros"]) == (0, cap)
    served = cluster.nginx.served("/v1/chat/completions")
    assert sorted(served) == sorted(str(h.port) for h in cluster.hosts), served  # every host took part
    cluster.live.verify()


async def test_cancel_on_one_host_cuts_streams_on_every_host(cluster):
    t = cluster.live.tenant(official="drip:50", routed=None)
    taker = cluster.hosts[0]  # takes the cancel; the streams of the other two are another host's
    async with httpx.AsyncClient(base_url=cluster.nginx.base, timeout=30) as c:
        run = ok(await c.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 1_000_000},
                              headers=t.auth))
        watches = [StreamWatch() for _ in cluster.hosts]
        tasks = [asyncio.create_task(w.run(h.base, t, run["id"])) for w, h in zip(watches, cluster.hosts, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(w.warm.wait() for w in watches)), 15)
        cancelled_at = time.monotonic()
        async with httpx.AsyncClient(base_url=taker.base, timeout=30) as direct:
            assert ok(await direct.post(f"/v1/runs/{run['id']}/cancel", headers=t.auth))["status"] == "cancelled"
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        input_tokens = math.ceil(len(PROMPT) / 4)  # what the mock upstream counts
        for host, w in zip(cluster.hosts, watches, strict=True):
            assert w.ended_at - cancelled_at < 2.0, f"{host.port}: ended {w.ended_at - cancelled_at:.2f}s after cancel"
            assert w.last is not None and w.last.get("error", {}).get("code") == "run_cancelled", w.last
            rc = await settled_receipt(c, t, w.receipt_id)
            assert rc["status"] == "cancelled"
            [attempt] = rc["attempts"]
            assert attempt["outcome"] == "cancelled" and attempt["completion_tokens"] == w.delivered
            expected = (input_tokens * PRICE["input_per_mtok"] + w.delivered * PRICE["output_per_mtok"]) // 10**6
            assert rc["total_charged_micros"] == expected
        shown = ok(await c.get(f"/v1/runs/{run['id']}", headers=t.auth))
        assert shown["status"] == "cancelled" and shown["held_micros"] == 0
    cluster.live.verify()


async def test_holds_of_a_killed_host_are_released_once_by_the_others(cluster):
    victim = cluster.hosts[-1]
    t = cluster.live.tenant(official="drip:200", routed=None)
    run_id = _run_id(cluster, t)
    watches = [StreamWatch() for _ in range(3)]
    tasks = [asyncio.create_task(w.run(victim.base, t, run_id)) for w in watches]
    await asyncio.wait_for(asyncio.gather(*(w.warm.wait() for w in watches)), 30)
    receipts = [w.receipt_id for w in watches]
    async with httpx.AsyncClient(base_url=cluster.nginx.base, timeout=30) as c:
        held = ok(await c.get("/v1/wallet", headers=t.auth))["buckets"]["credit"]["held_micros"]
    assert held > 0, "the streams hold their reservations"
    victim.kill()
    await asyncio.gather(*tasks, return_exceptions=True)  # the client sees its connection drop

    deadline = time.monotonic() + KILL_DEADLINE_S
    while time.monotonic() < deadline:
        rows = await cluster.fetch("SELECT status FROM holds WHERE receipt_id = ANY($1)", receipts)
        if rows and all(r["status"] != "open" for r in rows):
            break
        await asyncio.sleep(0.5)
    holds = await cluster.fetch("""
        SELECT h.id, h.status, h.amount, h.charged,
               count(*) FILTER (WHERE d.kind = 'wallet') AS taken, coalesce(sum(t.amount) FILTER (WHERE d.kind = 'wallet'), 0) AS taken_sum,
               count(*) FILTER (WHERE c.kind = 'wallet') AS given, coalesce(sum(t.amount) FILTER (WHERE c.kind = 'wallet'), 0) AS given_sum
          FROM holds h JOIN transfers t ON t.hold_id = h.id
          JOIN ledger_accounts d ON d.id = t.debit_account_id JOIN ledger_accounts c ON c.id = t.credit_account_id
         WHERE h.receipt_id = ANY($1) GROUP BY h.id, h.account_id""", receipts)
    assert len(holds) == len(receipts), holds
    for h in holds:
        # out of the wallet once, back into it once, all of it: nothing charged, nothing released twice
        assert h["status"] != "open" and h["charged"] == 0, dict(h)
        assert (h["taken"], h["given"]) == (1, 1) and h["taken_sum"] == h["given_sum"] == h["amount"], dict(h)
    async with httpx.AsyncClient(base_url=cluster.nginx.base, timeout=30) as c:  # served by the hosts left
        for receipt_id in receipts:
            assert (await settled_receipt(c, t, receipt_id))["status"] in ("failed", "cancelled")
        wallet = ok(await c.get("/v1/wallet", headers=t.auth))
    assert wallet["buckets"]["credit"] == {"posted_micros": 10_000_000, "held_micros": 0,
                                           "available_micros": 10_000_000}
    cluster.live.verify()


def _run_id(cluster: Cluster, t: Tenant) -> str:
    """The streams count against a run (StreamWatch sends one)."""
    return ok(httpx.post(cluster.nginx.base + "/v1/runs", headers=t.auth, timeout=30,
                         json={"model": t.model, "mode": "quick", "budget_micros": 1_000_000}))["id"]
