"""Parse and check a POST /v1/responses body before anything is reserved. What the guard needs
(sizes, counts, max_output_tokens) is read here, for native and translated routes alike; which
fields a chat-only route can take is `translate`'s business."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tokens_forge.errors import InvalidRequest

MAX_OUTPUT_TOKENS_LIMIT = 1_000_000
IMAGE_PART_TYPES = ("input_image", "image")


@dataclass
class ResponsesRequest:
    body: dict[str, Any]
    size_bytes: int
    model: str
    stream: bool
    max_output_tokens: int | None
    items: int          # input items, plus one for instructions: each costs a message's overhead
    images: int
    prompt_chars: int   # characters of the text the upstream will read (a usage estimate's base)


def _text_of(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def _part_stats(parts: Any, where: str) -> tuple[int, int]:
    """(chars, images) of a content value: a string or a list of content parts."""
    if parts is None or isinstance(parts, str):
        return _text_of(parts), 0
    if not isinstance(parts, list):
        raise InvalidRequest(f"{where} must be a string or an array of content parts", param=where)
    chars = images = 0
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise InvalidRequest(f"{where}[{j}] must be an object", param=f"{where}[{j}]")
        chars += _text_of(part.get("text")) + _text_of(part.get("refusal"))
        images += part.get("type") in IMAGE_PART_TYPES
    return chars, images


def _item_stats(item: Any, i: int) -> tuple[int, int]:
    where = f"input[{i}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object", param=where)
    kind = item.get("type")
    if kind is None or kind == "message":
        if not isinstance(item.get("role"), str):
            raise InvalidRequest(f"{where}.role is required and must be a string", param=f"{where}.role")
        return _part_stats(item.get("content"), f"{where}.content")
    if kind == "function_call":
        return _text_of(item.get("arguments")) + _text_of(item.get("name")), 0
    if kind == "function_call_output":
        return _part_stats(item.get("output"), f"{where}.output")
    return len(orjson.dumps(item)), 0  # another kind: its whole text is a fair estimate


def _int_field(body: dict, name: str, low: int, high: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidRequest(f"{name} must be an integer", param=name)
    if v < low or v > high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {v}", param=name)
    return v


def _load(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("the request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:  # orjson reads 1024 levels but writes only 255: the body is re-serialized for the upstream
        orjson.dumps(body)
    except TypeError as exc:
        raise InvalidRequest("the request body is nested too deeply") from exc
    return body


def parse_responses_request(raw: bytes) -> ResponsesRequest:
    body = _load(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model is required and must be a string", param="model")
    if len(model) > 200:
        raise InvalidRequest("model is too long", param="model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("instructions must be a string", param="instructions")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise InvalidRequest("tools must be an array of objects", param="tools")
    inp = body.get("input")
    if isinstance(inp, str):
        items, (chars, images) = 1, (len(inp), 0)
    elif isinstance(inp, list) and inp:
        stats = [_item_stats(item, i) for i, item in enumerate(inp)]
        items, chars, images = len(inp), sum(c for c, _ in stats), sum(n for _, n in stats)
    else:
        raise InvalidRequest("input is required: a string or a non-empty array of input items", param="input")
    return ResponsesRequest(
        body=body, size_bytes=len(raw), model=model, stream=bool(stream),
        max_output_tokens=_int_field(body, "max_output_tokens", 1, MAX_OUTPUT_TOKENS_LIMIT),
        items=items + (instructions is not None), images=images,
        prompt_chars=chars + _text_of(instructions))
