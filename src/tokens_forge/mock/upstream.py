"""The built-in OpenAI-compatible mock upstream: deterministic answers with a `usage` block,
non-streaming and SSE streaming, so that the demo and the tests need no network.

Behaviour by the upstream model name:
  anything       a normal answer: `min(max_tokens or 16, 16)` words "w0 w1 …", one token each
  fail500/429    always that status (429 with Retry-After: 1)
  slow:<ms>      wait before answering          drip:<ms>  stream 200 words, one every <ms>
  garbage        200 with a body that is not JSON  hang     never answers
  nousage        a normal answer without `usage`   cut:<n>  stream n words, then drop the connection
prompt_tokens = ceil(characters of the message contents / 4)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def prompt_tokens(body: dict) -> int:
    chars = 0
    for m in body.get("messages") or []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            chars += len(c)
        elif isinstance(c, list):
            chars += sum(len(p.get("text", "")) for p in c if isinstance(p, dict))
    return max(1, math.ceil(chars / 4))


def create_mock_app() -> Starlette:
    hits: Counter[str] = Counter()

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        model = str(body.get("model", "mock"))
        hits[model] += 1
        if model == "fail500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        if model == "fail429":
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, status_code=429,
                                headers={"Retry-After": "1"})
        if model == "garbage":
            return Response("<html>not json", media_type="application/json")
        if model == "hang":
            await asyncio.sleep(3600)
        if model.startswith("slow:"):
            await asyncio.sleep(int(model.split(":")[1]) / 1000)
        n = min(body.get("max_tokens") or body.get("max_completion_tokens") or 16, 16)
        pt = prompt_tokens(body)
        cid = f"chatcmpl-mock-{hits[model]}"
        created = int(time.time())
        if not body.get("stream"):
            words = [f"w{i}" for i in range(n)]
            out = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words)},
                                "finish_reason": "length" if n == 16 else "stop"}]}
            if model != "nousage":
                out["usage"] = {"prompt_tokens": pt, "completion_tokens": n, "total_tokens": pt + n}
            return Response(orjson.dumps(out), media_type="application/json")
        drip = int(model.split(":")[1]) / 1000 if model.startswith("drip:") else 0.0
        cut = int(model.split(":")[1]) if model.startswith("cut:") else None
        if drip:
            n = 200
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}

        def event(obj: dict) -> bytes:
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        async def gen():
            yield event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]})
            for i in range(n):
                if cut is not None and i == cut:
                    raise ConnectionResetError("mock upstream cut the stream")
                if drip:
                    await asyncio.sleep(drip)
                yield event({**base, "choices": [{"index": 0, "delta": {"content": (" " if i else "") + f"w{i}"},
                                                  "finish_reason": None}]})
            yield event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if include_usage and model != "nousage":
                yield event({**base, "choices": [],
                             "usage": {"prompt_tokens": pt, "completion_tokens": n, "total_tokens": pt + n}})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "mock", "object": "model", "owned_by": "mock"}]})

    async def stats(_: Request) -> Response:
        return JSONResponse({"hits": dict(hits)})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models), Route("/_stats", stats)])
