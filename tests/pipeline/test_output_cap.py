"""The output cap field (SPEC §3 `output_cap_param`): a cap the gateway sets itself goes in the
route's field (default max_completion_tokens, which reasoning models require); a cap the client
sent is forwarded as sent. The mock's `reasoning` model refuses max_tokens as OpenAI's do."""

import asyncio

import httpx
import pytest

from tests.conftest import ok


async def last_body(mock_upstream_port, model: str) -> dict:
    async with httpx.AsyncClient() as c:
        return (await c.get(f"http://127.0.0.1:{mock_upstream_port}/_last/{model}")).json()


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_model_served_without_a_client_cap(client, tenant, mock_upstream_port, stream):
    t = await tenant(official="reasoning", routed=None)
    body = {"model": t.model, "messages": [{"role": "user", "content": "think"}], "stream": stream}
    r = await client.post("/v1/chat/completions", json=body, headers=t.auth)
    assert r.status_code == 200, r.text
    sent = await last_body(mock_upstream_port, "reasoning")
    assert "max_tokens" not in sent and sent["max_completion_tokens"] >= 1
    receipt = ok(await client.get(f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))
    assert receipt["status"] == "succeeded" and receipt["total_charged_micros"] > 0


async def test_route_that_takes_max_tokens(client, admin, tenant, mock_upstream_port):
    t = await tenant(official="ok", routed=None)
    ok(await admin.patch(f"/routes/{t.routes['official']['id']}", json={"output_cap_param": "max_tokens"}))
    body = {"model": t.model, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(20):  # the route cache keeps a route up to a second
        r = await client.post("/v1/chat/completions", json=body, headers=t.auth)
        assert r.status_code == 200, r.text
        sent = await last_body(mock_upstream_port, "ok")
        if "max_tokens" in sent:
            break
        await asyncio.sleep(0.1)
    assert sent["max_tokens"] >= 1 and "max_completion_tokens" not in sent


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_a_client_cap_is_forwarded_as_sent(client, tenant, mock_upstream_port, field):
    t = await tenant(official="ok", routed=None)
    body = {"model": t.model, "messages": [{"role": "user", "content": "hi"}], field: 3}
    r = await client.post("/v1/chat/completions", json=body, headers=t.auth)
    assert r.status_code == 200, r.text
    sent = await last_body(mock_upstream_port, "ok")
    assert {k: sent.get(k) for k in ("max_tokens", "max_completion_tokens")} == {
        "max_tokens": 3 if field == "max_tokens" else None,
        "max_completion_tokens": 3 if field == "max_completion_tokens" else None}


async def test_a_client_max_tokens_to_a_reasoning_model_is_the_upstreams_400(client, tenant):
    t = await tenant(official="reasoning", routed=None)
    r = await client.post("/v1/chat/completions", json=t.chat(max_tokens=4), headers=t.auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"
