"""Upstream edge cases at unit level, over real sockets: a local aiohttp server answers what each
test programs, and the gateway's own upstream client (upstream.transport) calls it."""

import asyncio
import dataclasses

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import free_port
from tokens_forge.guard.money import Price
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.upstream import client as upstream
from tokens_forge.upstream.client import UpstreamFailure
from tokens_forge.upstream.sse import EventSplitter, StreamTally, process_event
from tokens_forge.upstream.transport import UpstreamClient

ROUTE = RouteInfo(id="route_x", model="m", kind="routed", base_url="http://up.example/v1", upstream_model="up-m",
                  api_key="sk-secret", price=Price(1_000_000, 2_000_000), price_snapshot_id="price_x",
                  failed_charge_mode="none", failed_charge_flat_micros=0, timeout_s=2.0, priority=1)


class Upstream:
    """A local server whose next answers the test sets; `seen` keeps the requests' headers."""

    def __init__(self):
        self.answer = web.Response(status=204)
        self.seen: list[dict] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(dict(request.headers))
        answer = self.answer
        if callable(answer):
            return await answer(request)
        return answer


@pytest.fixture
async def up():
    upstream_app = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream_app.handle)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    http = UpstreamClient(10, hosts={"up.example": ("127.0.0.1", server.port)})
    try:
        yield upstream_app, http
    finally:
        await http.aclose()
        await server.close()


def test_body_passes_every_parameter_and_swaps_the_model():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}],
            "response_format": {"type": "json_object"}, "temperature": 0.3, "seed": 7, "logit_bias": {"1": 2}}
    out = orjson.loads(upstream.upstream_body(body, ROUTE, output_cap=None, stream=False))
    assert out == {**body, "model": "up-m"}
    out = orjson.loads(upstream.upstream_body(body, ROUTE, output_cap=99, stream=True))
    assert out["max_completion_tokens"] == 99 and out["stream_options"] == {"include_usage": True}
    assert "max_tokens" not in out  # the gateway's cap goes in the route's output_cap_param
    old_server = dataclasses.replace(ROUTE, output_cap_param="max_tokens")
    out = orjson.loads(upstream.upstream_body(body, old_server, output_cap=99, stream=False))
    assert out["max_tokens"] == 99 and "max_completion_tokens" not in out
    sent = orjson.loads(upstream.upstream_body({**body, "max_tokens": 5}, ROUTE, output_cap=None, stream=False))
    assert sent["max_tokens"] == 5 and "max_completion_tokens" not in sent  # the client's cap, as sent


async def test_extra_fields_pass_through_and_no_usage_is_none(up):
    server, http = up
    server.answer = web.json_response({"id": "x", "choices": [{"message": {"content": "hey"}}],
                                       "system_fingerprint": "fp", "extra": {"a": 1}})
    comp = await upstream.complete(http, ROUTE, b"{}")
    assert server.seen[0]["Authorization"] == "Bearer sk-secret"
    assert comp.data["extra"] == {"a": 1} and upstream.usage_of(comp.data) is None
    assert upstream.completion_text(comp.data).chars == 3


@pytest.mark.parametrize("answer,outcome,status", [
    (lambda: web.Response(status=200, text="<html>not json"), "upstream_error", 200),
    (lambda: web.json_response([1, 2]), "upstream_error", 200),
    (lambda: web.json_response({"no": "choices"}), "upstream_error", 200),
    (lambda: web.json_response({"error": {}}, status=500), "upstream_error", 500),
    (lambda: web.Response(status=429, headers={"Retry-After": "3"}), "upstream_error", 429),
])
async def test_bad_answers_are_upstream_errors(up, answer, outcome, status):
    server, http = up
    server.answer = answer()
    with pytest.raises(UpstreamFailure) as e:
        await upstream.complete(http, ROUTE, b"{}")
    assert e.value.outcome == outcome and e.value.status == status
    if status == 429:
        assert e.value.retry_after == 3.0 and e.value.retry_class == "http_429"


async def test_transport_failures_are_classified(up):
    server, http = up
    refused = dataclasses.replace(ROUTE, base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UpstreamFailure) as e:
        await upstream.complete(http, refused, b"{}")
    assert e.value.outcome == "connect_error" and e.value.retry_class == "connect_error"

    async def slow(request):
        await asyncio.sleep(5)
        return web.json_response({"choices": []})

    server.answer = slow
    with pytest.raises(UpstreamFailure) as e:
        await upstream.complete(http, dataclasses.replace(ROUTE, timeout_s=0.3), b"{}")
    assert e.value.outcome == "timeout" and e.value.retry_class == "timeout"


async def test_a_stream_answered_with_json_is_refused_and_an_error_body_is_bounded(up):
    server, http = up
    server.answer = web.json_response({"choices": []})
    with pytest.raises(UpstreamFailure) as e:
        await upstream.open_stream(http, ROUTE, b"{}")
    assert "not an event stream" in e.value.message

    async def endless_error(request):
        resp = web.StreamResponse(status=503)
        await resp.prepare(request)
        for _ in range(200):
            await resp.write(b"x" * 1024)
        return resp

    server.answer = endless_error
    with pytest.raises(UpstreamFailure) as e:
        await upstream.open_stream(http, ROUTE, b"{}")
    assert e.value.status == 503 and len(e.value.body) == upstream.ERROR_BODY_LIMIT


async def test_a_stream_read_to_its_end_reuses_the_connection(up):
    server, http = up
    peers: list = []

    async def sse(request):
        peers.append(request.transport.get_extra_info("peername"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[]}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        return resp

    server.answer = sse
    for _ in range(3):
        stream = await upstream.open_stream(http, ROUTE, b"{}")
        body = b"".join([chunk async for chunk in stream.chunks()])
        await stream.aclose()
        assert body.endswith(b"data: [DONE]\n\n")
    assert len(set(peers)) == 1  # one keep-alive connection served all three


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
