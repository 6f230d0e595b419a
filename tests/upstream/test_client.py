"""Upstream edge cases at unit level with respx: what the gateway makes of odd answers."""

import httpx
import pytest
import respx

from tokens_forge.guard.bounds import Price
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.upstream import client as upstream
from tokens_forge.upstream.client import UpstreamFailure
from tokens_forge.upstream.sse import EventSplitter, StreamTally, process_event

ROUTE = RouteInfo(id="route_x", model="m", kind="routed", base_url="https://up.example/v1", upstream_model="up-m",
                  api_key="sk-secret", price=Price(1_000_000, 2_000_000), price_snapshot_id="price_x",
                  failed_charge_mode="none", failed_charge_flat_micros=0, timeout_s=2.0, priority=1)
URL = "https://up.example/v1/chat/completions"


def test_body_passes_every_parameter_and_swaps_the_model():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}],
            "response_format": {"type": "json_object"}, "temperature": 0.3, "seed": 7, "logit_bias": {"1": 2}}
    import orjson

    out = orjson.loads(upstream.upstream_body(body, ROUTE, max_tokens=None, stream=False))
    assert out == {**body, "model": "up-m"}
    out = orjson.loads(upstream.upstream_body(body, ROUTE, max_tokens=99, stream=True))
    assert out["max_tokens"] == 99 and out["stream_options"] == {"include_usage": True}


@respx.mock
async def test_extra_fields_pass_through_and_no_usage_is_none():
    route = respx.post(URL).mock(return_value=httpx.Response(200, json={
        "id": "x", "choices": [{"message": {"content": "hey"}}], "system_fingerprint": "fp", "extra": {"a": 1}}))
    async with httpx.AsyncClient() as http:
        comp = await upstream.complete(http, ROUTE, b"{}")
    assert route.calls[0].request.headers["authorization"] == "Bearer sk-secret"
    assert comp.data["extra"] == {"a": 1} and upstream.usage_of(comp.data) is None
    assert upstream.completion_chars(comp.data) == 3


@pytest.mark.parametrize("response,outcome,status", [
    (httpx.Response(200, text="<html>not json"), "upstream_error", 200),
    (httpx.Response(200, json=[1, 2]), "upstream_error", 200),
    (httpx.Response(200, json={"no": "choices"}), "upstream_error", 200),
    (httpx.Response(500, json={"error": {}}), "upstream_error", 500),
    (httpx.Response(429, headers={"Retry-After": "3"}), "upstream_error", 429),
])
@respx.mock
async def test_bad_answers_are_upstream_errors(response, outcome, status):
    respx.post(URL).mock(return_value=response)
    async with httpx.AsyncClient() as http:
        with pytest.raises(UpstreamFailure) as e:
            await upstream.complete(http, ROUTE, b"{}")
    assert e.value.outcome == outcome and e.value.status == status
    if status == 429:
        assert e.value.retry_after == 3.0 and e.value.retry_class == "http_429"


@respx.mock
async def test_transport_failures_are_classified():
    respx.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(UpstreamFailure) as e:
            await upstream.complete(http, ROUTE, b"{}")
    assert e.value.outcome == "connect_error" and e.value.retry_class == "connect_error"
    respx.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(UpstreamFailure) as e:
            await upstream.complete(http, ROUTE, b"{}")
    assert e.value.outcome == "timeout"


def test_sse_split_usage_and_delivery():
    sp = EventSplitter()
    raw = (b'data: {"choices":[{"delta":{"content":"a"}}]}\r\n\r\ndata: {"choices":[{"delta":{"content":"b"}}]}\n\n'
           b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n')
    events = sp.feed(raw[:20]) + sp.feed(raw[20:])
    tally = StreamTally()
    out = [process_event(e, tally, client_wants_usage=False) for e in events]
    assert out[2] is None and out[3] == b"data: [DONE]\n\n"
    assert tally.usage == (3, 2) and tally.content_chunks == 2 and tally.done
    tally = StreamTally()
    assert process_event(events[2], tally, client_wants_usage=True) == events[2]
    assert process_event(b"data: \xff\xfe\n\n", tally, client_wants_usage=True) == b"data: \xff\xfe\n\n"
