"""Idempotency-Key: a repeat returns the first result with the same receipt and no new charge."""

import asyncio

from tests.conftest import ok


async def spent(client, t):
    return ok(await client.get("/v1/wallet", headers=t.auth))["key_spend_micros"]["total"]


async def test_sequential_replay_same_receipt_one_charge(client, tenant):
    t = await tenant()
    h = {**t.auth, "Idempotency-Key": "order-1"}
    first = await client.post("/v1/chat/completions", json=t.chat(), headers=h)
    again = await client.post("/v1/chat/completions", json=t.chat(), headers=h)
    assert first.status_code == again.status_code == 200
    assert first.content == again.content and again.headers["idempotent-replayed"] == "true"
    assert first.headers["x-tf-receipt-id"] == again.headers["x-tf-receipt-id"]
    assert again.headers["x-tf-charged-micros"] == "13" and await spent(client, t) == 13


async def test_stream_replay(client, tenant):
    t = await tenant()
    h = {**t.auth, "Idempotency-Key": "s-1"}
    first = await client.post("/v1/chat/completions", json=t.chat(stream=True), headers=h)
    again = await client.post("/v1/chat/completions", json=t.chat(stream=True), headers=h)
    assert first.text == again.text and again.headers["content-type"].startswith("text/event-stream")
    assert await spent(client, t) == 13


async def test_concurrent_repeats_charge_once(client, tenant):
    t = await tenant(official="slow:500")
    h = {**t.auth, "Idempotency-Key": "c-1"}
    rs = await asyncio.gather(*[client.post("/v1/chat/completions", json=t.chat(), headers=h) for _ in range(10)])
    codes = sorted(r.status_code for r in rs)
    assert codes.count(200) >= 1 and set(codes) <= {200, 409}, codes
    assert all(r.json()["error"]["code"] == "request_in_progress" for r in rs if r.status_code == 409)
    assert await spent(client, t) == 13
    later = await client.post("/v1/chat/completions", json=t.chat(), headers=h)
    assert later.status_code == 200 and later.headers["idempotent-replayed"] == "true"


async def test_same_key_different_body_is_400(client, tenant):
    t = await tenant()
    h = {**t.auth, "Idempotency-Key": "d-1"}
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=h))
    r = await client.post("/v1/chat/completions", json=t.chat(max_tokens=6), headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "idempotency_key_reused"
    assert await spent(client, t) == 13


async def test_refused_request_is_not_remembered(client, admin, tenant):
    t = await tenant(credit=5)
    h = {**t.auth, "Idempotency-Key": "r-1"}
    assert (await client.post("/v1/chat/completions", json=t.chat(), headers=h)).status_code == 402
    ok(await admin.post(f"/accounts/{t.account['id']}/topups",
                        json={"bucket": "credit", "amount_micros": 1_000_000, "reference": "more"}))
    assert (await client.post("/v1/chat/completions", json=t.chat(), headers=h)).status_code == 200
