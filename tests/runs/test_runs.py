"""Runs over ASGI: create with a stored preflight, list with paging, show, control (pause,
resume, cancel, finish) with conditional transitions, the run budget under concurrency, the
run receipt, and tenant isolation."""

from __future__ import annotations

import asyncio

from tests.conftest import ok


async def create_run(client, t, **over) -> dict:
    body = {"model": t.model, "mode": "quick", "budget_micros": 100_000, "name": "report"}
    body.update(over)
    r = await client.post("/v1/runs", json=body, headers=t.auth)
    assert r.status_code == 201, r.text
    return r.json()


async def control(client, t, run_id: str, action: str, status: int = 200) -> dict:
    r = await client.post(f"/v1/runs/{run_id}/{action}", headers=t.auth)
    assert r.status_code == status, r.text
    return r.json()


async def chat(client, t, run_id: str, **over):
    return await client.post("/v1/chat/completions", json=t.chat(**over), headers={**t.auth, "X-TF-Run-Id": run_id})


async def test_create_stores_the_preflight(client, tenant):
    t = await tenant()
    run = await create_run(client, t, budget_micros=1_234_567, route_preference="routed")
    assert run["id"].startswith("run_") and run["object"] == "run"
    assert run["status"] == "ready" and run["mode"] == "quick" and run["name"] == "report"
    assert run["budget_micros"] == 1_234_567 and run["remaining_micros"] == 1_234_567
    assert run["spent_micros"] == run["held_micros"] == 0 and run["last_activity_at"] is None
    assert run["requests"]["total"] == 0 and run["partial_failures"]["count"] == 0
    pf = run["preflight"]
    assert pf["mode"] == "quick" and pf["paying_bucket"] == "routed"
    assert pf["limits"]["run"] == {"limit": 1_234_567, "spent": 0, "held": 0, "remaining": 1_234_567}
    assert pf["cancel"] == {"supported": True, "url": f"/v1/runs/{run['id']}/cancel"}
    assert pf["receipt_location"] == f"/v1/runs/{run['id']}/receipt"
    assert ok(await client.get(f"/v1/runs/{run['id']}", headers=t.auth)) == run


async def test_create_rejects_bad_bodies(client, tenant):
    t = await tenant()
    for body, param in (({"mode": "quick"}, "model"), ({"model": t.model, "mode": "x", "budget_micros": 1}, "mode"),
                        ({"model": t.model}, "budget_micros"),
                        ({"model": t.model, "budget_micros": -1}, "budget_micros")):
        r = await client.post("/v1/runs", json=body, headers=t.auth)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = await client.post("/v1/runs", json={"model": "nope", "budget_micros": 1}, headers=t.auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert ok(await client.get("/v1/runs", headers=t.auth))["data"] == []


async def test_tiny_budget_is_not_ok_to_start(client, tenant):
    t = await tenant()
    run = await create_run(client, t, budget_micros=10)
    assert run["preflight"]["ok_to_start"] is False
    assert "near_spend_limit" in {w["code"] for w in run["preflight"]["warnings"]}
    p = ok(await client.post("/v1/preflight", json={"model": t.model, "run_id": run["id"]}, headers=t.auth))
    assert p["mode"] == "quick" and p["limits"]["run"]["limit"] == 10 and p["ok_to_start"] is False


async def test_lifecycle(client, tenant):
    t = await tenant()
    run = await create_run(client, t)
    rid = run["id"]
    r = await chat(client, t, rid)
    ok(r)
    charged = int(r.headers["x-tf-charged-micros"])
    shown = ok(await client.get(f"/v1/runs/{rid}", headers=t.auth))
    assert shown["status"] == "running" and shown["last_activity_at"] is not None
    assert shown["spent_micros"] == charged and shown["held_micros"] == 0
    assert shown["remaining_micros"] == 100_000 - charged
    assert shown["requests"]["total"] == shown["requests"]["succeeded"] == 1

    assert (await control(client, t, rid, "pause"))["status"] == "paused"
    assert (await control(client, t, rid, "pause"))["status"] == "paused"  # a retry is harmless
    r = await chat(client, t, rid)
    assert r.status_code == 409 and r.json()["error"]["code"] == "run_paused"
    p = ok(await client.post("/v1/preflight", json={"model": t.model, "run_id": rid}, headers=t.auth))
    assert p["ok_to_start"] is False and p["limits"]["run"]["spent"] == charged

    assert (await control(client, t, rid, "resume"))["status"] == "running"
    ok(await chat(client, t, rid))
    assert (await control(client, t, rid, "finish"))["status"] == "finished"
    r = await chat(client, t, rid)
    assert r.status_code == 409 and r.json()["error"]["code"] == "run_finished"
    for action in ("resume", "pause", "cancel"):
        err = (await control(client, t, rid, action, 409))["error"]
        assert err["code"] == "run_finished" and "finished" in err["message"]
    final = ok(await client.get(f"/v1/runs/{rid}", headers=t.auth))
    assert final["status"] == "finished" and final["spent_micros"] == 2 * charged


async def test_resume_of_an_unused_run_is_ready_and_cancel_is_final(client, tenant):
    t = await tenant()
    rid = (await create_run(client, t))["id"]
    await control(client, t, rid, "pause")
    assert (await control(client, t, rid, "resume"))["status"] == "ready"
    assert (await control(client, t, rid, "cancel"))["status"] == "cancelled"
    assert (await control(client, t, rid, "cancel"))["status"] == "cancelled"
    r = await chat(client, t, rid)
    assert r.status_code == 409 and r.json()["error"]["code"] == "run_cancelled"
    for action in ("resume", "pause", "finish"):
        err = (await control(client, t, rid, action, 409))["error"]
        assert err["code"] == "run_cancelled" and f"run {rid} is cancelled" in err["message"]


async def test_concurrent_controls_end_in_one_state(client, tenant):
    t = await tenant()
    rid = (await create_run(client, t))["id"]
    answers = await asyncio.gather(*[client.post(f"/v1/runs/{rid}/{a}", headers=t.auth)
                                     for a in ("cancel", "finish") * 5])
    wins = {r.json()["status"] for r in answers if r.status_code == 200}
    assert len(wins) == 1, wins  # whichever came first; the other is refused every time
    assert all(r.status_code in (200, 409) for r in answers)


async def test_run_budget_holds_under_50_concurrent_requests(client, tenant):
    t = await tenant(official="slow:300")  # slow enough that the reservations overlap
    # one request reserves ~160 and costs 13 micros: the first always fits, 50 never do
    budget = 400
    rid = (await create_run(client, t, budget_micros=budget))["id"]
    answers = await asyncio.gather(*[chat(client, t, rid) for _ in range(50)])
    statuses = [r.status_code for r in answers]
    assert 200 in statuses and 402 in statuses, statuses
    assert set(statuses) <= {200, 402}
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 402} == {"spend_limit_exceeded"}
    run = ok(await client.get(f"/v1/runs/{rid}", headers=t.auth))
    assert run["held_micros"] == 0
    assert run["spent_micros"] <= budget
    assert run["spent_micros"] == sum(int(r.headers["x-tf-charged-micros"]) for r in answers if r.status_code == 200)
    assert run["requests"]["succeeded"] == statuses.count(200)
    wallet = ok(await client.get("/v1/wallet", headers=t.auth))
    assert wallet["buckets"]["credit"]["available_micros"] == 10_000_000 - run["spent_micros"]
    # the ledger is verified after every test (conftest)


async def test_list_newest_first_with_cursor(client, tenant):
    t = await tenant()
    ids = [(await create_run(client, t, name=f"r{i}"))["id"] for i in range(3)]
    first = ok(await client.get("/v1/runs?limit=2", headers=t.auth))
    assert first["object"] == "list" and [r["id"] for r in first["data"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = ok(await client.get(f"/v1/runs?limit=2&cursor={first['next_cursor']}", headers=t.auth))
    assert [r["id"] for r in second["data"]] == ids[:1] and second["next_cursor"] is None
    assert (await client.get("/v1/runs?limit=501", headers=t.auth)).status_code == 400
    assert (await client.get("/v1/runs?cursor=garbage", headers=t.auth)).status_code == 400


async def test_run_receipt(client, tenant):
    t = await tenant(official="fail500", official_charge={"mode": "flat", "flat_micros": 5},
                     key={"fallback_policy": "any_bucket"})
    rid = (await create_run(client, t))["id"]
    charged = 0
    for _ in range(3):
        r = await chat(client, t, rid)
        ok(r)
        charged += int(r.headers["x-tf-charged-micros"])
    rc = ok(await client.get(f"/v1/runs/{rid}/receipt", headers=t.auth))
    assert rc["object"] == "run.receipt" and rc["run"]["id"] == rid
    assert len(rc["requests"]) == 3 and all(len(q["attempts"]) == 2 for q in rc["requests"])
    totals = rc["totals"]
    assert totals["charged_micros"] == charged == totals["ledger_charged_micros"] and totals["matches_ledger"]
    assert totals["failed_request_charges_micros"] == 3 * 5
    assert totals["by_bucket"]["credit"]["charged_micros"] == 15
    assert totals["by_bucket"]["routed"]["charged_micros"] == charged - 15
    assert [f["charged_micros"] for f in rc["failed_request_charges"]] == [5, 5, 5]
    kinds = {e["kind"] for e in rc["ledger"]["entries"]}
    assert {"reserve", "settle", "failure_charge", "release"} <= kinds
    wallet = ok(await client.get("/v1/wallet", headers=t.auth))
    spent = 20_000_000 - sum(b["available_micros"] + b["held_micros"] for b in wallet["buckets"].values())
    assert spent == charged
    run = ok(await client.get(f"/v1/runs/{rid}", headers=t.auth))
    assert run["partial_failures"]["count"] == 3 and run["partial_failures"]["charged_micros"] == 15
    assert run["requests"]["succeeded"] == 3


async def test_tenant_isolation(client, tenant):
    a, b = await tenant(), await tenant()
    rid = (await create_run(client, a))["id"]
    for path in (f"/v1/runs/{rid}", f"/v1/runs/{rid}/receipt"):
        r = await client.get(path, headers=b.auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
    for action in ("pause", "resume", "cancel", "finish"):
        r = await client.post(f"/v1/runs/{rid}/{action}", headers=b.auth)
        assert r.status_code == 404, action
    assert ok(await client.get("/v1/runs", headers=b.auth))["data"] == []
    r = await client.post("/v1/chat/completions", json=b.chat(), headers={**b.auth, "X-TF-Run-Id": rid})
    assert r.status_code == 404
    r = await client.post("/v1/preflight", json={"model": b.model, "run_id": rid}, headers=b.auth)
    assert r.status_code == 404
    assert ok(await client.get(f"/v1/runs/{rid}", headers=a.auth))["status"] == "ready"
