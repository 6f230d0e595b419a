"""Parse and check a POST /v1/responses body before anything is reserved. What the guard needs
(the prompt's shape: `input`, `instructions` and `tools` are all in the body's bytes; the output
cap `max_output_tokens`) is read here, for native and translated routes alike; which fields a
chat-only route can take is `translate`'s business."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokens_forge.errors import InvalidRequest
from tokens_forge.guard.money import PromptShape, TextCount
from tokens_forge.pipeline.request import _Tally, count_part, load_object, model_of, output_cap

OUTPUT_CAP_FIELDS = ("max_output_tokens",)


@dataclass
class ResponsesRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    client_cap: int | None  # max_output_tokens, when the client sent it
    shape: PromptShape      # messages: the input items, and instructions as one more
    file_part: str | None = None  # where the first file or audio part is (they need a route bound)


def _content(parts: Any, tally: _Tally, where: str) -> None:
    """A content value: a string or a list of content parts."""
    if parts is None:
        return
    if isinstance(parts, str):
        tally.text.add(parts)
        return
    if not isinstance(parts, list):
        raise InvalidRequest(f"{where} must be a string or an array of content parts", param=where)
    for j, part in enumerate(parts):
        count_part(part, tally, where, j)
        if isinstance(part, dict) and isinstance(part.get("refusal"), str):
            tally.text.add(part["refusal"])


def _item(item: Any, i: int, tally: _Tally) -> None:
    where = f"input[{i}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object", param=where)
    kind = item.get("type")
    if kind is None or kind == "message":
        if not isinstance(item.get("role"), str):
            raise InvalidRequest(f"{where}.role is required and must be a string", param=f"{where}.role")
        _content(item.get("content"), tally, f"{where}.content")
    elif kind == "function_call":
        for name in ("name", "arguments"):
            if isinstance(item.get(name), str):
                tally.text.add(item[name])
    elif kind == "function_call_output":
        _content(item.get("output"), tally, f"{where}.output")


def parse_responses_request(raw: bytes) -> ResponsesRequest:
    body = load_object(raw)
    model = model_of(body)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("instructions must be a string", param="instructions")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise InvalidRequest("tools must be an array of objects", param="tools")
    tally = _Tally(TextCount())
    if isinstance(instructions, str):
        tally.text.add(instructions)
    inp = body.get("input")
    if isinstance(inp, str):
        items = 1
        tally.text.add(inp)
    elif isinstance(inp, list) and inp:
        items = len(inp)
        for i, item in enumerate(inp):
            _item(item, i, tally)
    else:
        raise InvalidRequest("input is required: a string or a non-empty array of input items", param="input")
    shape = PromptShape(size_bytes=len(raw), messages=items + (instructions is not None),
                        images_low=tally.images_low, images_high=tally.images_high, files=tally.files,
                        text=tally.text)
    return ResponsesRequest(body=body, model=model, stream=bool(stream),
                            client_cap=output_cap(body, OUTPUT_CAP_FIELDS), shape=shape, file_part=tally.first_file)
