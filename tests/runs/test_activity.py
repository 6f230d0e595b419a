"""A run's live numbers: tokens so far, tokens and spend per minute (summing to the run receipt),
the projection against the budget; the preflight of a run about to be created is the one it
stores; operators list every account's runs and stop one (audited)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from tests.conftest import ok
from tokens_forge.runs.activity import projection

LOCATIONS = ("cancel", "receipt_location", "ledger_location")


async def test_run_activity_counts_tokens_and_spend_per_minute(client, tenant):
    t = await tenant()
    run = ok(await client.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 100_000},
                               headers=t.auth))
    for n in (3, 4):
        ok(await client.post("/v1/chat/completions", json=t.chat(max_tokens=n),
                             headers={**t.auth, "X-TF-Run-Id": run["id"]}))
    shown = ok(await client.get(f"/v1/runs/{run['id']}", headers=t.auth))
    act = shown["activity"]
    receipt = ok(await client.get(f"/v1/runs/{run['id']}/receipt", headers=t.auth))
    prompt = sum(r["prompt_tokens"] for r in receipt["requests"])
    assert act["tokens"] == {"prompt": prompt, "completion": 7, "total": prompt + 7}
    assert len(act["per_minute"]) == 10
    assert sum(m["tokens"] for m in act["per_minute"]) == prompt + 7
    assert sum(m["charged_micros"] for m in act["per_minute"]) == receipt["totals"]["charged_micros"] \
        == shown["spent_micros"]
    assert act["tokens_per_minute"] > 0 and act["spend_per_minute_micros"] > 0
    p = act["projection"]
    assert p["budget_micros"] == 100_000 and p["spend_micros"] >= shown["spent_micros"]
    assert p["exceeds_budget"] is (p["spend_micros"] > 100_000) and "runtime left" in p["basis"]


def test_projection_is_spent_plus_rate_over_the_runtime_left():
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    run = SimpleNamespace(spent_micros=1_000, held_micros=0, budget_micros=5_000,
                          preflight={"estimated_runtime_s": {"low": 60, "high": 600}})
    p = projection(run, 600, 60, now - timedelta(seconds=60), now)  # 600 micros/min, 540 s left
    assert p["spend_micros"] == 1_000 + 600 * 9 and p["exceeds_budget"] is True
    assert p["runtime_left_s"] == 540 and p["budget_lasts_minutes"] == round(4_000 / 600, 1)
    idle = projection(run, 0, 0, None, now)
    assert idle["spend_micros"] == 1_000 and idle["budget_lasts_minutes"] is None


async def test_preflight_of_a_run_to_be_created_is_the_one_it_stores(client, tenant):
    t = await tenant(credit=1_000)
    body = {"model": t.model, "mode": "standard", "route_preference": "official", "budget_micros": 50}
    shown = ok(await client.post("/v1/preflight", json=body, headers=t.auth))
    assert shown["limits"]["run"] == {"limit": 50, "spent": 0, "held": 0, "remaining": 50}
    assert shown["ok_to_start"] is False
    run = ok(await client.post("/v1/runs", json=body, headers=t.auth))
    stored = run["preflight"]
    assert {k: v for k, v in stored.items() if k not in LOCATIONS} == {
        k: v for k, v in shown.items() if k not in LOCATIONS}
    assert shown["cancel"]["url"] == "/v1/runs/{run_id}/cancel" and run["id"] in stored["cancel"]["url"]


async def test_admin_lists_every_accounts_runs_and_stops_one(client, admin, tenant):
    a, b = await tenant(), await tenant()
    ra = ok(await client.post("/v1/runs", json={"model": a.model, "mode": "quick", "budget_micros": 9_000},
                              headers=a.auth))
    rb = ok(await client.post("/v1/runs", json={"model": b.model, "mode": "quick", "budget_micros": 9_000},
                              headers=b.auth))
    listed = ok(await admin.get("/runs", params={"limit": 500}))["data"]
    assert {ra["id"], rb["id"]} <= {r["id"] for r in listed}
    mine = ok(await admin.get("/runs", params={"account_id": a.account["id"]}))["data"]
    assert [r["id"] for r in mine] == [ra["id"]] and mine[0]["account_id"] == a.account["id"]
    assert (await admin.get("/runs", params={"status": "bogus"})).status_code == 400
    stopped = ok(await admin.post(f"/runs/{ra['id']}/cancel"))
    assert stopped["status"] == "cancelled"
    r = await client.post("/v1/chat/completions", json=a.chat(), headers={**a.auth, "X-TF-Run-Id": ra["id"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "run_cancelled"
    [entry] = ok(await admin.get("/audit", params={"target_id": ra["id"]}))["data"]
    assert entry["action"] == "run.cancel" and entry["before"]["status"] == "ready"
    assert entry["after"]["status"] == "cancelled"
    assert ok(await admin.get(f"/runs/{rb['id']}"))["status"] == "ready"
    assert (await admin.get("/runs/run_missing")).status_code == 404
    assert (await client.get("/admin/v1/runs", headers=a.auth)).status_code == 401


async def test_admin_route_health_and_usage_summary(client, admin, tenant):
    t = await tenant()
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    health = ok(await admin.get("/route-health"))["data"]
    assert {t.routes["official"]["id"], t.routes["routed"]["id"]} <= {h["route_id"] for h in health}
    rows = ok(await admin.get("/usage/summary", params={"account_id": t.account["id"], "by": "key"}))["data"]
    assert [(r["group"], r["bucket"], r["requests"], r["charged_micros"]) for r in rows] == [
        (t.key["id"], "credit", 1, 13)]
    assert (await admin.get("/usage/summary", params={"by": "nothing"})).status_code == 400
