"""Chat completion chunks → Responses streaming events, table-driven. Every event validates as
the SDK's `ResponseStreamEvent`, sequence numbers count up from 0, and the SDK's own stream
reader (`client.responses.stream`, which accumulates the events into the final Response and
refuses events out of order) reads the SSE bytes."""

import itertools

import httpx
import orjson
import pytest
from openai import OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tokens_forge.responses.events import ChatToResponsesStream, sse

EVENT = TypeAdapter(ResponseStreamEvent)
REQUEST = {"model": "m", "input": "hi"}


def ids():
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter)}"


def chunk(delta=None, finish=None, usage=None, choices=True) -> dict:
    out = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "up",
           "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []}
    if usage is not None:
        out["usage"] = usage
    return out


def call(index, id_=None, name=None, args=None) -> dict:
    fn = {k: v for k, v in (("name", name), ("arguments", args)) if v is not None}
    c = {"index": index, "function": fn}
    if id_:
        c.update(id=id_, type="function")
    return {"tool_calls": [c]}


USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
TEXT = [chunk({"role": "assistant", "content": ""}), chunk({"content": "w0"}), chunk({"content": " w1"}),
        chunk(finish="stop"), chunk(usage=USAGE, choices=False)]
CALLS = [chunk({"role": "assistant", "content": None}), *[chunk(c) for c in (
    call(0, "call_a", "f", ""), call(0, args="{\"x\""), call(0, args=":1}"),
    call(1, "call_b", "g", "{}"))], chunk(finish="tool_calls"), chunk(usage=USAGE, choices=False)]
TEXT_THEN_CALL = [chunk({"content": "looking"}), chunk(call(0, "call_a", "f", "{}")), chunk(finish="tool_calls")]
INTERLEAVED = [chunk(call(0, "call_a", "f", "{\"a\"")), chunk(call(1, "call_b", "g", "{\"b\"")),
               chunk(call(0, args=":1}")), chunk(call(1, args=":2}")), chunk(finish="tool_calls")]
CUT = [chunk({"content": "w0"}), chunk(finish="length"), chunk(usage=USAGE, choices=False)]
REFUSAL = [chunk({"refusal": "no"}), chunk(finish="stop")]

TEXT_EVENTS = ["response.output_item.added", "response.content_part.added", "response.output_text.delta",
               "response.output_text.delta", "response.output_text.done", "response.content_part.done",
               "response.output_item.done"]
CALL_EVENTS = ["response.output_item.added", "response.function_call_arguments.delta",
               "response.function_call_arguments.delta", "response.output_item.added",
               "response.function_call_arguments.delta", "response.function_call_arguments.done",
               "response.output_item.done", "response.function_call_arguments.done", "response.output_item.done"]

# (chunks, the event types between response.in_progress and the terminal event, the terminal
#  event, the final output as (type, text or arguments))
CASES = {
    "text": (TEXT, TEXT_EVENTS, "response.completed", [("message", "w0 w1")]),
    "tool calls": (CALLS, CALL_EVENTS, "response.completed", [("function_call", "{\"x\":1}"),
                                                              ("function_call", "{}")]),
    "text, then a call closes the text": (TEXT_THEN_CALL, [
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done"],
        "response.completed", [("message", "looking"), ("function_call", "{}")]),
    "interleaved calls land on their items": (INTERLEAVED, [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.function_call_arguments.done", "response.output_item.done"],
        "response.completed", [("function_call", "{\"a\":1}"), ("function_call", "{\"b\":2}")]),
    "cut by the cap": (CUT, ["response.output_item.added", "response.content_part.added",
                             "response.output_text.delta", "response.output_text.done",
                             "response.content_part.done", "response.output_item.done"],
                       "response.incomplete", [("message", "w0")]),
    "refusal": (REFUSAL, ["response.output_item.added", "response.content_part.added", "response.refusal.delta",
                          "response.refusal.done", "response.content_part.done", "response.output_item.done"],
                "response.completed", [("message", None)]),
    "nothing said": ([chunk(finish="stop")], [], "response.completed", []),
}


def run(chunks, **kw) -> tuple[ChatToResponsesStream, list[dict]]:
    t = ChatToResponsesStream(REQUEST, resp_id="resp_1", created_at=1700000000, model="m", ids=ids())
    events = t.start()
    for c in chunks:
        events += t.feed(c)
    return t, events + t.finish(**kw)


def summary(item) -> tuple:
    if item.type == "function_call":
        return ("function_call", item.arguments)
    texts = [p.text for p in item.content if p.type == "output_text"]
    return ("message", "".join(texts) if texts else None)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_event_order(case):
    chunks, middle, terminal, output = CASES[case]
    _, events = run(chunks)
    parsed = [EVENT.validate_python(e) for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", *middle, terminal]
    final = parsed[-1].response
    assert [summary(item) for item in final.output] == output
    added = {e["item"]["id"]: e["output_index"] for e in events if e["type"] == "response.output_item.added"}
    assert [added[item.id] for item in final.output] == list(range(len(final.output)))


def test_usage_and_status():
    _, events = run(TEXT)
    done = Response.model_validate(events[-1]["response"])
    assert (done.status, done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens) == (
        "completed", 5, 3, 8)
    _, events = run(CUT)
    cut = Response.model_validate(events[-1]["response"])
    assert (cut.status, cut.incomplete_details.reason, cut.output[0].status) == (
        "incomplete", "max_output_tokens", "incomplete")


def test_usage_stands_in_when_the_upstream_sent_none():
    _, events = run([chunk({"content": "w0"}), chunk(finish="stop")],
                    usage={"prompt_tokens": 2, "completion_tokens": 1})
    assert events[-1]["response"]["usage"]["output_tokens"] == 1
    _, events = run([chunk({"content": "w0"}), chunk(finish="stop")])
    assert events[-1]["response"]["usage"] is None


def test_error_event_ends_the_stream():
    t = ChatToResponsesStream(REQUEST, resp_id="resp_1", created_at=1, model="m")
    events = t.start() + t.feed(chunk({"content": "w0"}))
    err = t.error("run run_1 was cancelled", "run_cancelled")
    parsed = EVENT.validate_python(err)
    assert (parsed.type, parsed.code, parsed.sequence_number) == ("error", "run_cancelled", len(events))
    assert t.finish() == []  # nothing after the error


def test_delivered_chars_count_text_and_arguments():
    t, _ = run(TEXT_THEN_CALL)
    assert t.delivered_chars == len("looking") + len("{}")


def sse_client(chunks) -> OpenAI:
    def answer(request: httpx.Request) -> httpx.Response:
        t = ChatToResponsesStream(orjson.loads(request.content), resp_id="resp_1", created_at=1700000000,
                                  model="m")
        events = t.start()
        for c in chunks:
            events += t.feed(c)
        body = b"".join(sse(e) for e in events + t.finish())
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return OpenAI(api_key="k", base_url="http://gw.test/v1",
                  http_client=httpx.Client(transport=httpx.MockTransport(answer)))


def test_the_sdk_stream_reader_accumulates_text():
    with sse_client(TEXT).responses.stream(model="m", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["w0", " w1"]
    assert final.output_text == "w0 w1" and final.usage.total_tokens == 8


def test_the_sdk_stream_reader_accumulates_calls():
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False},
             {"type": "function", "name": "g", "parameters": {"type": "object"}, "strict": False}]
    with sse_client(CALLS).responses.stream(model="m", input="hi", tools=tools) as stream:
        final = stream.get_final_response()
    assert [(o.type, o.call_id, o.name, o.arguments) for o in final.output] == [
        ("function_call", "call_a", "f", "{\"x\":1}"), ("function_call", "call_b", "g", "{}")]


def test_raw_stream_events_parse():
    events = list(sse_client(INTERLEAVED).responses.create(model="m", input="hi", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
