from tests.conftest import ok


async def test_tenant_and_chat(client, tenant):
    t = await tenant()
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    body = ok(r)
    assert body["choices"][0]["message"]["content"] == "w0 w1 w2 w3 w4"
    assert r.headers["x-tf-charged-micros"] == str(3 + 5 * 2)
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    assert w["buckets"]["credit"]["available_micros"] == 10_000_000 - 13
