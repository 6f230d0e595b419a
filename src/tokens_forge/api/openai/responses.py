"""POST /v1/responses and POST /v1/embeddings: the same story as chat completions (the guard,
the reservation, the ledger, receipts, runs and cancel, idempotency, retries and fallback), each
through its own surface (pipeline.surface)."""

from fastapi import APIRouter, Request, Response

from tokens_forge.api.deps import ApiKeyDep
from tokens_forge.api.openai.chat import read_client_body, story_options
from tokens_forge.embeddings.request import parse_embeddings_request
from tokens_forge.embeddings.surface import EmbeddingsSurface
from tokens_forge.ids import new_id
from tokens_forge.pipeline.chat import handle_request
from tokens_forge.responses.request import parse_responses_request
from tokens_forge.responses.surface import ResponsesSurface

router = APIRouter(tags=["openai"])


@router.post("/v1/responses", response_model=None)
async def create_response(request: Request, key: ApiKeyDep) -> Response:
    """OpenAI's Responses API, streaming or not. Forwarded to routes whose `apis` include
    `responses`; translated onto chat completions for routes that speak only that (what cannot be
    translated is a 400 naming the field). The Response's id is `resp_` + its receipt's id."""
    state = request.app.state
    raw = await read_client_body(request, key, "responses")
    req = parse_responses_request(raw)
    receipt_id = new_id("rcpt")
    return await handle_request(state, key, ResponsesSurface(req, receipt_id), raw, receipt_id=receipt_id,
                                **story_options(request))


@router.post("/v1/embeddings", response_model=None)
async def create_embeddings(request: Request, key: ApiKeyDep) -> Response:
    """OpenAI-compatible embeddings on routes whose `apis` include `embeddings`: reserved and
    charged for input tokens at the route's `input_per_mtok`."""
    state = request.app.state
    raw = await read_client_body(request, key, "embeddings")
    return await handle_request(state, key, EmbeddingsSurface(parse_embeddings_request(raw)), raw,
                                **story_options(request))
