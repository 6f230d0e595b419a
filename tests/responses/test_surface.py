"""What /v1/responses sends each kind of route, and what the client gets back."""

import dataclasses

import orjson
import pytest

from tokens_forge.errors import InvalidRequest
from tokens_forge.guard.money import Price
from tokens_forge.responses.request import parse_responses_request
from tokens_forge.responses.surface import ResponsesSurface
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.upstream.client import Completion

CHAT_ONLY = RouteInfo(id="route_c", model="m", kind="routed", base_url="http://up/v1", upstream_model="up-chat",
                      api_key=None, price=Price(1, 1), price_snapshot_id="p", failed_charge_mode="none",
                      failed_charge_flat_micros=0, timeout_s=5, priority=1)
OLD_SERVER = dataclasses.replace(CHAT_ONLY, output_cap_param="max_tokens")
NATIVE = dataclasses.replace(CHAT_ONLY, id="route_n", upstream_model="up-native", apis=("chat_completions", "responses"))


def surface(**body) -> ResponsesSurface:
    return ResponsesSurface(parse_responses_request(orjson.dumps({"model": "m", "input": "hi", **body})), "rcpt_abc")


@pytest.mark.parametrize("route,body,gateway_cap,api,expected", [
    (NATIVE, {}, 40, "responses", {"model": "up-native", "input": "hi", "max_output_tokens": 40}),
    (NATIVE, {"max_output_tokens": 9, "previous_response_id": "resp_1"}, None, "responses",
     {"model": "up-native", "input": "hi", "max_output_tokens": 9, "previous_response_id": "resp_1"}),
    (CHAT_ONLY, {}, 40, "chat_completions",
     {"model": "up-chat", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 40}),
    (OLD_SERVER, {}, 40, "chat_completions",
     {"model": "up-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}),
    (OLD_SERVER, {"max_output_tokens": 9}, None, "chat_completions",
     {"model": "up-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9}),
])
def test_payload(route, body, gateway_cap, api, expected):
    got_api, payload = surface(**body).payload(route, gateway_cap)
    assert (got_api, orjson.loads(payload)) == (api, expected)


def test_check_refuses_only_on_chat_only_routes():
    s = surface(previous_response_id="resp_1")
    s.check(NATIVE)
    with pytest.raises(InvalidRequest) as e:
        s.check(CHAT_ONLY)
    assert e.value.param == "previous_response_id"


def test_answers():
    chat = {"id": "c", "created": 1, "model": "up-chat", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "w0 w1"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    a = surface().answer(CHAT_ONLY, Completion(200, orjson.dumps(chat), chat, 1))
    out = orjson.loads(a.body)
    assert (out["id"], out["output"][0]["content"][0]["text"], a.usage, a.delivered.chars) == (
        "resp_abc", "w0 w1", (3, 2), 5)
    native = {"id": "resp_up", "object": "response", "output": [{"type": "message", "content": [
        {"type": "output_text", "text": "abc"}]}], "usage": {"input_tokens": 4, "output_tokens": 1}}
    raw = orjson.dumps(native)
    a = surface().answer(NATIVE, Completion(200, raw, native, 1))
    assert (a.body, a.usage, a.delivered.chars) == (raw, (4, 1), 3)
