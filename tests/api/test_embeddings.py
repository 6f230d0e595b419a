"""POST /v1/embeddings through the gateway with the official SDK: only on routes whose `apis`
include embeddings; reserved for input tokens only, charged the upstream's prompt tokens at
`input_per_mtok`; receipts (`endpoint: embeddings`), usage rows and the ledger like any request."""

import httpx
import openai
import orjson
import pytest

from tests.conftest import PRICE, ok
from tokens_forge.embeddings.request import parse_embeddings_request
from tokens_forge.guard import money


def sdk(app, t) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test/v1", timeout=30)
    return openai.AsyncOpenAI(api_key=t.secret, base_url="http://gw.test/v1", http_client=http, max_retries=0)


async def embedding_tenant(tenant, admin, **kw):
    t = await tenant(routed=None, **kw)
    ok(await admin.patch(f"/routes/{t.routes['official']['id']}", json={"apis": ["embeddings"]}))
    return t


async def test_sdk_embeddings_charged_for_input_tokens(app, client, admin, tenant):
    t = await embedding_tenant(tenant, admin)
    raw = await sdk(app, t).embeddings.with_raw_response.create(model=t.model, input=["hello world", "ab"],
                                                                dimensions=4)
    out = raw.parse()
    assert [len(d.embedding) for d in out.data] == [4, 4]  # the SDK's base64 decoded
    rid = raw.headers["x-tf-receipt-id"]
    receipt = ok(await client.get(f"/v1/receipts/{rid}", headers=t.auth))
    expected = money.cost(out.usage.prompt_tokens, 0, money.Price(**PRICE))
    assert (receipt["endpoint"], receipt["status"], receipt["completion_tokens"]) == ("embeddings", "succeeded", 0)
    assert receipt["prompt_tokens"] == out.usage.prompt_tokens == 4  # ceil(11/4) + ceil(2/4)
    assert receipt["total_charged_micros"] == expected == int(raw.headers["x-tf-charged-micros"])
    [row] = ok(await client.get("/v1/usage", headers=t.auth))["data"]
    assert (row["receipt_id"], row["charged_micros"], row["completion_tokens"]) == (rid, expected, 0)
    led = ok(await client.get("/v1/wallet/ledger", params={"receipt_id": rid}, headers=t.auth))["data"]
    assert -sum(e["amount_micros"] for e in led) == expected  # the wallet: reserve, release


async def test_reservation_is_input_only(client, admin, tenant):
    t = await embedding_tenant(tenant, admin)
    raw = orjson.dumps({"model": t.model, "input": "x" * 500})
    r = await client.post("/v1/embeddings", content=raw, headers={**t.auth, "content-type": "application/json"})
    assert r.status_code == 200, r.text
    sizing = money.size_attempt(parse_embeddings_request(raw).shape, money.Terms(money.Price(**PRICE)),
                                client_cap=None, output=False)
    assert sizing.output_bound == 0 and int(r.headers["x-tf-reserved-micros"]) == sizing.amount


async def test_token_inputs(app, admin, tenant):
    t = await embedding_tenant(tenant, admin)
    out = await sdk(app, t).embeddings.create(model=t.model, input=[[1, 2, 3], [4]], encoding_format="float")
    assert len(out.data) == 2 and out.usage.prompt_tokens == 4


@pytest.mark.parametrize("case", ["chat-only route", "unknown model"])
async def test_not_found(app, client, tenant, case):
    t = await tenant(routed=None)
    model = t.model if case == "chat-only route" else "nope"
    r = await client.post("/v1/embeddings", json={"model": model, "input": "hi"}, headers=t.auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text
    assert r.headers["x-should-retry"] == "false"
    if case == "chat-only route":
        assert "/v1/embeddings" in r.json()["error"]["message"]


async def test_bad_input_is_400_nothing_charged(client, admin, tenant):
    t = await embedding_tenant(tenant, admin)
    r = await client.post("/v1/embeddings", json={"model": t.model, "input": []}, headers=t.auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    assert ok(await client.get("/v1/usage", headers=t.auth))["data"] == []


async def test_chat_on_an_embeddings_only_route_is_404(client, admin, tenant):
    t = await embedding_tenant(tenant, admin)
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
