from tests.conftest import ok


async def test_revoke_key_refuses_it(client, admin, tenant):
    t = await tenant()
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    k = ok(await admin.post(f"/keys/{t.key['id']}/revoke"))
    assert k["status"] == "revoked" and k["revoked_at"]
    import asyncio

    await asyncio.sleep(0.3)
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
