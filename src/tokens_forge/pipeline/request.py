"""Parse and check a /v1/chat/completions body before anything is reserved. Everything the guard
needs (the prompt's shape, the output caps, n) is read here; every other parameter passes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tokens_forge.errors import InvalidRequest
from tokens_forge.guard.money import PromptShape, TextCount

MAX_TOKENS_LIMIT = 1_000_000
MAX_N = 128
OUTPUT_CAP_FIELDS = ("max_tokens", "max_completion_tokens")
IMAGE_PARTS = ("image_url", "input_image", "image")
FILE_PARTS = ("file", "input_file", "input_audio")
# OpenAI's chat roles; `function` is deprecated but still accepted there
CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

# The JSON types OpenAI accepts for the parameters a client most often gets wrong. An upstream
# answers the rest; these are refused here so a malformed body never costs an upstream call.
_NUMBER = (int, float)
PARAM_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "temperature": (_NUMBER, "a number"),
    "top_p": (_NUMBER, "a number"),
    "presence_penalty": (_NUMBER, "a number"),
    "frequency_penalty": (_NUMBER, "a number"),
    "seed": ((int,), "an integer"),
    "user": ((str,), "a string"),
    "stop": ((str, list), "a string or an array of strings"),
    "tools": ((list,), "an array of objects"),
    "tool_choice": ((str, dict), "a string or an object"),
    "parallel_tool_calls": ((bool,), "a boolean"),
    "response_format": ((dict,), "an object"),
    "logit_bias": ((dict,), "an object"),
    "logprobs": ((bool,), "a boolean"),
    "metadata": ((dict,), "an object"),
}


@dataclass
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    client_cap: int | None     # the larger of the output caps the client sent
    n: int
    shape: PromptShape
    file_part: str | None = None  # where the first file or audio part is (they need a route bound)


@dataclass
class _Tally:
    text: TextCount
    images_low: int = 0
    images_high: int = 0
    files: int = 0
    first_file: str | None = None


def int_field(body: dict, name: str, low: int, high: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidRequest(f"{name} must be an integer", param=name)
    if v < low or v > high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {v}", param=name)
    return v


def check_param_types(body: dict[str, Any]) -> None:
    """A 400 naming the first well-known parameter whose JSON type OpenAI would refuse."""
    for name, (types, expected) in PARAM_TYPES.items():
        v = body.get(name)
        if v is None:
            continue
        wrong = (isinstance(v, bool) and bool not in types) or not isinstance(v, types)
        if not wrong and isinstance(v, list):
            item = str if name == "stop" else dict
            wrong = not all(isinstance(x, item) for x in v)
        if wrong:
            raise InvalidRequest(f"Invalid type for '{name}': expected {expected}", param=name)


def _image_detail(part: dict) -> str:
    image = part.get("image_url")
    detail = image.get("detail") if isinstance(image, dict) else part.get("detail")
    return detail if detail in ("low", "high", "auto") else "auto"


def count_part(part: Any, tally: _Tally, where: str, index: int = 0) -> None:
    """Add one content part of a message (or input item) to the tally."""
    if not isinstance(part, dict):
        raise InvalidRequest(f"{where} parts must be objects", param=where)
    if isinstance(part.get("text"), str):
        tally.text.add(part["text"])
    kind = part.get("type")
    if kind in IMAGE_PARTS:
        if _image_detail(part) == "low":
            tally.images_low += 1
        else:
            tally.images_high += 1
    elif kind in FILE_PARTS:
        tally.files += 1
        tally.first_file = tally.first_file or f"{where}.{index}"


def _count_content(content: Any, tally: _Tally, i: int) -> None:
    where = f"messages.{i}.content"
    if content is None:
        return
    if isinstance(content, str):
        tally.text.add(content)
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"messages[{i}].content must be a string, a list of parts or null", param=where)
    for j, part in enumerate(content):
        count_part(part, tally, where, j)


def load_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
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


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model is required and must be a string", param="model")
    if len(model) > 200:
        raise InvalidRequest("model is too long", param="model")
    return model


def stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage)."""
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise InvalidRequest("stream_options must be an object", param="stream_options")
    return stream, bool(opts and opts.get("include_usage") is True)


def output_cap(body: dict[str, Any], fields: tuple[str, ...] = OUTPUT_CAP_FIELDS) -> int | None:
    """The larger of the output caps sent: an upstream may honour either, so the bound is the larger."""
    caps = [v for f in fields if (v := int_field(body, f, 1, MAX_TOKENS_LIMIT)) is not None]
    return max(caps) if caps else None


def parse_chat_request(raw: bytes) -> ChatRequest:
    body = load_object(raw)
    model = model_of(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages is required and must be a non-empty array", param="messages")
    tally = _Tally(TextCount())
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string role", param=f"messages.{i}")
        if m["role"] not in CHAT_ROLES:  # an upstream would refuse it after the hold was taken
            raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(sorted(CHAT_ROLES))}",
                                 param=f"messages.{i}.role")
        _count_content(m.get("content"), tally, i)
    check_param_types(body)
    stream, include_usage = stream_flags(body)
    shape = PromptShape(size_bytes=len(raw), messages=len(messages), images_low=tally.images_low,
                        images_high=tally.images_high, files=tally.files, text=tally.text)
    return ChatRequest(body=body, model=model, stream=stream, include_usage=include_usage,
                       client_cap=output_cap(body), n=int_field(body, "n", 1, MAX_N) or 1, shape=shape,
                       file_part=tally.first_file)
