"""Responses request → chat completions body, table-driven. Both sides are checked against the
OpenAI SDK's own request types: every case's input is a valid Responses request and every
translation a valid chat completions request."""

import orjson
import pytest
from openai.types.chat import completion_create_params as chat_params
from openai.types.responses import response_create_params as responses_params
from pydantic import TypeAdapter

from tokens_forge.errors import InvalidRequest
from tokens_forge.responses.request import parse_responses_request
from tokens_forge.responses.translate import to_chat

RESPONSES_REQUEST = TypeAdapter(responses_params.ResponseCreateParamsNonStreaming)
CHAT_REQUEST = TypeAdapter(chat_params.CompletionCreateParamsNonStreaming)
TOOL = {"type": "function", "name": "get_weather", "description": "weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "weather of a city",
                                              "parameters": TOOL["parameters"], "strict": True}}


def translate(body: dict, **kw) -> dict:
    RESPONSES_REQUEST.validate_python(body)
    chat = to_chat(parse_responses_request(orjson.dumps(body)).body, **kw)
    CHAT_REQUEST.validate_python(chat)
    return chat


# (responses body without model, the chat messages it must become)
MESSAGE_CASES = {
    "string input": ({"input": "hello"}, [{"role": "user", "content": "hello"}]),
    "instructions first, as system": (
        {"input": "hi", "instructions": "be brief"},
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]),
    "easy message, string content": (
        {"input": [{"role": "user", "content": "hi"}]}, [{"role": "user", "content": "hi"}]),
    "developer becomes system": (
        {"input": [{"type": "message", "role": "developer", "content": "rules"}]},
        [{"role": "system", "content": "rules"}]),
    "text and image parts": (
        {"input": [{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_image", "image_url": "https://img.test/cat.png", "detail": "low"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}]}]},
        [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://img.test/cat.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "auto"}}]}]),
    "earlier assistant output message": (
        {"input": [{"role": "user", "content": "hi"},
                   {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                    "content": [{"type": "output_text", "text": "hel", "annotations": []},
                                {"type": "output_text", "text": "lo", "annotations": []}]}]},
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]),
    "assistant refusal": (
        {"input": [{"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                    "content": [{"type": "refusal", "refusal": "no"}]}]},
        [{"role": "assistant", "content": None, "refusal": "no"}]),
    "function call and its output": (
        {"input": [{"role": "user", "content": "weather?"},
                   {"type": "function_call", "call_id": "call_1", "name": "get_weather",
                    "arguments": "{\"city\":\"Oslo\"}", "id": "fc_1", "status": "completed"},
                   {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]},
        [{"role": "user", "content": "weather?"},
         {"role": "assistant", "content": None, "tool_calls": [
             {"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
         {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]),
    "parallel calls and text of one turn: one assistant message": (
        {"input": [{"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                    "content": [{"type": "output_text", "text": "checking", "annotations": []}]},
                   {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
                   {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
                   {"type": "function_call_output", "call_id": "a", "output": "1"},
                   {"type": "function_call_output", "call_id": "b",
                    "output": [{"type": "input_text", "text": "2"}]}]},
        [{"role": "assistant", "content": "checking", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
         {"role": "tool", "tool_call_id": "a", "content": "1"},
         {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "2"}]}]),
}


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=list(MESSAGE_CASES))
def test_input_items_become_messages(case):
    body, messages = MESSAGE_CASES[case]
    assert translate({"model": "m", **body})["messages"] == messages


# (extra responses fields, the chat fields they must become (besides model and messages))
FIELD_CASES = {
    "nothing extra": ({}, {}),
    "function tools are nested": ({"tools": [TOOL]}, {"tools": [CHAT_TOOL]}),
    "parallel_tool_calls goes with tools": ({"tools": [TOOL], "parallel_tool_calls": False},
                                            {"tools": [CHAT_TOOL], "parallel_tool_calls": False}),
    "parallel_tool_calls without tools is not sent": ({"parallel_tool_calls": True}, {}),
    "tool_choice strings": ({"tools": [TOOL], "tool_choice": "required"},
                            {"tools": [CHAT_TOOL], "tool_choice": "required"}),
    "tool_choice one function": ({"tools": [TOOL], "tool_choice": {"type": "function", "name": "get_weather"}},
                                 {"tools": [CHAT_TOOL],
                                  "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    "text.format json_schema": (
        {"text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}}},
        {"response_format": {"type": "json_schema",
                             "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True}}}),
    "text.format json_object": ({"text": {"format": {"type": "json_object"}}},
                                {"response_format": {"type": "json_object"}}),
    "text.format text is the default": ({"text": {"format": {"type": "text"}}}, {}),
    "verbosity": ({"text": {"verbosity": "low"}}, {"verbosity": "low"}),
    "max_output_tokens as the route's cap field": ({"max_output_tokens": 64}, {"max_completion_tokens": 64}),
    "sampling and identity pass": ({"temperature": 0.2, "top_p": 0.9, "user": "u1", "safety_identifier": "s",
                                    "prompt_cache_key": "k", "service_tier": "auto"},
                                   {"temperature": 0.2, "top_p": 0.9, "user": "u1", "safety_identifier": "s",
                                    "prompt_cache_key": "k", "service_tier": "auto"}),
    "reasoning effort": ({"reasoning": {"effort": "low"}}, {"reasoning_effort": "low"}),
    "echoed only: metadata, store, include, truncation disabled, background false": (
        {"metadata": {"job": "7"}, "store": True, "include": ["reasoning.encrypted_content"],
         "truncation": "disabled", "background": False}, {}),
}


@pytest.mark.parametrize("case", FIELD_CASES, ids=list(FIELD_CASES))
def test_fields(case):
    extra, expected = FIELD_CASES[case]
    chat = translate({"model": "m", "input": "hi", **extra})
    assert {k: v for k, v in chat.items() if k not in ("model", "messages")} == expected


def test_cap_field_follows_the_route():
    chat = translate({"model": "m", "input": "hi", "max_output_tokens": 9}, cap_param="max_tokens")
    assert chat["max_tokens"] == 9 and "max_completion_tokens" not in chat


def test_stream_asks_for_usage():
    body = {"model": "m", "input": "hi", "stream": True}
    chat = to_chat(parse_responses_request(orjson.dumps(body)).body)
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


# (extra responses fields, the param the 400 must name)
REFUSALS = {
    "previous_response_id": ({"previous_response_id": "resp_1"}, "previous_response_id"),
    "conversation": ({"conversation": "conv_1"}, "conversation"),
    "stored prompt": ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    "background": ({"background": True}, "background"),
    "truncation auto": ({"truncation": "auto"}, "truncation"),
    "max_tool_calls": ({"max_tool_calls": 3}, "max_tool_calls"),
    "top_logprobs": ({"top_logprobs": 2}, "top_logprobs"),
    "logprobs include": ({"include": ["message.output_text.logprobs"]}, "include"),
    "built-in tool": ({"tools": [TOOL, {"type": "web_search"}]}, "tools[1].type"),
    "file search tool": ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
    "hosted tool choice": ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    "reasoning summary": ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary"),
    "reasoning item": ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0].type"),
    "item reference": ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    "uploaded image": ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1",
                                                                "detail": "auto"}]}]},
                       "input[0].content[0].file_id"),
    "file input": ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
                   "input[0].content[0].type"),
    "image in a tool result": ({"input": [{"type": "function_call_output", "call_id": "c", "output": [
        {"type": "input_image", "image_url": "https://img.test/a.png", "detail": "auto"}]}]}, "input[0].output[0]"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_what_cannot_be_translated_is_a_400_naming_the_field(case):
    extra, param = REFUSALS[case]
    body = {"model": "m", "input": "hi", **extra}
    RESPONSES_REQUEST.validate_python(body)  # a valid Responses request: only the translation refuses it
    with pytest.raises(InvalidRequest) as e:
        to_chat(parse_responses_request(orjson.dumps(body)).body)
    assert (e.value.status_code, e.value.code, e.value.param) == (400, "invalid_request", param)
    assert "chat completions" in e.value.message


@pytest.mark.parametrize("body,param", [
    ({"model": "m", "input": "hi", "frobnicate": 1}, "frobnicate"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema"}}}, "text.format"),
    ({"model": "m", "input": "hi", "metadata": {"n": 1}}, "metadata"),
])
def test_malformed_fields(body, param):
    with pytest.raises(InvalidRequest) as e:
        to_chat(parse_responses_request(orjson.dumps(body)).body)
    assert e.value.param == param


@pytest.mark.parametrize("raw,param", [
    (b"[1]", None), (b"{", None), (b'{"input": "x"}', "model"), (b'{"model": "m"}', "input"),
    (b'{"model": "m", "input": []}', "input"), (b'{"model": "m", "input": "x", "stream": "yes"}', "stream"),
    (b'{"model": "m", "input": "x", "max_output_tokens": 0}', "max_output_tokens"),
    (b'{"model": "m", "input": "x", "max_output_tokens": true}', "max_output_tokens"),
    (b'{"model": "m", "input": "x", "instructions": 5}', "instructions"),
    (b'{"model": "m", "input": "x", "tools": {}}', "tools"),
    (b'{"model": "m", "input": [5]}', "input[0]"),
    (b'{"model": "m", "input": [{"role": "user", "content": 5}]}', "input[0].content"),
    (b'{"model": "m", "input": [{"content": "x"}]}', "input[0].role"),
])
def test_parse_refuses_bad_bodies(raw, param):
    with pytest.raises(InvalidRequest) as e:
        parse_responses_request(raw)
    assert e.value.param == param


def test_parse_counts_what_the_guard_bounds():
    body = {"model": "m", "instructions": "abcd", "max_output_tokens": 30, "stream": True, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "12345"},
                                     {"type": "input_image", "image_url": "https://i.test/x.png", "detail": "auto"}]},
        {"type": "function_call", "call_id": "c", "name": "fn", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "xyz"}]}
    raw = orjson.dumps(body)
    req = parse_responses_request(raw)
    assert (req.model, req.stream, req.client_cap, req.shape.size_bytes) == ("m", True, 30, len(raw))
    assert (req.shape.messages, req.shape.images_high, req.shape.images_low) == (4, 1, 0)
    assert req.shape.text.chars == len("abcd") + len("12345") + len("fn") + len("{}") + len("xyz")
