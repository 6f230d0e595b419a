"""A stream's life after its first event: pass the upstream's events through as they arrive and
settle once, however the stream ends (done, cut by the upstream, stalled, client gone, run
cancelled, runaway). The relay knows nothing of the story that opened it: it is given the
attempt's terms and a `settle` callback, and decides the charge with guard.money."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.responses import StreamingResponse

from tokens_forge.guard import money
from tokens_forge.ledger.attempts import AttemptEnd, ReceiptEnd
from tokens_forge.pipeline.surface import EventCodec
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.runs.flights import Flight, RunCancelled, bounded
from tokens_forge.upstream import client as upstream
from tokens_forge.upstream.sse import EventSplitter, close_body
from tokens_forge.upstream.transport import TRANSPORT_ERRORS

log = logging.getLogger("tokens_forge.chat")

Settle = Callable[[AttemptEnd, ReceiptEnd], Awaitable[None]]


class RelayResponse(StreamingResponse):
    """A stream that notices a client going away at once, even while the upstream is silent
    (plain StreamingResponse only notices when a send fails), and always closes its body
    iterator so that the relay settles."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:
                        pass  # the client went away mid-send
                    tg.cancel_scope.cancel()

                tg.start_soon(stream)
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await close_body(self.body_iterator)


@dataclass(frozen=True)
class StreamAttempt:
    """What the relay needs of the attempt that opened the stream."""
    receipt_id: str
    run_id: str | None
    route: RouteInfo
    sizing: money.Sizing
    hold_id: int
    latency_ms: int
    codec: EventCodec             # the surface's view of the events (pipeline.surface)
    flight: Flight | None
    settle: Settle


class StreamRelay:
    def __init__(self, attempt: StreamAttempt, resp: upstream.UpstreamStream, chunks: AsyncIterator[bytes],
                 splitter: EventSplitter, first: list[bytes]):
        self.a = attempt
        self.resp, self.chunks, self.splitter, self.first = resp, chunks, splitter, first
        self.codec = attempt.codec
        self.tally = attempt.codec.tally
        self.outcome = "success"
        self.error: str | None = None

    async def events(self) -> AsyncIterator[bytes]:
        a = self.a
        try:
            if out := self.codec.opening() + self._relay(self.first):
                yield out
            while not self.tally.done:
                if self.tally.content_chunks > a.sizing.output_bound:
                    # every content chunk carries at least one token: the upstream ignores the cap
                    self.outcome = "upstream_error"
                    self.error = (f"the upstream sent more than the {a.sizing.output_bound} output tokens "
                                  "its cap allows; the stream was cut")
                    yield self.codec.error(self.error, "upstream_error")
                    return
                try:
                    chunk = await bounded(anext(self.chunks), a.flight, a.route.timeout_s)
                except StopAsyncIteration:
                    break
                except RunCancelled:
                    self.outcome, self.error = "cancelled", "the run was cancelled"
                    yield self.codec.error(f"run {a.run_id} was cancelled", "run_cancelled", "invalid_request_error")
                    return
                except TimeoutError:
                    self.outcome, self.error = "timeout", f"the upstream stalled for {a.route.timeout_s:g}s"
                    yield self.codec.error(self.error + "; the stream was cut", "upstream_timeout")
                    return
                except TRANSPORT_ERRORS as exc:
                    self.outcome, self.error = "upstream_error", f"the upstream stream broke: {type(exc).__name__}"
                    yield self.codec.error(self.error, "upstream_error")
                    return
                if out := self._relay(self.splitter.feed(chunk)):
                    yield out
            if self.tally.error and self.outcome == "success":
                # the client already has the upstream's error event; its text may quote the upstream key
                self.outcome, self.error = "upstream_error", "the upstream sent an error event mid-stream"
            elif not self.tally.done and self.outcome == "success":
                self.outcome, self.error = "upstream_error", "the upstream stream ended before it was complete"
                yield self.codec.error(self.error, "upstream_error")
        except (asyncio.CancelledError, GeneratorExit):
            self.outcome, self.error = "cancelled", "the client disconnected"
            raise
        except Exception as exc:  # a gateway-side failure mid-stream: end with an error event, never a cut
            log.exception("stream of receipt %s failed", a.receipt_id)
            self.outcome, self.error = "upstream_error", f"gateway error mid-stream: {type(exc).__name__}"
            yield self.codec.error("the gateway failed mid-stream; the stream was cut", "gateway_error", "server_error")
        finally:
            with anyio.CancelScope(shield=True):
                await self._settle()

    def _relay(self, events: list[bytes]) -> bytes:
        """What the client gets of one upstream read: its events, tallied and redacted, in one
        write (a read that carries many events costs one send, not one each)."""
        outs = [out for ev in events if (out := self.codec.relay(ev))]
        return upstream.redact(b"".join(outs), self.a.route) if outs else b""

    def charge(self) -> tuple[money.Charge, ReceiptEnd]:
        """How the stream ended decides the rule: a clean end is charged by usage; a cancel, or a
        cut after content reached the client, by what was delivered; a cut before any content by
        the route's failure policy."""
        a, tally = self.a, self.tally
        terms = a.route.terms
        if self.outcome == "success":
            c = money.usage_charge(a.sizing, terms, tally.usage, tally.delivered)
            return c, ReceiptEnd("succeeded", usage_estimated=c.estimated)
        prompt = tally.usage[0] if tally.usage is not None else None
        if self.outcome == "cancelled":
            code = "run_cancelled" if a.flight is not None and a.flight.cancelled else "client_disconnected"
            c = money.delivered_charge(a.sizing, terms, tally.delivered, why="cancelled", prompt_tokens=prompt)
            return c, ReceiptEnd("cancelled", reason=self.error, error_code=code, usage_estimated=True)
        if tally.content_chunks:
            c = money.delivered_charge(a.sizing, terms, tally.delivered, why="stream cut", prompt_tokens=prompt)
        else:
            c = money.failure_charge(a.sizing, terms)
        return c, ReceiptEnd("failed", reason=self.error, error_code=self.outcome, usage_estimated=c.estimated)

    async def _settle(self) -> None:
        if self.outcome == "success" and self.tally.done:
            # only the end of the body is left: read it so that the connection goes back to the pool
            with contextlib.suppress(*TRANSPORT_ERRORS, TimeoutError):
                async with asyncio.timeout(0.5):
                    async for _ in self.chunks:
                        pass
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await self.resp.aclose()
        c, final = self.charge()
        end = AttemptEnd(self.outcome, c, 200, self.a.latency_ms, self.error)
        try:
            await self.a.settle(end, final)
        except Exception:  # the writer kept retrying until it gave up: the sweeper releases the hold
            log.exception("settling stream of receipt %s failed", self.a.receipt_id)
