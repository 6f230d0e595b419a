"""The proxy path in process: exact charges, headers, streaming, errors that change nothing."""

import json

import orjson
import pytest

from tests.conftest import ok

MSG = [{"role": "user", "content": "hello world"}]  # 11 chars -> 3 prompt tokens at the mock


def cost(pt, ct):
    return pt * 1 + ct * 2


async def wallet(client, t):
    return ok(await client.get("/v1/wallet", headers=t.auth))


async def test_nonstream_charges_usage_times_price(client, tenant):
    t = await tenant()
    r = await client.post("/v1/chat/completions", json=t.chat(max_tokens=5), headers=t.auth)
    body = ok(r)
    assert body["choices"][0]["message"]["content"] == "w0 w1 w2 w3 w4"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    h = r.headers
    assert h["x-tf-route-kind"] == "official" and h["x-tf-bucket"] == "credit"
    assert int(h["x-tf-reserved-micros"]) >= cost(3, 5)
    assert int(h["x-tf-charged-micros"]) == cost(3, 5)
    rc = ok(await client.get(f"/v1/receipts/{h['x-tf-receipt-id']}", headers=t.auth))
    assert rc["status"] == "succeeded" and rc["total_charged_micros"] == cost(3, 5)
    [att] = rc["attempts"]
    assert att["outcome"] == "success" and att["charged_micros"] == cost(3, 5)
    assert att["price_snapshot_id"] == t.routes["official"]["price"]["id"]
    w = await wallet(client, t)
    assert w["buckets"]["credit"] == {"posted_micros": 10_000_000 - 13, "held_micros": 0,
                                      "available_micros": 10_000_000 - 13}
    assert w["buckets"]["routed"]["available_micros"] == 10_000_000
    assert w["key_spend_micros"] == {"today": 13, "total": 13}
    led = ok(await client.get("/v1/wallet/ledger", params={"receipt_id": rc["id"], "include": "holds"},
                              headers=t.auth))
    kinds = sorted((e["kind"], e["account"]) for e in led["data"])
    assert kinds == [("release", "wallet"), ("reserve", "wallet"), ("settle", "hold")]  # one row per transfer
    settle = next(e for e in led["data"] if e["kind"] == "settle")
    assert settle["hold_amount_micros"] == -13 and settle["amount_micros"] == 0 and settle["attempt"] == 1


async def test_stream_passes_chunks_and_charges_exactly(client, tenant):
    t = await tenant()
    r = await client.post("/v1/chat/completions", headers=t.auth,
                          json=t.chat(max_tokens=7, stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == " ".join(f"w{i}" for i in range(7))
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    rc = ok(await client.get(f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))
    assert rc["status"] == "succeeded" and rc["total_charged_micros"] == cost(3, 7) and not rc["usage_estimated"]


async def test_stream_usage_chunk_only_when_asked(client, tenant):
    t = await tenant()
    r = await client.post("/v1/chat/completions", headers=t.auth, json=t.chat(max_tokens=4, stream=True))
    assert '"usage"' not in r.text
    assert (await wallet(client, t))["buckets"]["credit"]["available_micros"] == 10_000_000 - cost(3, 4)


async def test_missing_usage_is_estimated_and_marked(client, tenant):
    t = await tenant(official="nousage")
    r = await client.post("/v1/chat/completions", json=t.chat(max_tokens=4), headers=t.auth)
    ok(r)
    rc = ok(await client.get(f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))
    assert rc["usage_estimated"] is True and rc["total_charged_micros"] > 0
    assert rc["total_charged_micros"] == int(r.headers["x-tf-charged-micros"])


async def test_gateway_sets_max_tokens_within_budget(client, admin, tenant):
    t = await tenant(credit=400)
    body = {"model": t.model, "messages": MSG}
    r = await client.post("/v1/chat/completions", json=body, headers=t.auth)
    ok(r)
    assert int(r.headers["x-tf-reserved-micros"]) <= 400
    assert (await wallet(client, t))["buckets"]["credit"]["available_micros"] >= 0


@pytest.mark.parametrize("body,status,code", [
    ("{not json", 400, "invalid_request"),
    (json.dumps({"model": "MODEL"}), 400, "invalid_request"),
    (json.dumps({"model": 5, "messages": "hi"}), 400, "invalid_request"),
    (json.dumps({"messages": MSG}), 400, "invalid_request"),
    (json.dumps({"model": "MODEL", "messages": MSG, "max_tokens": -3}), 400, "invalid_request"),
    (json.dumps({"model": "MODEL", "messages": MSG, "max_tokens": "lots"}), 400, "invalid_request"),
    (json.dumps({"model": "MODEL", "messages": MSG, "max_tokens": 10**12}), 400, "invalid_request"),
    (json.dumps({"model": "MODEL", "messages": MSG, "n": 100000}), 400, "invalid_request"),
    (json.dumps({"model": "MODEL", "messages": MSG, "stream": "yes"}), 400, "invalid_request"),
    (json.dumps({"model": "MODEL", "messages": [1, 2]}), 400, "invalid_request"),
    (json.dumps({"model": "no-such-model-zz", "messages": MSG}), 404, "model_not_found"),
    (json.dumps([1, 2, 3]), 400, "invalid_request"),
    ("", 400, "invalid_request"),
    (b"\xff\xfe\x00garbage", 400, "invalid_request"),
])
async def test_bad_input_clear_error_nothing_charged(client, tenant, body, status, code):
    t = await tenant()
    content = body.replace("MODEL", t.model) if isinstance(body, str) else body
    r = await client.post("/v1/chat/completions", content=content,
                          headers={**t.auth, "content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and "type" in err
    w = await wallet(client, t)
    assert w["buckets"]["credit"]["available_micros"] == 10_000_000 and w["buckets"]["credit"]["held_micros"] == 0


async def test_oversized_body_is_413(client, tenant):
    t = await tenant()
    big = "x" * (9 * 1024 * 1024)
    r = await client.post("/v1/chat/completions", json=t.chat(messages=[{"role": "user", "content": big}]),
                          headers=t.auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer tf-nonexistent", "Basic abc", "Bearer " + "a" * 5000,
                                  "Bearer sk-not-ours"])
async def test_bad_keys_401(client, tenant, auth):
    t = await tenant()
    r = await client.post("/v1/chat/completions", json=t.chat(), headers={"Authorization": auth} if auth else {})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_model_and_route_kind_permissions(client, tenant):
    t = await tenant(key={"allowed_models": ["something-else"]})
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    t = await tenant(routed=None, key={"allowed_route_kinds": ["routed"]})
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 403 and r.json()["error"]["code"] == "route_not_allowed"


async def test_route_preference_header_picks_the_bucket(client, tenant):
    t = await tenant()
    r = await client.post("/v1/chat/completions", json=t.chat(), headers={**t.auth, "X-TF-Route-Preference": "routed"})
    ok(r)
    assert r.headers["x-tf-route-kind"] == "routed" and r.headers["x-tf-bucket"] == "routed"
    w = await wallet(client, t)
    assert w["buckets"]["routed"]["available_micros"] == 10_000_000 - 13
    assert w["buckets"]["credit"]["available_micros"] == 10_000_000
    r = await client.post("/v1/chat/completions", json=t.chat(), headers={**t.auth, "X-TF-Route-Preference": "cheap"})
    assert r.status_code == 400


@pytest.mark.parametrize("limits,project_limits,code,scope_words", [
    ({"per_request_micros": 50}, None, "spend_limit_exceeded", "per-request"),
    ({"daily_micros": 50}, None, "spend_limit_exceeded", "daily"),
    ({"total_micros": 50}, None, "spend_limit_exceeded", "key's total"),
    ({}, {"daily_micros": 50}, "spend_limit_exceeded", "project's daily"),
    ({}, {"total_micros": 50}, "spend_limit_exceeded", "project's total"),
])
async def test_caps_refuse_with_402_and_rejected_receipt(client, tenant, limits, project_limits, code, scope_words):
    t = await tenant(key={"limits": limits}, project_limits=project_limits)
    r = await client.post("/v1/chat/completions", json=t.chat(max_tokens=100), headers=t.auth)
    assert r.status_code == 402, r.text
    err = r.json()["error"]
    assert err["type"] == "spend_guard_error" and err["code"] == code
    assert scope_words in err["message"] and "50 micros left" in err["message"]
    rid = r.headers["x-tf-receipt-id"]
    assert err["receipt_id"] == rid
    rc = ok(await client.get(f"/v1/receipts/{rid}", headers=t.auth))
    assert rc["status"] == "rejected" and rc["total_charged_micros"] == 0 and rc["attempts"] == []
    w = await wallet(client, t)
    assert w["buckets"]["credit"]["available_micros"] == 10_000_000


async def test_insufficient_balance(client, tenant):
    t = await tenant(credit=10)
    r = await client.post("/v1/chat/completions", json=t.chat(max_tokens=100), headers=t.auth)
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_balance"
    assert "10 micros available" in r.json()["error"]["message"]


async def test_tenants_are_isolated(client, tenant):
    a, b = await tenant(), await tenant()
    r = await client.post("/v1/chat/completions", json=a.chat(), headers=a.auth)
    rid = r.headers["x-tf-receipt-id"]
    assert (await client.get(f"/v1/receipts/{rid}", headers=b.auth)).status_code == 404
    led = ok(await client.get("/v1/wallet/ledger", params={"receipt_id": rid}, headers=b.auth))
    assert led["data"] == []
    assert rid not in (await client.get("/v1/usage", headers=b.auth)).text
    assert rid not in (await client.get("/v1/usage", params={"format": "csv"}, headers=b.auth)).text


async def test_models_lists_routes_and_prices(client, tenant):
    t = await tenant(key={"allowed_route_kinds": ["routed"]})
    m = ok(await client.get("/v1/models", headers=t.auth))
    [mine] = [x for x in m["data"] if x["id"] == t.model]
    assert [r["kind"] for r in mine["routes"]] == ["routed"]
    assert mine["routes"][0]["price"]["input_per_mtok"] == 1_000_000
