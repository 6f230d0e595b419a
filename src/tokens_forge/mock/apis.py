"""The mock upstream's Responses API and embeddings, for routes whose `apis` include them.

/v1/responses answers natively: what a chat-only route could not take (previous_response_id,
conversation, store, …) is accepted and ignored, the rest is answered as the chat mock would,
in the Responses shapes (and events, streamed). /v1/embeddings answers a deterministic vector
per input (8 dimensions unless `dimensions` says), as floats or base64 float32 (the OpenAI SDK
asks for base64), with usage prompt_tokens = ceil(characters / 4) per input (a token array
counts its length)."""

from __future__ import annotations

import base64
import math
import struct
import time
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tokens_forge.errors import InvalidRequest
from tokens_forge.mock.upstream import chunks, completion, refusal
from tokens_forge.responses.events import ChatToResponsesStream, sse
from tokens_forge.responses.response import from_chat
from tokens_forge.responses.translate import ECHOED, PASSED, TRANSLATED, to_chat

if TYPE_CHECKING:
    from tokens_forge.mock.upstream import MockState


def _as_chat(body: dict) -> dict:
    """What the chat mock would be asked: only the fields a chat-only route takes."""
    ignored = ("include", "truncation", "background")
    kept = {k: v for k, v in body.items() if k in PASSED or k in TRANSLATED or (k in ECHOED and k not in ignored)}
    kept["tools"] = [t for t in kept.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    if isinstance(kept.get("input"), list):
        kept["input"] = [i for i in kept["input"] if not (isinstance(i, dict) and i.get("type") == "reasoning")]
    return to_chat(kept)


def responses_endpoint(state: MockState):
    async def responses(request: Request) -> Response:
        body = orjson.loads(await request.body())
        model, cid, headers = state.seen(body)
        if (failed := await refusal(model, body, headers)) is not None:
            return failed
        try:
            chat = _as_chat(body)
        except InvalidRequest as exc:
            return JSONResponse(exc.body(), status_code=400, headers=headers)
        resp_id = "resp_mock_" + cid.rsplit("-", 1)[-1]
        if not body.get("stream"):
            out = from_chat(completion(chat, model, cid, usage=model != "nousage"), body, resp_id=resp_id)
            out["store"] = bool(body.get("store", True))
            return Response(orjson.dumps(out), media_type="application/json", headers=headers)
        translator = ChatToResponsesStream(body, resp_id=resp_id, created_at=int(time.time()), model=model)

        async def gen():
            for event in translator.start():
                yield sse(event)
            async for chunk in chunks(chat, model, cid):
                for event in translator.feed(chunk):
                    yield sse(event)
            for event in translator.finish():
                yield sse(event)

        return StreamingResponse(gen(), media_type="text/event-stream", headers=headers)

    return responses


def _tokens(item: object) -> int:
    if isinstance(item, str):
        return max(1, math.ceil(len(item) / 4))
    return len(item) if isinstance(item, list) else 1


def _vector(seed: int, dims: int) -> list[float]:
    return [round(math.sin(seed + i), 6) for i in range(dims)]


def embeddings_endpoint(state: MockState):
    async def embeddings(request: Request) -> Response:
        body = orjson.loads(await request.body())
        model, _, headers = state.seen(body)
        if (failed := await refusal(model, body, headers)) is not None:
            return failed
        inp = body.get("input")
        items = [inp] if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)) else inp
        if not isinstance(items, list) or not items:
            return JSONResponse({"error": {"message": "input is required", "type": "invalid_request_error",
                                           "param": "input", "code": None}}, status_code=400, headers=headers)
        dims = body.get("dimensions") or 8
        data = []
        for i, item in enumerate(items):
            vec = _vector(len(str(item)) + i, dims)
            emb: list[float] | str = vec
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(_tokens(item) for item in items)
        out = {"object": "list", "data": data, "model": model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        if model == "nousage":
            del out["usage"]
        return Response(orjson.dumps(out), media_type="application/json", headers=headers)

    return embeddings
