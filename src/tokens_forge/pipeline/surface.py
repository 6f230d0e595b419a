"""One request story (pipeline.chat), several client surfaces: chat completions, the Responses
API (responses.surface) and embeddings (embeddings.surface). A surface says what the story needs
of its request, and what differs between the endpoints; the story does the rest (routes, the
reservation, retries and fallback, the ledger, the receipt, runs and cancel) the same way for all.

A surface gives
- what the guard bounds: `shape` (guard.money.PromptShape), `client_cap`, `n`, `output`
  (False: no output tokens, embeddings), `file_part`, and `model`, `stream`, `endpoint` (the
  receipt's);
- `check(route)`: refuse (a ForgeError) a request this route cannot take, before any reservation;
- `payload(route, send_cap)`: the upstream API to call and the body, with the output cap the
  gateway set (None: the client sent one) in the field that API and route expect;
- `answer(route, completion)`: the client's body, the upstream's usage and the delivered text;
- `codec(route)`: for streams, what the client gets of each upstream event and the tally of what
  was delivered, and how a failed or cancelled stream ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tokens_forge.guard.money import PromptShape, TextCount
from tokens_forge.pipeline.request import ChatRequest
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.upstream import client as upstream
from tokens_forge.upstream.client import Completion
from tokens_forge.upstream.sse import StreamTally, error_event, process_event


@dataclass(frozen=True)
class Answer:
    body: bytes
    usage: tuple[int, int] | None  # (prompt, completion) tokens the upstream reported
    delivered: TextCount = field(default_factory=TextCount)  # the output text, for an estimate without usage


class EventCodec(Protocol):
    tally: StreamTally

    def opening(self) -> bytes: ...

    def relay(self, event: bytes) -> bytes | None: ...

    def error(self, message: str, code: str, err_type: str = "upstream_error") -> bytes: ...


class Surface(Protocol):
    endpoint: str
    model: str
    stream: bool
    client_cap: int | None
    n: int
    shape: PromptShape
    output: bool
    file_part: str | None  # where the first file or audio part is, for the refusal of a route without a file bound

    def check(self, route: RouteInfo) -> None: ...

    def payload(self, route: RouteInfo, send_cap: int | None) -> tuple[str, bytes]: ...

    def answer(self, route: RouteInfo, comp: Completion) -> Answer: ...

    def codec(self, route: RouteInfo) -> EventCodec: ...


class ChatCodec:
    """Chat completion events pass byte for byte (but for a usage chunk the client did not ask for)."""

    def __init__(self, include_usage: bool):
        self.tally = StreamTally()
        self.include_usage = include_usage

    def opening(self) -> bytes:
        return b""

    def relay(self, event: bytes) -> bytes | None:
        return process_event(event, self.tally, client_wants_usage=self.include_usage)

    def error(self, message: str, code: str, err_type: str = "upstream_error") -> bytes:
        return error_event(message, code, err_type)


class ChatSurface:
    endpoint = "chat_completions"
    output = True

    def __init__(self, req: ChatRequest):
        self.req = req
        self.model, self.stream, self.client_cap, self.n, self.shape, self.file_part = (
            req.model, req.stream, req.client_cap, req.n, req.shape, req.file_part)

    def check(self, route: RouteInfo) -> None:
        """Every route that serves chat completions takes any valid body."""

    def payload(self, route: RouteInfo, send_cap: int | None) -> tuple[str, bytes]:
        return "chat_completions", upstream.upstream_body(self.req.body, route, output_cap=send_cap,
                                                          stream=self.req.stream)

    def answer(self, route: RouteInfo, comp: Completion) -> Answer:
        return Answer(comp.body, upstream.usage_of(comp.data), upstream.completion_text(comp.data))

    def codec(self, route: RouteInfo) -> ChatCodec:
        return ChatCodec(self.req.include_usage)
