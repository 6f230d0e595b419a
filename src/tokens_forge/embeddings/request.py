"""Parse and check a POST /v1/embeddings body before anything is reserved. The input is text (a
string or strings) or tokens (an array of integers, or arrays of them); every other parameter
(`encoding_format`, `dimensions`, `user`, …) passes through to the upstream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tokens_forge.errors import InvalidRequest
from tokens_forge.guard.money import PromptShape, TextCount

MAX_INPUTS = 2048  # OpenAI's own limit per request


@dataclass
class EmbeddingsRequest:
    body: dict[str, Any]
    model: str
    shape: PromptShape  # messages: the inputs; text: the text inputs (token inputs are bounded by their bytes)


def _is_tokens(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                   for t in v)


def _inputs(inp: Any) -> list[str | list[int]]:
    if isinstance(inp, str) or _is_tokens(inp):
        return [inp]
    if isinstance(inp, list) and inp and all(isinstance(v, str) for v in inp):
        return list(inp)
    if isinstance(inp, list) and inp and all(_is_tokens(v) for v in inp):
        return list(inp)
    raise InvalidRequest("input is required: a string, an array of strings, an array of token integers, or an "
                         "array of such arrays", param="input")


def parse_embeddings_request(raw: bytes) -> EmbeddingsRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("the request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise InvalidRequest("model is required and must be a string of at most 200 characters", param="model")
    inputs = _inputs(body.get("input"))
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequest(f"input has {len(inputs)} items; at most {MAX_INPUTS} are allowed", param="input")
    if any(isinstance(v, str) and not v for v in inputs):
        raise InvalidRequest("input strings must not be empty", param="input")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format must be float or base64", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise InvalidRequest("dimensions must be a positive integer", param="dimensions")
    text = None
    if all(isinstance(v, str) for v in inputs):
        text = TextCount()
        for v in inputs:
            text.add(v)  # type: ignore[arg-type]
    return EmbeddingsRequest(body=body, model=model,
                             shape=PromptShape(size_bytes=len(raw), messages=len(inputs), text=text))


def usage_of(data: dict[str, Any]) -> int | None:
    """The upstream's count of input tokens (`usage.prompt_tokens`), if well formed."""
    u = data.get("usage")
    pt = u.get("prompt_tokens") if isinstance(u, dict) else None
    return pt if isinstance(pt, int) and not isinstance(pt, bool) and pt >= 0 else None
