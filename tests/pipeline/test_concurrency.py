"""No cap is exceeded and no bucket goes negative, however many requests race."""

import asyncio

from tests.conftest import ok


async def _probe(client, t, body):
    r = await client.post("/v1/chat/completions", json=body, headers=t.auth)
    ok(r)
    return int(r.headers["x-tf-reserved-micros"]), int(r.headers["x-tf-charged-micros"])


async def test_key_cap_race_exactly_100_of_200(client, admin, tenant):
    t = await tenant(official="slow:5000")
    body = t.chat(max_tokens=5)
    reserve, charge = await _probe(client, t, body)
    ok(await admin.patch(f"/keys/{t.key['id']}", json={"limits": {"total_micros": charge + 100 * reserve}}))
    rs = await asyncio.gather(*[client.post("/v1/chat/completions", json=body, headers=t.auth) for _ in range(200)])
    codes = sorted(r.status_code for r in rs)
    assert codes.count(200) == 100 and codes.count(402) == 100, codes
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    assert w["key_spend_micros"]["total"] == charge * 101 <= charge + 100 * reserve


async def test_bucket_with_funds_for_a_few_never_goes_negative(client, admin, tenant):
    t = await tenant(official="slow:800")
    body = t.chat(max_tokens=5)
    reserve, charge = await _probe(client, t, body)
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    left = w["buckets"]["credit"]["available_micros"]
    ok(await admin.post(f"/accounts/{t.account['id']}/adjustments",
                        json={"bucket": "credit", "amount_micros": -(left - 5 * reserve), "reason": "test"}))
    rs = await asyncio.gather(*[client.post("/v1/chat/completions", json=body, headers=t.auth) for _ in range(30)])
    assert sum(r.status_code == 200 for r in rs) == 5
    assert all(r.json()["error"]["code"] == "insufficient_balance" for r in rs if r.status_code != 200)
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    assert w["buckets"]["credit"]["available_micros"] == 5 * (reserve - charge) >= 0
