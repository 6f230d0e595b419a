"""A Responses stream as the relay sees it, one upstream SSE event at a time: what the client
gets, and a tally of what was delivered (usage, content chunks and characters) for the settle.

- `NativeStream`: the upstream speaks the Responses API; its events pass byte for byte. It ends
  with response.completed / response.incomplete / response.failed (there is no [DONE]).
- `TranslatedStream`: the upstream speaks chat completions; each chunk becomes the Responses
  events (responses.events), [DONE] becomes the terminal event.
Both end a failed or cancelled stream with an `error` event that continues the sequence numbers."""

from __future__ import annotations

from typing import Any

import orjson

from tokens_forge.guard.money import TextCount
from tokens_forge.responses.events import ChatToResponsesStream, sse
from tokens_forge.upstream.client import usage_of
from tokens_forge.upstream.sse import StreamTally

DONE = object()
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
DELTAS = ("response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta")


def parse_event(event: bytes) -> Any:
    """The JSON of an SSE event's data (DONE for `[DONE]`, None when there is none or it is not JSON)."""
    lines = [ln[5:].lstrip(b" ") for ln in event.split(b"\n") if ln.startswith(b"data:")]
    if not lines:
        return None
    data = b"\n".join(lines)
    if data.strip() == b"[DONE]":
        return DONE
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def response_usage(response: Any) -> tuple[int, int] | None:
    """(input, output) tokens of a Response object's usage, if it has a well-formed one."""
    u = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(u, dict):
        return None
    pt, ct = u.get("input_tokens"), u.get("output_tokens")
    if (isinstance(pt, int) and isinstance(ct, int) and not isinstance(pt, bool) and not isinstance(ct, bool)
            and pt >= 0 and ct >= 0):
        return pt, ct
    return None


def response_text(response: dict) -> TextCount:
    """The output text of a Response (text, refusals, call names and arguments): an estimate's base."""
    out = TextCount()
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        for name in ("name", "arguments"):
            if item.get("type") == "function_call" and isinstance(item.get(name), str):
                out.add(item[name])
        for part in item.get("content") or []:
            if isinstance(part, dict):
                for k in ("text", "refusal"):
                    if isinstance(part.get(k), str):
                        out.add(part[k])
    return out


class NativeStream:
    def __init__(self) -> None:
        self.tally = StreamTally()
        self.last_sequence = -1

    def opening(self) -> bytes:
        return b""

    def relay(self, event: bytes) -> bytes:
        self.tally.events += 1
        data = parse_event(event)
        if not isinstance(data, dict):
            return event
        if isinstance(data.get("sequence_number"), int):
            self.last_sequence = data["sequence_number"]
        kind = data.get("type")
        if kind in DELTAS and isinstance(data.get("delta"), str) and data["delta"]:
            self.tally.content_chunks += 1
            self.tally.delivered.add(data["delta"])
        elif kind == "response.output_item.added" and isinstance(data.get("item"), dict):
            name = data["item"].get("name")
            if data["item"].get("type") == "function_call" and isinstance(name, str) and name:
                self.tally.delivered.add(name)
        elif kind in TERMINAL:
            self.tally.done = True
            self.tally.usage = response_usage(data.get("response")) or self.tally.usage
            if kind == "response.failed":
                err = (data.get("response") or {}).get("error") or {}
                self.tally.error = str(err.get("message") or "the response failed")[:500]
        elif kind == "error":
            self.tally.done = True
            self.tally.error = str(data.get("message") or "upstream error")[:500]
        return event

    def error(self, message: str, code: str, err_type: str = "upstream_error") -> bytes:
        self.last_sequence += 1
        return sse({"type": "error", "sequence_number": self.last_sequence, "code": code, "message": message,
                    "param": None})


class TranslatedStream:
    def __init__(self, request: dict[str, Any], *, resp_id: str, created_at: int, model: str):
        self.tally = StreamTally()
        self.events = ChatToResponsesStream(request, resp_id=resp_id, created_at=created_at, model=model)

    def opening(self) -> bytes:
        return b"".join(sse(e) for e in self.events.start())

    def relay(self, event: bytes) -> bytes:
        self.tally.events += 1
        data = parse_event(event)
        if data is DONE:
            self.tally.done = True
            return b"".join(sse(e) for e in self.events.finish())
        if not isinstance(data, dict) or self.events.ended:
            return b""
        if isinstance(data.get("error"), dict):
            self.tally.error = str(data["error"].get("message") or "upstream error")[:500]
            return sse(self.events.error(self.tally.error, str(data["error"].get("code") or "upstream_error")))
        usage = usage_of(data)
        if usage is not None:
            self.tally.usage = usage
        out = self.events.feed(data)
        deltas = [e["delta"] for e in out if e["type"] in DELTAS]
        deltas += [e["item"]["name"] for e in out if e["type"] == "response.output_item.added"
                   and e["item"]["type"] == "function_call" and e["item"]["name"]]
        if deltas:
            self.tally.content_chunks += 1
            for d in deltas:
                self.tally.delivered.add(d)
        return b"".join(sse(e) for e in out)

    def error(self, message: str, code: str, err_type: str = "upstream_error") -> bytes:
        return b"" if self.events.ended else sse(self.events.error(message, code))
