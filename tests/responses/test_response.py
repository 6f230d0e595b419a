"""Chat completion → Response object, table-driven, each checked by the OpenAI SDK: the model
validates and the SDK's own client parses it (`output_text`, function calls, usage)."""

import itertools

import httpx
import orjson
import pytest
from openai import OpenAI
from openai.types.responses import Response

from tokens_forge.responses.response import from_chat, response_id

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2}}


def ids():
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter)}"


def completion(message: dict, finish="stop", usage=USAGE) -> dict:
    out = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "up-model",
           "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


# (chat message, finish_reason, expected output items, status, incomplete_details)
CASES = {
    "text": ({"content": "hello"}, "stop",
             [{"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}]}],
             "completed", None),
    "tool calls": (
        {"content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
            {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        "tool_calls",
        [{"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_a", "name": "f",
          "arguments": "{\"x\":1}"},
         {"id": "fc_2", "type": "function_call", "status": "completed", "call_id": "call_b", "name": "g",
          "arguments": "{}"}],
        "completed", None),
    "text then a call": (
        {"content": "let me see", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        "tool_calls",
        [{"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
          "content": [{"type": "output_text", "text": "let me see", "annotations": [], "logprobs": []}]},
         {"id": "fc_2", "type": "function_call", "status": "completed", "call_id": "call_a", "name": "f",
          "arguments": "{}"}],
        "completed", None),
    "cut by the output cap": (
        {"content": "w0 w1"}, "length",
        [{"id": "msg_1", "type": "message", "status": "incomplete", "role": "assistant",
          "content": [{"type": "output_text", "text": "w0 w1", "annotations": [], "logprobs": []}]}],
        "incomplete", {"reason": "max_output_tokens"}),
    "content filter": ({"content": ""}, "content_filter", [], "incomplete", {"reason": "content_filter"}),
    "refusal": ({"content": None, "refusal": "I can't"}, "stop",
                [{"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                  "content": [{"type": "refusal", "refusal": "I can't"}]}], "completed", None),
    "citations": (
        {"content": "see x", "annotations": [{"type": "url_citation", "url_citation": {
            "url": "https://x.test", "title": "X", "start_index": 4, "end_index": 5}}]}, "stop",
        [{"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
          "content": [{"type": "output_text", "text": "see x", "logprobs": [], "annotations": [
              {"type": "url_citation", "url": "https://x.test", "title": "X", "start_index": 4, "end_index": 5}]}]}],
        "completed", None),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_output_items(case):
    message, finish, items, status, incomplete = CASES[case]
    out = from_chat(completion(message, finish), {"model": "m", "input": "hi"}, resp_id="resp_x", ids=ids())
    Response.model_validate(out)
    assert out["output"] == items
    assert (out["status"], out["incomplete_details"]) == (status, incomplete)


def test_usage_and_echo():
    request = {"model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 50,
               "temperature": 0.5, "metadata": {"job": "1"}, "tool_choice": "required",
               "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
               "text": {"format": {"type": "json_object"}}}
    out = from_chat(completion({"content": "{}"}), request, resp_id="resp_x")
    r = Response.model_validate(out)
    assert out["usage"] == {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
                            "output_tokens": 7,
                            "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 18}
    assert (r.id, r.object, r.created_at, r.model) == ("resp_x", "response", 1700000000, "up-model")
    assert (r.instructions, r.max_output_tokens, r.temperature, r.metadata) == ("be brief", 50, 0.5, {"job": "1"})
    assert r.tool_choice == "required" and r.tools[0].name == "f" and r.text.format.type == "json_object"


def test_usage_details_default_to_zero():
    out = from_chat(completion({"content": "x"}, usage={"prompt_tokens": 1, "completion_tokens": 2}),
                    {"model": "m", "input": "hi"}, resp_id="resp_x")
    assert out["usage"] == {"input_tokens": 1, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                            "output_tokens": 2,
                            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 3}
    assert from_chat(completion({"content": "x"}, usage=None), {"model": "m", "input": "h"},
                     resp_id="resp_x")["usage"] is None


def test_response_id_names_the_receipt():
    assert response_id("rcpt_abc123") == "resp_abc123"


def test_the_sdk_reads_it():
    """The SDK's client, over an httpx transport that answers our translation."""
    chat = completion({"content": "it is sunny", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        "tool_calls")

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=from_chat(chat, orjson.loads(request.content), resp_id="resp_1"))

    client = OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=httpx.Client(transport=httpx.MockTransport(answer)))
    r = client.responses.create(model="m", input="weather in Oslo?")
    assert r.output_text == "it is sunny"
    call = r.output[1]
    assert (call.type, call.call_id, call.name, call.arguments) == ("function_call", "call_1", "get_weather",
                                                                     "{\"city\":\"Oslo\"}")
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (11, 7, 18)
