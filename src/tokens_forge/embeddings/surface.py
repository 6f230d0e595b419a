"""POST /v1/embeddings as a surface of the one request story (pipeline.surface): the body passes
to {base_url}/embeddings with the route's model, the answer passes back byte for byte. There is
no output: the reservation bounds the input tokens only (guard.money with `output=False`), and
the charge is the upstream's `usage.prompt_tokens` at the route's `input_per_mtok`."""

from __future__ import annotations

import orjson

from tokens_forge.embeddings.request import EmbeddingsRequest, usage_of
from tokens_forge.pipeline.surface import Answer, EventCodec
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.upstream.client import Completion


class EmbeddingsSurface:
    endpoint = "embeddings"
    output = False
    stream = False
    client_cap: int | None = None
    n = 1
    file_part: str | None = None

    def __init__(self, req: EmbeddingsRequest):
        self.req = req
        self.model, self.shape = req.model, req.shape

    def check(self, route: RouteInfo) -> None:
        """Every route that speaks embeddings takes any valid body."""

    def payload(self, route: RouteInfo, send_cap: int | None) -> tuple[str, bytes]:
        return "embeddings", orjson.dumps({**self.req.body, "model": route.upstream_model})

    def answer(self, route: RouteInfo, comp: Completion) -> Answer:
        pt = usage_of(comp.data)
        return Answer(comp.body, (pt, 0) if pt is not None else None)

    def codec(self, route: RouteInfo) -> EventCodec:
        raise AssertionError("embeddings are never streamed")
