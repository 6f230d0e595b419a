"""Server-sent events from an OpenAI-compatible stream: split the byte stream into events,
see usage and delivered content, and drop the usage chunk the client did not ask for. Events
are passed on byte for byte unless they must change."""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tokens_forge.guard.money import TextCount
from tokens_forge.upstream.client import usage_of

# The delta fields whose text the client receives as output (reasoning included: it is billed).
TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")


@dataclass
class StreamTally:
    usage: tuple[int, int] | None = None
    content_chunks: int = 0       # chunks that carried output: each carries at least one token
    delivered: TextCount = field(default_factory=TextCount)  # the output text the client received
    done: bool = False
    error: str | None = None
    events: int = 0


class EventSplitter:
    """Feed raw bytes, get complete events (each ending with a blank line)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        if b"\r\n" in self._buf:
            self._buf = self._buf.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        while True:
            i = self._buf.find(b"\n\n")
            if i < 0:
                return out
            out.append(self._buf[: i + 2])
            self._buf = self._buf[i + 2 :]

    @property
    def pending(self) -> bytes:
        return self._buf


def _data_of(event: bytes) -> bytes | None:
    lines = [ln[5:].lstrip(b" ") for ln in event.split(b"\n") if ln.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def _count(chunk: dict, tally: StreamTally) -> None:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        carried = False
        for name in TEXT_FIELDS:
            text = delta.get(name)
            if isinstance(text, str) and text:
                tally.delivered.add(text)
                carried = True
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    for part in (function.get("name"), function.get("arguments")):
                        if isinstance(part, str) and part:
                            tally.delivered.add(part)
                            carried = True
        if carried:
            tally.content_chunks += 1


def process_event(event: bytes, tally: StreamTally, *, client_wants_usage: bool) -> bytes | None:
    """What to send the client for one upstream event (None: nothing)."""
    tally.events += 1
    data = _data_of(event)
    if data is None:
        return event
    if data.strip() == b"[DONE]":
        tally.done = True
        return event
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return event
    if not isinstance(chunk, dict):
        return event
    if isinstance(chunk.get("error"), dict):
        tally.error = str(chunk["error"].get("message") or "upstream error")[:500]
        return event
    _count(chunk, tally)
    usage = usage_of(chunk)
    if usage is not None:
        tally.usage = usage
    if chunk.get("usage") is not None and not client_wants_usage:
        if not chunk.get("choices"):
            return None
        chunk = {k: v for k, v in chunk.items() if k != "usage"}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"
    return event


def error_event(message: str, code: str, err_type: str = "upstream_error") -> bytes:
    return b"data: " + orjson.dumps({"error": {"message": message, "type": err_type, "code": code,
                                               "param": None}}) + b"\n\n"


async def close_body(body: AsyncIterable[Any]) -> None:
    """Close a response body's iterator: Starlette types it as any async iterable, but the bodies
    relayed here are async generators, whose close runs their `finally` (the upstream's release)."""
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
