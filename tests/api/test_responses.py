"""POST /v1/responses through the gateway, driven by the official OpenAI SDK: over a chat-only
route (translated) and a native one (forwarded), streamed and not, with a function tool and its
result, inside a run, idempotent; charged, receipted and ledgered like chat completions. And
OpenAI's Agents SDK `Runner` with a function tool, end to end through a chat-only route."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool, set_tracing_disabled

from tests.conftest import PRICE, ok
from tokens_forge.guard import money
from tokens_forge.responses.request import parse_responses_request

TOOLS = [{"type": "function", "name": "get_weather", "description": "the weather of a city", "strict": False,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def sdk(app, t, **headers) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test/v1", timeout=30)
    return openai.AsyncOpenAI(api_key=t.secret, base_url="http://gw.test/v1", http_client=http, max_retries=0,
                              default_headers=headers)


async def native_tenant(tenant, admin, **kw):
    t = await tenant(routed=None, **kw)
    ok(await admin.patch(f"/routes/{t.routes['official']['id']}", json={"apis": ["chat_completions", "responses"]}))
    return t


async def last_body(mock_upstream_port, model: str) -> dict:
    async with httpx.AsyncClient() as c:
        return (await c.get(f"http://127.0.0.1:{mock_upstream_port}/_last/{model}")).json()


async def receipt_of(client, t, receipt_id: str) -> dict:
    return ok(await client.get(f"/v1/receipts/{receipt_id}", headers=t.auth))


def charged_by_usage(usage) -> int:
    return money.cost(usage.input_tokens, usage.output_tokens, money.Price(**PRICE))


@pytest.mark.parametrize("native", [False, True])
async def test_create(app, client, admin, tenant, native):
    t = await (native_tenant(tenant, admin) if native else tenant(routed=None))
    raw = await sdk(app, t).responses.with_raw_response.create(model=t.model, input="hello there",
                                                                instructions="be brief", max_output_tokens=4)
    r = raw.parse()
    assert r.output_text == "w0 w1 w2 w3" and r.status == "completed"
    rid = raw.headers["x-tf-receipt-id"]
    receipt = await receipt_of(client, t, rid)
    assert (receipt["endpoint"], receipt["status"], receipt["stream"]) == ("responses", "succeeded", False)
    assert receipt["total_charged_micros"] == charged_by_usage(r.usage) == int(raw.headers["x-tf-charged-micros"])
    assert (receipt["prompt_tokens"], receipt["completion_tokens"]) == (r.usage.input_tokens, r.usage.output_tokens)
    assert raw.headers["x-tf-upstream-request-id"].startswith("req_mock_")
    if not native:
        assert r.id == "resp_" + rid.removeprefix("rcpt_")  # the Response names its receipt
    led = ok(await client.get("/v1/wallet/ledger", params={"receipt_id": rid}, headers=t.auth))["data"]
    assert -sum(e["amount_micros"] for e in led) == receipt["total_charged_micros"]  # the wallet: reserve, release


@pytest.mark.parametrize("native", [False, True])
async def test_stream(app, client, admin, tenant, native):
    t = await (native_tenant(tenant, admin) if native else tenant(routed=None))
    async with sdk(app, t).responses.stream(model=t.model, input="hello there", max_output_tokens=5) as stream:
        kinds = [e.type async for e in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text == "w0 w1 w2 w3 w4"
    usage = ok(await client.get("/v1/usage", headers=t.auth))["data"]
    [row] = usage
    receipt = await receipt_of(client, t, row["receipt_id"])
    assert (receipt["endpoint"], receipt["status"], receipt["stream"]) == ("responses", "succeeded", True)
    assert receipt["total_charged_micros"] == charged_by_usage(final.usage) == row["charged_micros"]
    assert receipt["usage_estimated"] is False


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("stream", [False, True])
async def test_function_tool_and_its_result(app, admin, tenant, native, stream):
    t = await (native_tenant(tenant, admin) if native else tenant(routed=None))
    client = sdk(app, t)

    async def create(**kw):
        if not stream:
            return await client.responses.create(model=t.model, tools=TOOLS, max_output_tokens=20, **kw)
        async with client.responses.stream(model=t.model, tools=TOOLS, max_output_tokens=20, **kw) as s:
            return await s.get_final_response()

    first = await create(input="weather in Oslo?")
    [call] = first.output
    assert (call.type, call.name, orjson.loads(call.arguments)) == ("function_call", "get_weather", {"city": "w0"})
    second = await create(input=[{"role": "user", "content": "weather in Oslo?"}, call.model_dump(exclude_none=True),
                                 {"type": "function_call_output", "call_id": call.call_id, "output": "sunny and mild"}])
    assert second.output_text == "sunny and mild"


async def test_translation_refusals_are_400s_naming_the_field(app, client, tenant):
    t = await tenant(routed=None)
    for body, param in (({"previous_response_id": "resp_1"}, "previous_response_id"),
                        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
                        ({"conversation": "conv_1"}, "conversation")):
        r = await client.post("/v1/responses", json={"model": t.model, "input": "hi", **body}, headers=t.auth)
        assert r.status_code == 400 and r.headers["x-should-retry"] == "false", r.text
        assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("invalid_request", param)
    assert ok(await client.get("/v1/usage", headers=t.auth))["data"] == []  # nothing reserved, nothing written
    with pytest.raises(openai.BadRequestError) as e:
        await sdk(app, t).responses.create(model=t.model, input="hi", previous_response_id="resp_1")
    assert e.value.param == "previous_response_id"


async def test_native_route_forwards_as_sent(client, admin, tenant, mock_upstream_port):
    t = await native_tenant(tenant, admin)
    body = {"model": t.model, "input": "hi", "previous_response_id": "resp_prev", "store": True}
    r = await client.post("/v1/responses", json=body, headers=t.auth)
    assert r.status_code == 200, r.text
    sent = await last_body(mock_upstream_port, "ok")
    assert sent["previous_response_id"] == "resp_prev" and sent["model"] == "ok"
    assert sent["max_output_tokens"] >= 1 and "max_tokens" not in sent  # the gateway's cap, in the Responses name


async def test_reservation_bounds_input_and_max_output_tokens(client, tenant):
    t = await tenant(routed=None)
    body = {"model": t.model, "input": [{"role": "user", "content": "hi"}], "instructions": "x" * 300,
            "tools": TOOLS, "max_output_tokens": 7}
    raw = orjson.dumps(body)
    r = await client.post("/v1/responses", content=raw, headers={**t.auth, "content-type": "application/json"})
    assert r.status_code == 200, r.text
    terms = money.Terms(money.Price(**PRICE))
    sizing = money.size_attempt(parse_responses_request(raw).shape, terms, client_cap=7)
    assert int(r.headers["x-tf-reserved-micros"]) == sizing.amount
    assert sizing.input_bound >= len(raw) and sizing.output_bound == 7


async def test_reasoning_model_without_a_client_cap(app, tenant, mock_upstream_port):
    t = await tenant(official="reasoning", routed=None)
    r = await sdk(app, t).responses.create(model=t.model, input="think")
    assert len(r.output_text.split()) == 16  # answered (the mock's longest answer), not refused
    sent = await last_body(mock_upstream_port, "reasoning")
    assert sent["max_completion_tokens"] >= 1 and "max_tokens" not in sent


async def test_inside_a_run(app, client, tenant):
    t = await tenant(routed=None)
    run = ok(await client.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 100_000},
                               headers=t.auth))
    r = await sdk(app, t, **{"X-TF-Run-Id": run["id"]}).responses.create(model=t.model, input="hi",
                                                                           max_output_tokens=3)
    shown = ok(await client.get(f"/v1/runs/{run['id']}", headers=t.auth))
    assert shown["spent_micros"] == charged_by_usage(r.usage) and shown["requests"]["succeeded"] == 1
    ok(await client.post(f"/v1/runs/{run['id']}/pause", headers=t.auth))
    with pytest.raises(openai.ConflictError) as e:
        await sdk(app, t, **{"X-TF-Run-Id": run["id"]}).responses.create(model=t.model, input="hi")
    assert e.value.code == "run_paused"


async def test_idempotent(client, tenant):
    t = await tenant(routed=None)
    body = {"model": t.model, "input": "hi", "max_output_tokens": 3}
    headers = {**t.auth, "Idempotency-Key": "resp-1"}
    first = await client.post("/v1/responses", json=body, headers=headers)
    again = await client.post("/v1/responses", json=body, headers=headers)
    assert first.status_code == again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content and again.headers["x-tf-receipt-id"] == first.headers["x-tf-receipt-id"]
    assert len(ok(await client.get("/v1/usage", headers=t.auth))["data"]) == 1
    chat = await client.post("/v1/chat/completions", json=t.chat(), headers=headers)  # same key, other endpoint
    assert chat.status_code == 400, chat.text


async def test_fallback_and_upstream_errors(app, client, tenant):
    t = await tenant(official="fail500", key={"fallback_policy": "any_bucket"})
    raw = await sdk(app, t).responses.with_raw_response.create(model=t.model, input="hi", max_output_tokens=2)
    assert raw.parse().output_text == "w0 w1" and raw.headers["x-tf-route-kind"] == "routed"
    receipt = await receipt_of(client, t, raw.headers["x-tf-receipt-id"])
    assert [a["outcome"] for a in receipt["attempts"]] == ["upstream_error", "success"]
    t = await tenant(official="fail429", routed=None)
    with pytest.raises(openai.RateLimitError) as e:
        await sdk(app, t).responses.create(model=t.model, input="hi", max_output_tokens=2)
    assert e.value.code == "upstream_rate_limited" and e.value.response.headers["retry-after"] == "1"


@function_tool
def get_weather(city: str) -> str:
    """The weather of a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("stream", [False, True])
async def test_agents_sdk_runner_with_a_function_tool(app, client, tenant, stream):
    set_tracing_disabled(True)
    t = await tenant(routed=None)
    run = ok(await client.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 100_000},
                               headers=t.auth))
    model = OpenAIResponsesModel(model=t.model, openai_client=sdk(app, t, **{"X-TF-Run-Id": run["id"]}))
    agent = Agent(name="weather", instructions="Use your tools.", tools=[get_weather], model=model)
    config = RunConfig(tracing_disabled=True)
    if stream:
        result = Runner.run_streamed(agent, "weather in Oslo?", run_config=config)
        async for _ in result.stream_events():
            pass
    else:
        result = await Runner.run(agent, "weather in Oslo?", run_config=config)
    assert result.final_output == "sunny in w0"  # the mock answers with the tool's result
    rc = ok(await client.get(f"/v1/runs/{run['id']}/receipt", headers=t.auth))
    assert [(q["endpoint"], q["status"]) for q in rc["requests"]] == [("responses", "succeeded")] * 2
    assert rc["totals"]["matches_ledger"] is True and rc["totals"]["charged_micros"] > 0


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/embeddings"])
async def test_a_body_too_large_is_a_rejected_receipt_of_its_endpoint(app, client, tenant, path):
    t = await tenant(routed=None)
    big = "x" * (app.state.settings.max_body_bytes + 1)
    r = await client.post(path, content=big, headers={**t.auth, "content-type": "application/json"})
    assert r.status_code == 413 and r.headers["x-should-retry"] == "false"
    receipt = await receipt_of(client, t, r.headers["x-tf-receipt-id"])
    assert (receipt["status"], receipt["endpoint"]) == ("rejected", path.rsplit("/", 1)[1])
