"""The relay's view of Responses streams: native events pass byte for byte and are tallied;
chat chunks become Responses events; an error event continues the sequence. The streams are the
mock upstream's real SSE bytes, split as the relay splits them."""

import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter
from starlette.testclient import TestClient

from tokens_forge.mock.upstream import create_mock_app
from tokens_forge.responses.streams import NativeStream, TranslatedStream, parse_event, response_text
from tokens_forge.responses.translate import to_chat
from tokens_forge.upstream.sse import EventSplitter

EVENT = TypeAdapter(ResponseStreamEvent)
TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {
    "q": {"type": "string"}}}, "strict": False}]


@pytest.fixture(scope="module")
def mock():
    return TestClient(create_mock_app())


def events_of(raw: bytes) -> list[bytes]:
    return EventSplitter().feed(raw)


def run(stream, raw: bytes) -> bytes:
    out = stream.opening()
    for ev in events_of(raw):
        out += stream.relay(ev)
        if stream.tally.done:
            break
    return out


def parsed(out: bytes) -> list:
    return [EVENT.validate_python(parse_event(e)) for e in events_of(out)]


@pytest.mark.parametrize("tools", [None, TOOLS])
def test_native_passes_through_and_tallies(mock, tools):
    body = {"model": "mock", "input": "hello there", "stream": True, "max_output_tokens": 4,
            **({"tools": tools} if tools else {})}
    raw = mock.post("/v1/responses", json=body).content
    stream = NativeStream()
    assert run(stream, raw) == raw  # byte for byte
    final = parsed(raw)[-1].response
    assert stream.tally.done and stream.tally.usage == (final.usage.input_tokens, final.usage.output_tokens)
    assert stream.tally.delivered == response_text(final.model_dump())
    assert stream.tally.content_chunks == sum(1 for e in parsed(raw) if e.type.endswith(".delta"))


def test_native_error_continues_the_sequence(mock):
    raw = mock.post("/v1/responses", json={"model": "mock", "input": "hi", "stream": True}).content
    stream = NativeStream()
    evs = events_of(raw)[:4]
    for ev in evs:
        stream.relay(ev)
    err = EVENT.validate_python(parse_event(stream.error("run run_1 was cancelled", "run_cancelled")))
    assert (err.type, err.code, err.sequence_number) == ("error", "run_cancelled", 4)
    assert not stream.tally.done


def test_native_upstream_error_event_ends_it():
    stream = NativeStream()
    stream.relay(b'event: error\ndata: {"type":"error","sequence_number":0,"code":"x","message":"bad"}\n\n')
    assert stream.tally.done and stream.tally.error == "bad"


@pytest.mark.parametrize("tools", [None, TOOLS])
def test_translated_chat_chunks(mock, tools):
    request = {"model": "m", "input": "hello there", "stream": True, **({"tools": tools} if tools else {})}
    chat = to_chat(request)
    raw = mock.post("/v1/chat/completions", json={**chat, "model": "mock"}).content
    stream = TranslatedStream(request, resp_id="resp_1", created_at=1, model="mock")
    events = parsed(run(stream, raw))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    final = events[-1].response
    assert stream.tally.done and stream.tally.usage == (final.usage.input_tokens, final.usage.output_tokens)
    assert stream.tally.delivered == response_text(final.model_dump()) and stream.tally.delivered.chars > 0
    assert final.output[0].type == ("function_call" if tools else "message")


def test_translated_upstream_error_chunk_is_an_error_event():
    stream = TranslatedStream({"model": "m", "input": "x"}, resp_id="resp_1", created_at=1, model="m")
    out = stream.opening()
    out += stream.relay(b'data: {"choices":[{"index":0,"delta":{"content":"w0"}}]}\n\n')
    out += stream.relay(b'data: {"error":{"message":"overloaded","code":"server_error"}}\n\n')
    out += stream.relay(b'data: {"choices":[{"index":0,"delta":{"content":"w1"}}]}\n\n')
    out += stream.relay(b"data: [DONE]\n\n") + stream.error("late", "upstream_error")
    events = parsed(out)
    assert events[-1].type == "error" and events[-1].code == "server_error" and events[-1].message == "overloaded"
    assert sum(e.type == "error" for e in events) == 1 and stream.tally.error == "overloaded"
    assert [e.type for e in events].count("response.output_text.delta") == 1  # nothing after the error
