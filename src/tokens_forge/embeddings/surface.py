"""POST /v1/embeddings as a surface of the one request story: the body passes to
{base_url}/embeddings with the route's model; the answer passes back byte for byte. There is no
output: the reservation bounds input tokens only, and the charge is the upstream's
`usage.prompt_tokens` at the route's `input_per_mtok`."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from tokens_forge.embeddings.request import EmbeddingsRequest, usage_of
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.upstream.client import Completion


@dataclass(frozen=True)
class Answer:
    body: bytes
    usage: tuple[int, int] | None  # (input, 0): embeddings have no output tokens
    delivered_chars: int


class EmbeddingsSurface:
    endpoint = "embeddings"

    def __init__(self, req: EmbeddingsRequest):
        self.req = req

    def check(self, route: RouteInfo) -> None:
        """Every route that serves the endpoint takes any valid body."""

    def payload(self, route: RouteInfo, gateway_cap: int | None = None) -> tuple[str, bytes]:
        return "embeddings", orjson.dumps({**self.req.body, "model": route.upstream_model})

    def answer(self, route: RouteInfo, comp: Completion) -> Answer:
        pt = usage_of(comp.data)
        return Answer(comp.body, (pt, 0) if pt is not None else None, 0)
