"""Parse and check a /v1/chat/completions body before anything is reserved. Everything the guard
needs (sizes, counts, max_tokens, n) is read here; every other parameter passes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tokens_forge.errors import InvalidRequest

MAX_TOKENS_LIMIT = 1_000_000
MAX_N = 128


@dataclass
class ChatRequest:
    body: dict[str, Any]
    size_bytes: int
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    n: int
    messages: int
    images: int
    prompt_chars: int


def _int_field(body: dict, name: str, low: int, high: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidRequest(f"{name} must be an integer", param=name)
    if v < low or v > high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {v}", param=name)
    return v


def _content_stats(content: Any, i: int) -> tuple[int, int]:
    """(chars, images) of one message's content."""
    if content is None:
        return 0, 0
    if isinstance(content, str):
        return len(content), 0
    if isinstance(content, list):
        chars = images = 0
        for part in content:
            if not isinstance(part, dict):
                raise InvalidRequest(f"messages[{i}].content parts must be objects", param=f"messages.{i}.content")
            if isinstance(part.get("text"), str):
                chars += len(part["text"])
            if part.get("type") in ("image_url", "input_image", "image", "input_audio", "file"):
                images += 1
        return chars, images
    raise InvalidRequest(f"messages[{i}].content must be a string, a list of parts or null",
                         param=f"messages.{i}.content")


def parse_chat_request(raw: bytes) -> ChatRequest:
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
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model is required and must be a string", param="model")
    if len(model) > 200:
        raise InvalidRequest("model is too long", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages is required and must be a non-empty array", param="messages")
    chars = images = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string role", param=f"messages.{i}")
        c, im = _content_stats(m.get("content"), i)
        chars, images = chars + c, images + im
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise InvalidRequest("stream_options must be an object", param="stream_options")
    include_usage = bool(opts and opts.get("include_usage") is True)
    mt = _int_field(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    mct = _int_field(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    limits = [v for v in (mt, mct) if v is not None]
    n = _int_field(body, "n", 1, MAX_N) or 1
    return ChatRequest(body=body, size_bytes=len(raw), model=model, stream=stream, include_usage=include_usage,
                       max_tokens=min(limits) if limits else None, n=n, messages=len(messages), images=images,
                       prompt_chars=chars)
