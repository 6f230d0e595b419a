"""POST /v1/responses as a surface of the one request story (pipeline.surface): natively to a
route whose `apis` include `responses` ({base_url}/responses: the body as sent but for the model,
and a cap the gateway sets as `max_output_tokens`); translated onto chat completions otherwise
(`translate`; back with `response` and, streamed, `streams`)."""

from __future__ import annotations

import time

import orjson

from tokens_forge.pipeline.surface import Answer
from tokens_forge.responses.request import ResponsesRequest
from tokens_forge.responses.response import from_chat, response_id
from tokens_forge.responses.streams import NativeStream, TranslatedStream, response_text, response_usage
from tokens_forge.responses.translate import to_chat
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.upstream.client import Completion, completion_text, usage_of


class ResponsesSurface:
    endpoint = "responses"
    output = True
    n = 1

    def __init__(self, req: ResponsesRequest, receipt_id: str):
        self.req = req
        self.model, self.stream, self.client_cap, self.shape = req.model, req.stream, req.client_cap, req.shape
        self.file_part = req.file_part
        self.resp_id = response_id(receipt_id)

    @staticmethod
    def native(route: RouteInfo) -> bool:
        return route.speaks("responses")

    def check(self, route: RouteInfo) -> None:
        """What a chat-only route cannot be asked is a 400 naming the field, before any reservation."""
        if not self.native(route):
            to_chat(self.req.body, cap_param=route.output_cap_param)

    def payload(self, route: RouteInfo, send_cap: int | None) -> tuple[str, bytes]:
        if self.native(route):
            body = {**self.req.body, "model": route.upstream_model}
            if send_cap is not None:
                body["max_output_tokens"] = send_cap
            return "responses", orjson.dumps(body)
        chat = to_chat(self.req.body, cap_param=route.output_cap_param)
        chat["model"] = route.upstream_model
        if send_cap is not None:
            chat[route.output_cap_param] = send_cap
        return "chat_completions", orjson.dumps(chat)

    def answer(self, route: RouteInfo, comp: Completion) -> Answer:
        if self.native(route):
            return Answer(comp.body, response_usage(comp.data), response_text(comp.data))
        out = from_chat(comp.data, self.req.body, resp_id=self.resp_id)
        return Answer(orjson.dumps(out), usage_of(comp.data), completion_text(comp.data))

    def codec(self, route: RouteInfo) -> NativeStream | TranslatedStream:
        if self.native(route):
            return NativeStream()
        return TranslatedStream(self.req.body, resp_id=self.resp_id, created_at=int(time.time()),
                                model=self.req.model)
