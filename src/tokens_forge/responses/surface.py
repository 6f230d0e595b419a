"""POST /v1/responses as a surface of the one request story: what it sends a route, what the
client gets back, and what was delivered. Natively to a route whose `apis` include `responses`
({base_url}/responses, the body as sent but for the model and a cap the gateway sets); translated
onto chat completions otherwise (`translate`, then `response` / `streams` back)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from tokens_forge.responses.request import ResponsesRequest
from tokens_forge.responses.response import from_chat, response_id
from tokens_forge.responses.streams import NativeStream, TranslatedStream, response_chars, response_usage
from tokens_forge.responses.translate import to_chat
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.upstream.client import Completion, completion_chars, usage_of


@dataclass(frozen=True)
class Answer:
    body: bytes
    usage: tuple[int, int] | None  # (input, output) tokens the upstream reported
    delivered_chars: int           # characters of the output: the estimate's base without usage


class ResponsesSurface:
    endpoint = "responses"

    def __init__(self, req: ResponsesRequest, receipt_id: str):
        self.req = req
        self.resp_id = response_id(receipt_id)

    @staticmethod
    def native(route: RouteInfo) -> bool:
        return route.speaks("responses")

    def check(self, route: RouteInfo) -> None:
        """Refuse (400 naming the field) what a chat-only route cannot be asked, before any reservation."""
        if not self.native(route):
            to_chat(self.req.body, cap_param=route.output_cap_param)

    def payload(self, route: RouteInfo, gateway_cap: int | None) -> tuple[str, bytes]:
        """(the upstream API, the body) for one attempt; `gateway_cap` is the output cap the
        gateway set because the client sent no max_output_tokens."""
        if self.native(route):
            body = {**self.req.body, "model": route.upstream_model}
            if gateway_cap is not None:
                body["max_output_tokens"] = gateway_cap
            return "responses", orjson.dumps(body)
        chat = to_chat(self.req.body, cap_param=route.output_cap_param)
        chat["model"] = route.upstream_model
        if gateway_cap is not None:
            chat[route.output_cap_param] = gateway_cap
        return "chat_completions", orjson.dumps(chat)

    def answer(self, route: RouteInfo, comp: Completion) -> Answer:
        if self.native(route):
            return Answer(comp.body, response_usage(comp.data), response_chars(comp.data))
        out = from_chat(comp.data, self.req.body, resp_id=self.resp_id)
        return Answer(orjson.dumps(out), usage_of(comp.data), completion_chars(comp.data))

    def stream(self, route: RouteInfo) -> NativeStream | TranslatedStream:
        if self.native(route):
            return NativeStream()
        return TranslatedStream(self.req.body, resp_id=self.resp_id, created_at=int(time.time()),
                                model=self.req.model)

    def describe(self) -> dict[str, Any]:
        """What the guard bounds: the same fields as a chat request's."""
        return {"size_bytes": self.req.size_bytes, "messages": self.req.items, "images": self.req.images,
                "max_tokens": self.req.max_output_tokens, "n": 1, "prompt_chars": self.req.prompt_chars}
