from fastapi import APIRouter, Request, Response

from tokens_forge.api.deps import ApiKeyDep
from tokens_forge.errors import InvalidRequest, RequestTooLarge
from tokens_forge.keys.auth import AuthedKey
from tokens_forge.pipeline.chat import handle_chat
from tokens_forge.pipeline.request import parse_chat_request
from tokens_forge.receipts import refusals
from tokens_forge.routing.selection import PREFERENCES

router = APIRouter(tags=["openai"])


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"the request body is larger than {limit} bytes")
    return bytes(body)


def _header(request: Request, name: str, max_len: int = 255) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > max_len or not value.isprintable():
        raise InvalidRequest(f"{name} header is malformed", param=name)
    return value


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request, key: ApiKeyDep) -> Response:
    """OpenAI-compatible chat completions, streaming or not, guarded, receipted and exact.
    (Served by api/openai/fastpath.py; this route documents it and answers the same.)"""
    return await complete_chat(request, key)


def story_options(request: Request) -> dict:
    """The request headers every surface of the story takes: route preference, run, idempotency key."""
    preference = (_header(request, "x-tf-route-preference") or "auto").lower()
    if preference not in PREFERENCES:
        raise InvalidRequest("X-TF-Route-Preference must be official, routed or auto", param="X-TF-Route-Preference")
    return {"preference": preference, "run_id": _header(request, "x-tf-run-id", 64),
            "idempotency_key": _header(request, "idempotency-key")}


async def read_client_body(request: Request, key: AuthedKey, endpoint: str = "chat_completions") -> bytes:
    """The body of a valid key's request; a body too large is its refusal, and gets a receipt."""
    state = request.app.state
    try:
        return await read_body(request, state.settings.max_body_bytes)
    except RequestTooLarge as err:
        await refusals.record_refusal(state.pg, key, err, model=None, run_id=None, endpoint=endpoint)
        raise


async def complete_chat(request: Request, key: AuthedKey) -> Response:
    state = request.app.state
    raw = await read_client_body(request, key)
    req = parse_chat_request(raw)
    return await handle_chat(state, key, req, raw, **story_options(request))
