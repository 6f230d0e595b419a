"""The built-in OpenAI-compatible mock upstream: deterministic answers with a `usage` block,
non-streaming and SSE streaming, so that the demo and the tests need no network. It also speaks
the Responses API and embeddings (mock/apis.py).

Behaviour by the upstream model name:
  anything       a normal answer: `min(max_tokens or 16, 16)` words "w0 w1 …", one token each
  fail500/429    always that status (429 with Retry-After: 1)
  slow:<ms>      wait before answering          drip:<ms>  stream 200 words, one every <ms>
  garbage        200 with a body that is not JSON  hang     never answers
  nousage        a normal answer without `usage`   cut:<n>  stream n words, then drop the connection
  reasoning      refuses `max_tokens` as OpenAI's reasoning models do (400 unsupported_parameter)
With `tools` (and tool_choice not "none"), an answer calls the first tool (or the one tool_choice
names) with arguments made from its schema; after a tool result it answers with that result's
words. Every answer has an `x-request-id`; GET /_last/<model> shows the last body received.
prompt_tokens = ceil(characters of the message contents / 4)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MAX_WORDS = 16
SAMPLE = {"string": "w0", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
REASONING_REFUSAL = {"error": {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
               "Use 'max_completion_tokens' instead.",
    "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}


def prompt_tokens(body: dict) -> int:
    chars = 0
    for m in body.get("messages") or []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            chars += len(c)
        elif isinstance(c, list):
            chars += sum(len(p.get("text", "")) for p in c if isinstance(p, dict))
    return max(1, math.ceil(chars / 4))


def _tool_to_call(body: dict) -> dict | None:
    """The tool this answer calls, if any: none after a tool result, or when told not to."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    messages = body.get("messages") or [{}]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or (messages[-1] or {}).get("role") == "tool":
        return None
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if t["function"].get("name") == named] or tools
    return tools[0]["function"]


def _arguments(fn: dict) -> str:
    props = (fn.get("parameters") or {}).get("properties") or {}
    return orjson.dumps({k: SAMPLE.get(str((v or {}).get("type")), "w0") for k, v in props.items()}).decode()


def _words(body: dict, n: int) -> list[str]:
    """The answer's words: w0 w1 …, or after a tool result, that result's words."""
    last = (body.get("messages") or [{}])[-1] or {}
    if last.get("role") == "tool" and isinstance(last.get("content"), str) and last["content"].split():
        return last["content"].split()[:n]
    return [f"w{i}" for i in range(n)]


def completion(body: dict, model: str, cid: str, *, usage: bool = True) -> dict:
    """A non-streamed chat completion for `body`."""
    n = min(body.get("max_tokens") or body.get("max_completion_tokens") or MAX_WORDS, MAX_WORDS)
    pt = prompt_tokens(body)
    fn = _tool_to_call(body)
    if fn is not None:
        args = _arguments(fn)
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{cid}", "type": "function", "function": {"name": fn.get("name"), "arguments": args}}]}
        finish, ct = "tool_calls", max(1, math.ceil(len(args) / 4))
    else:
        words = _words(body, n)
        message, finish, ct = {"role": "assistant", "content": " ".join(words)}, (
            "length" if len(words) == MAX_WORDS else "stop"), len(words)
    out = {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
           "choices": [{"index": 0, "message": message, "finish_reason": finish}]}
    if usage:
        out["usage"] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
    return out


async def chunks(body: dict, model: str, cid: str) -> AsyncIterator[dict]:
    """The chunks of a streamed chat completion for `body` (usage only when asked for)."""
    n = min(body.get("max_tokens") or body.get("max_completion_tokens") or MAX_WORDS, MAX_WORDS)
    drip = int(model.split(":")[1]) / 1000 if model.startswith("drip:") else 0.0
    cut = int(model.split(":")[1]) if model.startswith("cut:") else None
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    fn = _tool_to_call(body)
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    if fn is not None:
        args = _arguments(fn)
        ct = max(1, math.ceil(len(args) / 4))
        yield {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
            {"index": 0, "id": f"call_{cid}", "type": "function", "function": {"name": fn.get("name"), "arguments": ""}}]}}]}
        yield {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": args}}]}}]}
        finish = "tool_calls"
    else:
        words = [f"w{i}" for i in range(200)] if drip else _words(body, n)
        for i, word in enumerate(words):
            if cut is not None and i == cut:
                raise ConnectionResetError("mock upstream cut the stream")
            if drip:
                await asyncio.sleep(drip)
            yield {**base, "choices": [{"index": 0, "delta": {"content": (" " if i else "") + word},
                                        "finish_reason": None}]}
        ct, finish = len(words), "stop"
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if (body.get("stream_options") or {}).get("include_usage") and model != "nousage":
        pt = prompt_tokens(body)
        yield {**base, "choices": [], "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}}


class MockState:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.last: dict[str, dict] = {}

    def seen(self, body: dict) -> tuple[str, str, dict[str, str]]:
        """Count a request: (its model, an id for the answer, the answer's headers)."""
        model = str(body.get("model", "mock"))
        self.hits[model] += 1
        self.last[model] = body
        n = sum(self.hits.values())
        return model, f"chatcmpl-mock-{self.hits[model]}", {"x-request-id": f"req_mock_{n}"}


async def refusal(model: str, body: dict, headers: dict[str, str]) -> Response | None:
    """The failures a model name asks for, shared by every API of the mock."""
    if model == "fail500":
        return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500, headers=headers)
    if model == "fail429":
        return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, status_code=429,
                            headers={"Retry-After": "1", **headers})
    if model == "garbage":
        return Response("<html>not json", media_type="application/json", headers=headers)
    if model == "reasoning" and body.get("max_tokens") is not None:
        return JSONResponse(REASONING_REFUSAL, status_code=400, headers=headers)
    if model == "hang":
        await asyncio.sleep(3600)
    if model.startswith("slow:"):
        await asyncio.sleep(int(model.split(":")[1]) / 1000)
    return None


def create_mock_app() -> Starlette:
    from tokens_forge.mock.apis import embeddings_endpoint, responses_endpoint

    state = MockState()

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        model, cid, headers = state.seen(body)
        if (failed := await refusal(model, body, headers)) is not None:
            return failed
        try:  # a body of a shape OpenAI refuses is a 400 there too, never a crash of the mock
            first = completion(body, model, cid, usage=model != "nousage")
        except (TypeError, AttributeError, KeyError, IndexError) as exc:
            return JSONResponse({"error": {"message": f"invalid request: {exc}", "type": "invalid_request_error",
                                           "param": None, "code": None}}, status_code=400, headers=headers)
        if not body.get("stream"):
            return Response(orjson.dumps(first), media_type="application/json", headers=headers)

        async def gen():
            async for chunk in chunks(body, model, cid):
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream", headers=headers)

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "mock", "object": "model", "owned_by": "mock"}]})

    async def stats(_: Request) -> Response:
        return JSONResponse({"hits": dict(state.hits)})

    async def last(request: Request) -> Response:
        return JSONResponse(state.last.get(request.path_params["model"]))

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/responses", responses_endpoint(state), methods=["POST"]),
                             Route("/v1/embeddings", embeddings_endpoint(state), methods=["POST"]),
                             Route("/v1/models", models), Route("/_stats", stats),
                             Route("/_last/{model:path}", last)])
