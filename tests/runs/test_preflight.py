"""POST /v1/preflight: the SPEC §5 panel for one request or a run, its estimates, warnings and
`ok_to_start`, its errors, and that it charges nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ok
from tokens_forge.runs.profiles import DEFAULT_PROFILES, MODES, ProfileBook

PANEL_FIELDS = {
    "api_key", "model", "mode", "route", "paying_bucket", "estimated_tokens", "estimated_cost_micros",
    "estimated_runtime_s", "minimum_recommended_balance_micros", "balance", "limits", "current_key_spend_micros",
    "retry_policy", "fallback_policy", "failed_request_charge_policy", "cancel", "receipt_location",
    "ledger_location", "warnings", "ok_to_start",
}


async def preflight(client, t, **body) -> dict:
    return ok(await client.post("/v1/preflight", json={"model": t.model, **body}, headers=t.auth), 200)


def codes(panel: dict) -> set[str]:
    return {w["code"] for w in panel["warnings"]}


async def test_panel_has_every_field_for_every_mode(client, tenant):
    t = await tenant()
    before = ok(await client.get("/v1/wallet", headers=t.auth))
    panels = {mode: await preflight(client, t, mode=mode) for mode in MODES}
    for mode, p in panels.items():
        assert set(p) == PANEL_FIELDS, set(p) ^ PANEL_FIELDS
        assert p["mode"] == mode and p["model"] == t.model
        assert p["api_key"] == {"id": t.key["id"], "name": "k", "prefix": t.key["prefix"]}
        assert p["route"]["id"] == t.routes["official"]["id"] and p["route"]["kind"] == "official"
        assert p["route"]["health"] == "healthy"
        assert p["paying_bucket"] == "credit" == p["balance"]["bucket"]
        assert p["balance"]["available_micros"] == 10_000_000
        for field in ("estimated_tokens", "estimated_cost_micros", "estimated_runtime_s"):
            assert 0 < p[field]["low"] <= p[field]["high"], (mode, field, p[field])
        assert p["minimum_recommended_balance_micros"] > p["estimated_cost_micros"]["high"]
        assert set(p["limits"]) == {"key_daily", "key_total", "key_per_request", "project_daily", "project_total"}
        assert set(p["limits"]["key_daily"]) >= {"limit", "spent", "remaining"}
        assert p["current_key_spend_micros"] == {"today": 0, "total": 0}
        assert p["retry_policy"]["max_attempts"] == 1
        assert p["fallback_policy"] == {"policy": "none", "routes": []}
        assert p["failed_request_charge_policy"]["charges_on_failure"] is False
        assert p["cancel"]["supported"] is True and p["cancel"]["url"].endswith("/cancel")
        assert p["receipt_location"].endswith("/receipt") and "run_id=" in p["ledger_location"]
        assert p["warnings"] == [] and p["ok_to_start"] is True
    for shallow, deep in (("quick", "standard"), ("standard", "deep")):
        for field in ("estimated_tokens", "estimated_cost_micros", "estimated_runtime_s"):
            for end in ("low", "high"):
                assert panels[shallow][field][end] < panels[deep][field][end], (shallow, deep, field, end)
    after = ok(await client.get("/v1/wallet", headers=t.auth))
    assert after["buckets"] == before["buckets"]
    assert ok(await client.get("/v1/usage", headers=t.auth))["data"] == []


async def test_one_request_estimate_matches_the_guard(client, tenant):
    t = await tenant()
    body = t.chat(max_tokens=20)
    p = await preflight(client, t, messages=body["messages"], max_tokens=20)
    assert p["cancel"]["supported"] is False and p["receipt_location"].startswith("/v1/receipts/")
    r = await client.post("/v1/chat/completions", json=body, headers=t.auth)
    ok(r)
    # the high estimate is the reservation the guard makes; the charge lies between low and high
    assert p["estimated_cost_micros"]["high"] == int(r.headers["x-tf-reserved-micros"])
    assert p["estimated_cost_micros"]["low"] <= int(r.headers["x-tf-charged-micros"])
    p2 = await preflight(client, t, messages=body["messages"], max_tokens=20)
    assert p2["current_key_spend_micros"]["total"] == int(r.headers["x-tf-charged-micros"])


async def test_low_balance_warns_and_blocks(client, tenant):
    quick_low = 300 * 1 + 100 * 2  # one call of the default quick profile at 1 and 2 micros per token
    t = await tenant(credit=quick_low - 1)
    p = await preflight(client, t, mode="quick")
    assert p["estimated_cost_micros"]["low"] == quick_low
    assert "balance_below_recommended" in codes(p)
    assert p["ok_to_start"] is False
    t2 = await tenant(credit=quick_low)
    p2 = await preflight(client, t2, mode="quick")
    assert p2["ok_to_start"] is True and "balance_below_recommended" in codes(p2)


async def test_key_minimum_balance_warning(client, tenant):
    t = await tenant(key={"min_balance_micros": 20_000_000})
    p = await preflight(client, t, mode="quick")
    assert "balance_below_key_minimum" in codes(p)
    assert p["ok_to_start"] is True  # a warning, not a refusal: the guard does not enforce it


async def test_near_spend_limit(client, tenant):
    t = await tenant(key={"limits": {"daily_micros": 5_000}}, project_limits={"total_micros": 100_000_000})
    p = await preflight(client, t, mode="standard")
    assert p["limits"]["key_daily"] == {"limit": 5_000, "spent": 0, "held": 0, "remaining": 5_000}
    assert p["limits"]["project_total"]["remaining"] == 100_000_000
    near = [w for w in p["warnings"] if w["code"] == "near_spend_limit"]
    assert len(near) == 1 and "key_daily" in near[0]["message"]
    assert p["ok_to_start"] is True  # the low estimate still fits
    tight = await tenant(key={"limits": {"total_micros": 100}})
    p = await preflight(client, tight, mode="quick")
    assert "near_spend_limit" in codes(p) and p["ok_to_start"] is False


async def test_per_request_cap_blocks_when_one_call_cannot_fit(client, tenant):
    t = await tenant(key={"limits": {"per_request_micros": 10}})
    p = await preflight(client, t, mode="quick")
    assert p["limits"]["key_per_request"]["limit"] == 10
    assert "near_spend_limit" in codes(p) and p["ok_to_start"] is False


async def test_fallback_changes_bucket_and_failures_may_charge(client, tenant):
    t = await tenant(key={"fallback_policy": "any_bucket"}, routed_charge={"mode": "flat", "flat_micros": 7})
    p = await preflight(client, t, mode="quick")
    assert {"fallback_changes_bucket", "failed_requests_may_charge"} <= codes(p)
    assert p["fallback_policy"]["policy"] == "any_bucket"
    [fb] = p["fallback_policy"]["routes"]
    assert fb["id"] == t.routes["routed"]["id"] and fb["changes_bucket"] is True and fb["bucket"] == "routed"
    policy = {r["route_id"]: r for r in p["failed_request_charge_policy"]["routes"]}
    assert policy[t.routes["routed"]["id"]]["mode"] == "flat"
    assert policy[t.routes["routed"]["id"]]["flat_micros"] == 7
    same = await tenant(key={"fallback_policy": "same_bucket"})
    assert codes(await preflight(client, same, mode="quick")) == set()


async def test_route_degraded(app, client, tenant):
    t = await tenant(official="fail500")
    for _ in range(5):
        r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
        assert r.status_code == 502
    await app.state.health.refresh()
    p = await preflight(client, t, mode="quick", route_preference="official")
    assert p["route"]["health"] in ("degraded", "down")
    assert "route_degraded" in codes(p)


async def test_runtime_of_a_slow_stream_is_its_duration_not_its_first_byte(app, client, tenant):
    t = await tenant(official="drip:10")  # 200 words 10 ms apart: about 2 s a stream, the first byte at once
    fresh = await preflight(client, t, mode="quick")
    assert "no finished call" in fresh["estimated_runtime_s"]["basis"]
    run = ok(await client.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 1_000_000},
                               headers=t.auth))

    async def stream():
        r = await client.post("/v1/chat/completions", json=t.chat(max_tokens=300, stream=True),
                              headers={**t.auth, "X-TF-Run-Id": run["id"]})
        assert r.status_code == 200 and "[DONE]" in r.text
        return ok(await client.get(f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))

    import asyncio

    receipts = await asyncio.gather(*(stream() for _ in range(3)))
    first_byte = max(rc["attempts"][0]["latency_ms"] for rc in receipts)
    assert first_byte < 1_000  # what the old estimate was built from
    quick = DEFAULT_PROFILES["quick"].calls
    p = await preflight(client, t, mode="quick")
    est = p["estimated_runtime_s"]
    assert est["low"] >= 1.9 * quick.low and est["high"] >= 1.9 * quick.high, est
    assert est["high"] <= 30 * quick.high  # never past the route's timeout per call
    assert "attempt start to end" in est["basis"] and "3 recent quick-run calls" in est["basis"], est
    assert t.routes["official"]["id"] in est["basis"]
    # no deep run yet: the route's calls in any mode; one request: the route's calls
    deep = (await preflight(client, t, mode="deep"))["estimated_runtime_s"]
    assert "any mode" in deep["basis"] and deep["low"] >= 1.9 * DEFAULT_PROFILES["deep"].calls.low
    one = (await preflight(client, t, messages=[{"role": "user", "content": "hi"}]))["estimated_runtime_s"]
    assert one["low"] >= 1.9 and "3 recent calls on route" in one["basis"]


async def test_failed_request_charge_policy_states_both_rules(client, tenant):
    t = await tenant(official_charge={"mode": "input_tokens"})
    policy = (await preflight(client, t, mode="quick"))["failed_request_charge_policy"]
    assert "route's failed_request_charge" in policy["rules"]["nothing_delivered"]
    assert "output tokens actually delivered" in policy["rules"]["content_delivered"]
    route = {r["route_id"]: r for r in policy["routes"]}[t.routes["official"]["id"]]
    assert "input tokens" in route["nothing_delivered"] and "delivered" in route["content_delivered"]
    assert route["meaning"].startswith("nothing delivered: its input tokens are charged; content delivered")


@pytest.mark.parametrize("body, param", [
    ({"mode": "ultra"}, "mode"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"content": "no role"}]}, "messages.0"),
    ({"route_preference": "cheap"}, "route_preference"),
    ({"surprise": 1}, "surprise"),
])
async def test_bad_body_is_400(client, tenant, body, param):
    t = await tenant()
    r = await client.post("/v1/preflight", json={"model": t.model, **body}, headers=t.auth)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and err["param"] == param


async def test_errors(client, tenant):
    t = await tenant()
    r = await client.post("/v1/preflight", content=b"{not json", headers={**t.auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = await client.post("/v1/preflight", json={}, headers=t.auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = await client.post("/v1/preflight", json={"model": "no-such-model"}, headers=t.auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    limited = await tenant(key={"allowed_models": ["something-else"]})
    r = await client.post("/v1/preflight", json={"model": limited.model}, headers=limited.auth)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    r = await client.post("/v1/preflight", json={"model": t.model, "run_id": "run_nope"}, headers=t.auth)
    assert r.status_code == 404 and r.json()["error"]["param"] == "run_id"
    r = await client.post("/v1/preflight", json={"model": t.model})
    assert r.status_code == 401


# -- mode profiles -----------------------------------------------------------------------------

def test_default_profiles_deepen_strictly():
    for shallow, deep in (("quick", "standard"), ("standard", "deep")):
        a, b = DEFAULT_PROFILES[shallow], DEFAULT_PROFILES[deep]
        for part in ("calls", "input_tokens", "output_tokens"):
            assert getattr(a, part).low < getattr(b, part).low
            assert getattr(a, part).high < getattr(b, part).high


def test_profiles_from_the_config_file(tmp_path: Path):
    cfg = tmp_path / "forge.yaml"
    cfg.write_text("""
models:
  tuned:
    profiles:
      deep:
        calls: {low: 40, high: 60}
        input_tokens: {low: 1000, high: 2000}
        output_tokens: {low: 100, high: 200}
""")
    book = ProfileBook(cfg)
    assert book.get("tuned", "deep").calls.high == 60
    assert book.get("tuned", "quick") == DEFAULT_PROFILES["quick"]
    assert book.get("other", "deep") == DEFAULT_PROFILES["deep"]
    assert ProfileBook(None).get("tuned", "deep") == DEFAULT_PROFILES["deep"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [")
    assert ProfileBook(broken).get("tuned", "deep") == DEFAULT_PROFILES["deep"]


async def test_panel_uses_the_models_profile(app, client, tenant, tmp_path: Path):
    t = await tenant()
    cfg = tmp_path / "forge.yaml"
    cfg.write_text(f"""
models:
  {t.model}:
    profiles:
      quick:
        calls: {{low: 2, high: 2}}
        input_tokens: {{low: 10, high: 10}}
        output_tokens: {{low: 5, high: 5}}
""")
    saved = getattr(app.state, "profiles", None)
    app.state.profiles = ProfileBook(cfg)
    try:
        p = await preflight(client, t, mode="quick")
    finally:
        app.state.profiles = saved
    assert p["estimated_tokens"]["low"] == p["estimated_tokens"]["high"] == 2 * (10 + 5)
    assert p["estimated_cost_micros"] == {"low": 2 * (10 + 2 * 5), "high": 2 * (10 + 2 * 5)}
