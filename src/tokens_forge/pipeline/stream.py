"""A stream's life after its first event: pass the upstream's events through as they arrive and
settle once, however the stream ends (done, cut by the upstream, stalled, client gone, run
cancelled, runaway)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import anyio
from fastapi.responses import StreamingResponse

from tokens_forge.guard import service as guard
from tokens_forge.guard.bounds import cost, estimate_tokens
from tokens_forge.pipeline import store
from tokens_forge.pipeline.store import AttemptEnd, ReceiptEnd
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.runs.flights import RunCancelled, bounded
from tokens_forge.upstream import client as upstream
from tokens_forge.upstream.sse import EventSplitter, StreamTally, error_event, process_event
from tokens_forge.upstream.transport import TRANSPORT_ERRORS

if TYPE_CHECKING:
    from tokens_forge.pipeline.chat import ChatStory, Sizing

log = logging.getLogger("tokens_forge.chat")


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
                await self.body_iterator.aclose()


class StreamRelay:
    """Pass the upstream's events through as they arrive; settle when the stream ends, however
    it ends (done, cut by the upstream, stalled, client gone, run cancelled)."""

    def __init__(self, story: ChatStory, route: RouteInfo, sizing: Sizing, res: guard.Reservation,
                 resp: upstream.UpstreamStream, chunks: Any, splitter: EventSplitter, first: list[bytes], latency_ms: int):
        self.story, self.route, self.sizing, self.res = story, route, sizing, res
        self.resp, self.chunks, self.splitter, self.first = resp, chunks, splitter, first
        self.latency_ms = latency_ms
        self.tally = StreamTally()
        self.outcome = "success"
        self.error: str | None = None

    async def events(self):
        story = self.story
        wants_usage = story.req.include_usage
        last_extend = asyncio.get_running_loop().time()
        try:
            if out := self._relay(self.first, wants_usage):
                yield out
            while not self.tally.done:
                if self.tally.content_chunks > self.sizing.output_bound:
                    # every content chunk carries at least one token: the upstream ignores max_tokens
                    self.outcome = "upstream_error"
                    self.error = (f"the upstream sent more than the {self.sizing.output_bound} output tokens "
                                  "max_tokens allows; the stream was cut")
                    yield error_event(self.error, "upstream_error")
                    return
                try:
                    chunk = await bounded(anext(self.chunks), story.flight, self.route.timeout_s)
                except StopAsyncIteration:
                    break
                except RunCancelled:
                    self.outcome, self.error = "cancelled", "the run was cancelled"
                    yield error_event(f"run {story.head.run_id} was cancelled", "run_cancelled",
                                      "invalid_request_error")
                    return
                except TimeoutError:
                    self.outcome, self.error = "timeout", f"the upstream stalled for {self.route.timeout_s:g}s"
                    yield error_event(self.error + "; the stream was cut", "upstream_timeout")
                    return
                except TRANSPORT_ERRORS as exc:
                    self.outcome, self.error = "upstream_error", f"the upstream stream broke: {type(exc).__name__}"
                    yield error_event(self.error, "upstream_error")
                    return
                if out := self._relay(self.splitter.feed(chunk), wants_usage):
                    yield out
                now = asyncio.get_running_loop().time()
                if now - last_extend > story.settings.hold_ttl_s / 3:
                    last_extend = now
                    try:  # the hold has hold_ttl_s of slack: a database blip must not cut a live stream
                        await store.extend_hold(story.pg, self.res.hold_id,
                                                story.settings.hold_ttl_s + self.route.timeout_s)
                    except Exception as exc:
                        log.warning("extending the hold of receipt %s failed: %s", story.head.id,
                                    type(exc).__name__)
            if not self.tally.done and self.outcome == "success":
                self.outcome, self.error = "upstream_error", "the upstream stream ended without [DONE]"
                yield error_event(self.error, "upstream_error")
        except (asyncio.CancelledError, GeneratorExit):
            self.outcome, self.error = "cancelled", "the client disconnected"
            raise
        except Exception as exc:  # a gateway-side failure mid-stream: end with an error event, never a cut
            log.exception("stream of receipt %s failed", story.head.id)
            self.outcome, self.error = "upstream_error", f"gateway error mid-stream: {type(exc).__name__}"
            yield error_event("the gateway failed mid-stream; the stream was cut", "gateway_error", "server_error")
        finally:
            with anyio.CancelScope(shield=True):
                await self._settle()

    def _relay(self, events: list[bytes], wants_usage: bool) -> bytes:
        """What the client gets of one upstream read: its events, tallied and redacted, in one
        write (a read that carries many events costs one send, not one each)."""
        outs = [out for ev in events if (out := process_event(ev, self.tally, client_wants_usage=wants_usage))]
        return upstream.redact(b"".join(outs), self.route) if outs else b""

    async def _settle(self) -> None:
        story = self.story
        if self.outcome == "success" and self.tally.done:
            # only the end of the body is left: read it so that the connection goes back to the pool
            with contextlib.suppress(*TRANSPORT_ERRORS, TimeoutError):
                async with asyncio.timeout(0.5):
                    async for _ in self.chunks:
                        pass
        try:
            await self.resp.aclose()
        except TRANSPORT_ERRORS:
            pass
        pt_est = estimate_tokens(story.req.prompt_chars)
        if self.tally.usage is not None and self.outcome == "success":
            (pt, ct), estimated = self.tally.usage, False
        elif self.tally.usage is not None:
            pt, ct, estimated = self.tally.usage[0], self.tally.content_chunks, True
        else:
            pt, ct, estimated = pt_est, self.tally.content_chunks, True
        if self.outcome == "success":
            reason, final = "usage × price", ReceiptEnd("succeeded", usage_estimated=estimated)
        elif self.outcome == "cancelled":
            reason = "cancelled: input and the output tokens delivered"
            code = "run_cancelled" if story.flight and story.flight.cancelled else "client_disconnected"
            final = ReceiptEnd("cancelled", reason=self.error, error_code=code, usage_estimated=estimated)
        else:
            reason = "stream cut: input and the output tokens delivered"
            final = ReceiptEnd("failed", reason=self.error, error_code=self.outcome, usage_estimated=estimated)
        if estimated and self.outcome == "success":
            reason = "usage estimated (upstream sent none) × price"
        end = AttemptEnd(self.outcome, cost(pt, ct, self.route.price), "settle", reason, pt, ct, 200,
                         self.latency_ms, self.error)
        try:
            await story._finish(self.route, self.res, end, final)
        except Exception:  # the hold stays open; the sweeper releases it
            log.exception("settling stream of receipt %s failed", story.head.id)
        finally:
            if story.flight is not None:
                story.state.flights.unregister(story.flight)
