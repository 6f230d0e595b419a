"""Chat completion chunks as Responses streaming events, in OpenAI's documented order, each with
its `sequence_number`:

    response.created, response.in_progress,
    per message:  response.output_item.added, response.content_part.added,
                  response.output_text.delta …, response.output_text.done,
                  response.content_part.done, response.output_item.done
    per call:     response.output_item.added, response.function_call_arguments.delta …,
                  response.function_call_arguments.done, response.output_item.done
    response.completed (or response.incomplete when the output cap was hit), with usage;
    or, for a failure or a cancelled run, an `error` event.

The assistant's text closes when its first tool call starts (text, then calls, as OpenAI orders
a turn); calls stay open until the chat stream ends, so that chunks interleaving several calls'
arguments still land on the right item."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tokens_forge.ids import new_id
from tokens_forge.responses.response import (
    IdMaker,
    annotations_out,
    call_item,
    message_item,
    shell,
    status_of,
    text_part,
    usage_out,
)


def sse(event: dict[str, Any]) -> bytes:
    """One event as OpenAI frames it: its type as the SSE event name, the object as data."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@dataclass
class _Part:
    kind: str  # output_text | refusal
    index: int
    text: str = ""


@dataclass
class _Message:
    id: str
    output_index: int
    parts: list[_Part] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)

    def part(self, kind: str) -> tuple[_Part, bool]:
        for p in self.parts:
            if p.kind == kind:
                return p, False
        p = _Part(kind, len(self.parts))
        self.parts.append(p)
        return p, True


@dataclass
class _Call:
    id: str
    output_index: int
    call_id: str
    name: str
    arguments: str = ""


class ChatToResponsesStream:
    """Feed chat completion chunks (parsed JSON), get Responses events (dicts; frame them with `sse`)."""

    def __init__(self, request: dict[str, Any], *, resp_id: str, created_at: int, model: str,
                 ids: IdMaker = new_id):
        self.request, self.resp_id, self.created_at, self.model, self.ids = request, resp_id, created_at, model, ids
        self.seq = 0
        self.closed: list[tuple[int, dict]] = []  # (output_index, item) of the items closed so far
        self.message: _Message | None = None
        self.calls: dict[int, _Call] = {}  # the chat tool-call index → its open item
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.service_tier: str | None = None
        self.delivered_chars = 0
        self.ended = False
        self._next_index = 0

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event

    def _response(self, status: str) -> dict[str, Any]:
        out = shell(self.request, resp_id=self.resp_id, created_at=self.created_at, model=self.model, status=status)
        if self.service_tier is not None:
            out["service_tier"] = self.service_tier
        return out

    def start(self) -> list[dict]:
        return [self._event("response.created", response=self._response("in_progress")),
                self._event("response.in_progress", response=self._response("in_progress"))]

    # -- the chat stream -------------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[dict]:
        """The events of one chat completion chunk."""
        events: list[dict] = []
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if chunk.get("service_tier") is not None:
            self.service_tier = chunk["service_tier"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_out(chunk["usage"])
        choices = chunk.get("choices") or []
        choice: dict[str, Any] = choices[0] if choices and isinstance(choices[0], dict) else {}
        delta: dict[str, Any] = d if isinstance(d := choice.get("delta"), dict) else {}
        if isinstance(delta.get("content"), str) and delta["content"]:
            events += self._text("output_text", delta["content"])
        if isinstance(delta.get("refusal"), str) and delta["refusal"]:
            events += self._text("refusal", delta["refusal"])
        if delta.get("annotations") and self.message is not None:
            self.message.annotations += annotations_out(delta["annotations"])
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                events += self._call_delta(call)
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]
        return events

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _text(self, kind: str, text: str) -> list[dict]:
        events: list[dict] = []
        self.delivered_chars += len(text)
        if self.message is None:
            self.message = _Message(self.ids("msg"), self._take_index())
            events.append(self._event("response.output_item.added", output_index=self.message.output_index,
                                      item=message_item(self.message.id, [], "in_progress")))
        msg = self.message
        part, new = msg.part(kind)
        if new:
            events.append(self._event("response.content_part.added", item_id=msg.id, output_index=msg.output_index,
                                      content_index=part.index, part=self._part_out(part, msg)))
        part.text += text
        fields: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
        events.append(self._event(f"response.{kind}.delta", item_id=msg.id, output_index=msg.output_index,
                                  content_index=part.index, delta=text, **fields))
        return events

    def _call_delta(self, call: dict) -> list[dict]:
        events: list[dict] = []
        index: int = i if isinstance(i := call.get("index"), int) else len(self.calls)
        fn: dict[str, Any] = f if isinstance(f := call.get("function"), dict) else {}
        open_call = self.calls.get(index)
        if open_call is None:
            events += self._close_message()
            open_call = _Call(self.ids("fc"), self._take_index(), call.get("id") or self.ids("call"),
                              fn.get("name") or "")
            self.calls[index] = open_call
            events.append(self._event("response.output_item.added", output_index=open_call.output_index,
                                      item=call_item(open_call.id, open_call.call_id, open_call.name, "",
                                                     "in_progress")))
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            open_call.arguments += args
            self.delivered_chars += len(args)
            events.append(self._event("response.function_call_arguments.delta", item_id=open_call.id,
                                      output_index=open_call.output_index, delta=args))
        return events

    # -- closing -----------------------------------------------------------------------------------

    @staticmethod
    def _part_out(part: _Part, msg: _Message) -> dict:
        if part.kind == "refusal":
            return {"type": "refusal", "refusal": part.text}
        return text_part(part.text, msg.annotations)

    def _close_message(self, status: str = "completed") -> list[dict]:
        msg, self.message = self.message, None
        if msg is None:
            return []
        events = []
        for part in msg.parts:
            where = {"item_id": msg.id, "output_index": msg.output_index, "content_index": part.index}
            if part.kind == "refusal":
                events.append(self._event("response.refusal.done", **where, refusal=part.text))
            else:
                events.append(self._event("response.output_text.done", **where, text=part.text, logprobs=[]))
            events.append(self._event("response.content_part.done", **where, part=self._part_out(part, msg)))
        item = message_item(msg.id, [self._part_out(p, msg) for p in msg.parts], status)
        self.closed.append((msg.output_index, item))
        events.append(self._event("response.output_item.done", output_index=msg.output_index, item=item))
        return events

    def _close_calls(self) -> list[dict]:
        events = []
        for call in sorted(self.calls.values(), key=lambda c: c.output_index):
            events.append(self._event("response.function_call_arguments.done", item_id=call.id,
                                      output_index=call.output_index, arguments=call.arguments))
            item = call_item(call.id, call.call_id, call.name, call.arguments, "completed")
            self.closed.append((call.output_index, item))
            events.append(self._event("response.output_item.done", output_index=call.output_index, item=item))
        self.calls = {}
        return events

    def finish(self, usage: dict[str, Any] | None = None) -> list[dict]:
        """The chat stream ended ([DONE]): close every open item, then the terminal event.
        `usage` (chat's names) stands in when the upstream sent none."""
        if self.ended:
            return []
        self.ended = True
        status, incomplete = status_of(self.finish_reason)
        events = self._close_message("incomplete" if status == "incomplete" else "completed") + self._close_calls()
        response = self._response(status)
        response["incomplete_details"] = incomplete
        response["output"] = [item for _, item in sorted(self.closed, key=lambda c: c[0])]
        response["usage"] = self.usage if self.usage is not None else usage_out(usage)
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        return [*events, self._event(kind, response=response)]

    def error(self, message: str, code: str) -> dict[str, Any]:
        """The last event of a stream that failed or was cancelled (code `run_cancelled`)."""
        self.ended = True
        return self._event("error", code=code, message=message, param=None)
