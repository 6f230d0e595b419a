"""Every refusal of a valid key leaves a `rejected` receipt (SPEC §3): the error body and
X-TF-Receipt-Id name it, it is counted on its run, and nothing is charged."""

from __future__ import annotations

import pytest

from tests.conftest import ok


async def receipt_of(client, t, r) -> dict:
    rid = r.headers["x-tf-receipt-id"]
    assert r.json()["error"]["receipt_id"] == rid
    rc = ok(await client.get(f"/v1/receipts/{rid}", headers=t.auth))
    assert rc["status"] == "rejected" and rc["total_charged_micros"] == 0 and rc["attempts"] == []
    return rc


@pytest.mark.parametrize(("control", "code"), [("pause", "run_paused"), ("cancel", "run_cancelled"),
                                                ("finish", "run_finished")])
async def test_a_run_that_accepts_nothing_gives_a_receipt_and_counts_it(client, tenant, control, code):
    t = await tenant()
    run = ok(await client.post("/v1/runs", headers=t.auth, json={"model": t.model, "budget_micros": 100_000}))
    ok(await client.post(f"/v1/runs/{run['id']}/{control}", headers=t.auth))
    r = await client.post("/v1/chat/completions", headers={**t.auth, "X-TF-Run-Id": run["id"]}, json=t.chat())
    assert r.status_code == 409 and r.json()["error"]["code"] == code
    rc = await receipt_of(client, t, r)
    assert rc["run_id"] == run["id"] and rc["error_code"] == code
    shown = ok(await client.get(f"/v1/runs/{run['id']}", headers=t.auth))
    assert shown["rejected_requests"] == 1 == shown["requests"]["rejected"]
    failures = ok(await client.get("/v1/usage", headers=t.auth))["data"]
    assert any(u["receipt_id"] == rc["id"] and u["status"] == "rejected" for u in failures)


async def test_a_model_the_key_may_not_use_and_one_that_does_not_exist(client, tenant):
    t = await tenant(key={"allowed_models": ["something-else"]})
    r = await client.post("/v1/chat/completions", headers=t.auth, json=t.chat())
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    await receipt_of(client, t, r)
    t2 = await tenant()
    r = await client.post("/v1/chat/completions", headers=t2.auth, json=t2.chat(model="no-such-model"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    rc = await receipt_of(client, t2, r)
    assert rc["model"] == "no-such-model"


async def test_a_route_kind_the_key_may_not_use(client, tenant):
    t = await tenant(routed=None, key={"allowed_route_kinds": ["routed"]})
    r = await client.post("/v1/chat/completions", headers=t.auth, json=t.chat())
    assert r.status_code == 403 and r.json()["error"]["code"] == "route_not_allowed"
    await receipt_of(client, t, r)


async def test_another_accounts_run_leaves_no_trace_of_it(client, tenant):
    a, b = await tenant(), await tenant()
    run = ok(await client.post("/v1/runs", headers=b.auth, json={"model": b.model, "budget_micros": 1000}))
    r = await client.post("/v1/chat/completions", headers={**a.auth, "X-TF-Run-Id": run["id"]}, json=a.chat())
    assert r.status_code == 404
    rc = await receipt_of(client, a, r)
    assert rc["run_id"] is None and run["id"] not in (rc["reason"] or "")
    assert ok(await client.get(f"/v1/runs/{run['id']}", headers=b.auth))["rejected_requests"] == 0


async def test_a_body_too_large_from_a_valid_key(client, tenant, app):
    t = await tenant()
    big = "x" * (app.state.settings.max_body_bytes + 1)
    r = await client.post("/v1/chat/completions", headers=t.auth, json=t.chat(messages=[{"role": "user", "content": big}]))
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    await receipt_of(client, t, r)
