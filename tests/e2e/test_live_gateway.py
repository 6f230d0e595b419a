"""End to end: a real `tokens-forge serve --workers 2`, real PostgreSQL, the real mock upstream,
and the official OpenAI SDK as the client."""

import concurrent.futures as cf
import time

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import free_port, ok

MSG = [{"role": "user", "content": "hello world"}]


def sdk(live, t):
    return OpenAI(base_url=live.base + "/v1", api_key=t.secret, max_retries=0, timeout=30)


def wallet(live, t):
    return ok(httpx.get(live.base + "/v1/wallet", headers=t.auth))


def test_sdk_nonstream_and_stream_identical_to_upstream_and_exact(live_gateway):
    live, t = live_gateway, live_gateway.tenant()
    raw = sdk(live, t).chat.completions.with_raw_response.create(model=t.model, messages=MSG, max_tokens=5, seed=3,
                                                                 temperature=0.1)
    comp = raw.parse()
    assert comp.choices[0].message.content == "w0 w1 w2 w3 w4" and comp.usage.completion_tokens == 5
    assert raw.headers["x-tf-charged-micros"] == "13"
    stream = sdk(live, t).chat.completions.create(model=t.model, messages=MSG, max_tokens=7, stream=True,
                                                  stream_options={"include_usage": True})
    text, usage = "", None
    for ch in stream:
        if ch.choices:
            text += ch.choices[0].delta.content or ""
        usage = ch.usage or usage
    assert text == " ".join(f"w{i}" for i in range(7)) and usage.completion_tokens == 7
    time.sleep(0.3)
    w = wallet(live, t)
    assert w["buckets"]["credit"]["available_micros"] == 10_000_000 - 13 - 17
    assert w["buckets"]["credit"]["held_micros"] == 0
    live.verify()


def test_cap_race_across_two_workers(live_gateway):
    live, t = live_gateway, live_gateway.tenant(official="slow:6000")
    body = {"model": t.model, "messages": MSG, "max_tokens": 5}
    probe = httpx.post(live.base + "/v1/chat/completions", json=body, headers=t.auth, timeout=30)
    reserve, charge = int(probe.headers["x-tf-reserved-micros"]), int(probe.headers["x-tf-charged-micros"])
    ok(live.admin.patch(f"/keys/{t.key['id']}", json={"limits": {"total_micros": charge + 100 * reserve}}))
    limits = httpx.Limits(max_connections=200)
    with httpx.Client(timeout=60, limits=limits) as c, cf.ThreadPoolExecutor(200) as pool:
        codes = list(pool.map(lambda _: c.post(live.base + "/v1/chat/completions", json=body,
                                               headers=t.auth).status_code, range(200)))
    assert codes.count(200) == 100 and codes.count(402) == 100, sorted(codes)
    assert wallet(live, t)["key_spend_micros"]["total"] == 101 * charge
    live.verify()


def test_stream_cut_midway_ends_with_error_event(live_gateway):
    live, t = live_gateway, live_gateway.tenant(official="cut:3", key={"fallback_policy": "any_bucket"})
    with pytest.raises(openai.APIError) as e:
        for _ in sdk(live, t).chat.completions.create(model=t.model, messages=MSG, max_tokens=10, stream=True):
            pass
    assert "upstream" in str(e.value).lower()
    r = ok(httpx.get(live.base + "/v1/usage", headers=t.auth))["data"][0]
    assert r["status"] == "failed" and r["charged_micros"] == 3 + 3 * 2  # input + 3 delivered words
    live.verify()


def test_connect_refused_falls_back(live_gateway):
    live, t = live_gateway, live_gateway.tenant(key={"fallback_policy": "any_bucket"})
    closed = f"http://127.0.0.1:{free_port()}/v1"
    ok(live.admin.patch(f"/routes/{t.routes['official']['id']}", json={"base_url": closed}))
    time.sleep(1.2)  # route caches live one second
    r = httpx.post(live.base + "/v1/chat/completions", headers=t.auth,
                   json={"model": t.model, "messages": MSG, "max_tokens": 2})
    ok(r)
    rc = ok(httpx.get(live.base + f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))
    assert [(a["route_kind"], a["outcome"]) for a in rc["attempts"]] == [("official", "connect_error"),
                                                                          ("routed", "success")]
    live.verify()


def test_route_down_in_every_worker_then_recovers(live_gateway):
    live, t = live_gateway, live_gateway.tenant(official="fail500", key={"fallback_policy": "any_bucket"})
    body = {"model": t.model, "messages": MSG, "max_tokens": 2}
    for _ in range(6):
        httpx.post(live.base + "/v1/chat/completions", json=body, headers=t.auth, timeout=30)
    time.sleep(2.5)  # every worker refreshes route health every 2 s
    oid = t.routes["official"]["id"]
    for _ in range(6):  # new connections: both workers answer
        with httpx.Client() as c:
            states = {h["route_id"]: h["state"] for h in ok(c.get(live.base + "/v1/routes/health",
                                                                  headers=t.auth))["data"]}
            assert states[oid] == "down"
            r = c.post(live.base + "/v1/chat/completions", json=body, headers=t.auth)
            rc = ok(c.get(live.base + f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))
            assert [a["route_kind"] for a in rc["attempts"]] == ["routed"]
    live.verify()


def test_client_disconnect_mid_stream_charges_delivered_and_cancels(live_gateway):
    live, t = live_gateway, live_gateway.tenant(official="drip:40")
    read = 0
    with httpx.Client(timeout=30) as c, c.stream("POST", live.base + "/v1/chat/completions", headers=t.auth,
                                                 json={"model": t.model, "messages": MSG, "max_tokens": 300,
                                                       "stream": True}) as r:
        rid = r.headers["x-tf-receipt-id"]
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                read += 1
            if read == 10:
                break
    deadline = time.time() + 10
    while time.time() < deadline:
        rc = ok(httpx.get(live.base + f"/v1/receipts/{rid}", headers=t.auth))
        if rc["status"] != "pending":
            break
        time.sleep(0.2)
    assert rc["status"] == "cancelled" and rc["attempts"][0]["outcome"] == "cancelled"
    delivered = rc["attempts"][0]["completion_tokens"]
    assert 10 <= delivered <= 20
    assert rc["total_charged_micros"] == 3 + 2 * delivered
    assert wallet(live, t)["buckets"]["credit"]["held_micros"] == 0
    live.verify()
