"""One request's story: plan routes → size and reserve → forward → settle → receipt, with
retries and fallback (each attempt its own reservation on its own bucket). The routers call
`handle_request()` with their surface (pipeline.surface: chat completions, the Responses API,
embeddings): one story, several surfaces. Every money decision (the reservation, each charge) is made by
guard.money; the ledger (ledger.attempts, ledger/sql) checks the caps and posts it."""

from __future__ import annotations

import asyncio
import functools
import logging

import anyio
from fastapi.responses import Response, StreamingResponse

from tokens_forge.errors import (
    Conflict,
    ForgeError,
    InvalidRequest,
    SpendGuardError,
    Unauthorized,
    name_receipt,
    retry_header,
)
from tokens_forge.guard import money
from tokens_forge.guard import service as guard
from tokens_forge.guard.money import Sizing
from tokens_forge.ids import new_id
from tokens_forge.keys import rate_limits
from tokens_forge.keys.auth import AuthedKey
from tokens_forge.ledger import attempts as store
from tokens_forge.ledger.attempts import AttemptEnd, ReceiptEnd, ReceiptHead
from tokens_forge.observability.story import StorySeen
from tokens_forge.pipeline import idempotency
from tokens_forge.pipeline.give_up import give_up_error, upstream_headers
from tokens_forge.pipeline.request import ChatRequest
from tokens_forge.pipeline.stream import RelayResponse, StreamAttempt, StreamRelay
from tokens_forge.pipeline.surface import ChatSurface, Surface
from tokens_forge.receipts import refusals
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.routing.selection import plan_routes
from tokens_forge.runs.flights import Flight, RunCancelled, bounded
from tokens_forge.runs.service import check_run_accepts, mark_exhausted_if_spent
from tokens_forge.state import AppState
from tokens_forge.upstream import client as upstream
from tokens_forge.upstream.client import UpstreamFailure
from tokens_forge.upstream.sse import EventSplitter
from tokens_forge.upstream.transport import TRANSPORT_ERRORS

log = logging.getLogger("tokens_forge.chat")
MAX_BACKOFF_S = 10.0


class ChatStory:
    def __init__(self, state: AppState, key: AuthedKey, surface: Surface, *, run_id: str | None,
                 idempotency_key: str | None, flight: Flight | None, receipt_id: str | None = None):
        self.state = state
        self.settings = state.settings
        self.engine = state.engine
        self.pg = state.pg
        self.key = key
        self.surface = surface
        self.flight = flight
        self.head = ReceiptHead(id=receipt_id or new_id("rcpt"), account_id=key.account_id,
                                project_id=key.project_id, key_id=key.id, run_id=run_id, model=surface.model,
                                stream=surface.stream, idempotency_key=idempotency_key, endpoint=surface.endpoint)
        self.attempts = 0
        self.opened = False  # its receipt exists
        self.reserved = 0  # over all attempts, like the charge
        self.charged = 0
        self.headers: dict[str, str] = {"X-TF-Receipt-Id": self.head.id}
        self.seen = StorySeen(state.obs, self.head)  # metrics, spans and the log line of the story

    # -- the story -------------------------------------------------------------------------

    async def respond(self, routes: list[RouteInfo]) -> Response:
        failure: UpstreamFailure | None = None
        refusal: ForgeError | None = None
        policy = self.key.retry_policy
        max_attempts = max(1, int(policy.get("max_attempts", 1)))
        retry_on = set(policy.get("retry_on", []))
        for index, route in enumerate(routes):
            last_route = index == len(routes) - 1
            for t in range(max_attempts):
                sizing = await self._size(route)
                res = await self._reserve(route, sizing, reject=last_route and self.attempts == 0)
                if not res.ok:
                    refusal = self._refusal_error(res, sizing, route)
                    if res.refused_scope == "run":
                        await mark_exhausted_if_spent(self.engine, self.head.run_id, res.remaining, route.price)
                    break  # this route cannot be paid for: fall back, or give up
                try:
                    return await self._attempt(route, sizing, res)
                except UpstreamFailure as f:
                    failure = f
                    await self._finish_failed(route, sizing, res, f, final=None)
                    if f.is_client_error:
                        return await self._passthrough(route, f)
                    if f.retry_class not in retry_on or t == max_attempts - 1:
                        break
                    await self._backoff(t, f)
                except RunCancelled:
                    return await self._run_cancelled(route, sizing, res)
                except BaseException as exc:
                    await self._release_after_error(route, res, exc)
                    raise
        return await self._give_up(failure, refusal, routes[-1])

    async def _release_after_error(self, route: RouteInfo, res: guard.Reservation, exc: BaseException) -> None:
        """Something other than the upstream failed mid-attempt (a bug, the database, a cancelled
        task): release the hold now rather than leaving it to the sweeper."""
        end = AttemptEnd("upstream_error", money.gateway_error_charge(), error=f"gateway error: {type(exc).__name__}")
        with anyio.CancelScope(shield=True):
            try:
                await self.finish(route, res, end, ReceiptEnd("failed", reason=end.error, error_code="gateway_error"))
            except Exception:  # the sweeper releases the hold when it expires
                log.exception("could not release the hold of receipt %s", self.head.id)

    async def _give_up(self, failure: UpstreamFailure | None, refusal: ForgeError | None,
                       route: RouteInfo) -> Response:
        if failure is None:
            assert refusal is not None
            raise refusal  # never attempted: the receipt was written `rejected`
        err = give_up_error(failure, self.attempts, self.charged)
        if refusal is not None:
            err.message += f"; a fallback was refused: {refusal.message}"
        await store.close_receipt(self.pg, self.head.id,
                                  ReceiptEnd("failed", reason=err.message, error_code=err.code))
        err.receipt_id = self.head.id
        err.headers = {**err.headers, **self.headers, **upstream_headers(failure.request_id),
                       "X-TF-Charged-Micros": str(self.charged)}
        raise err

    # -- sizing and reservation ------------------------------------------------------------

    async def _size(self, route: RouteInfo) -> Sizing:
        s = self.surface
        remaining = None
        if money.needs_remaining(s.client_cap, output=s.output):
            remaining = await guard.remaining_budget(self.pg, key_id=self.key.id, bucket=route.bucket,
                                                     run_id=self.head.run_id)
        return money.size_attempt(s.shape, route.terms, client_cap=s.client_cap, n=s.n, remaining=remaining,
                                  default_cap=self.settings.default_max_tokens, output=s.output)

    async def _reserve(self, route: RouteInfo, sizing: Sizing, *, reject: bool) -> guard.Reservation:
        attempt_no = self.attempts + 1
        ttl = self.settings.hold_ttl_s + route.timeout_s
        res = await self.seen.reserved(route, sizing.amount, store.open_attempt(
            self.pg, self.head, route, attempt_no, sizing.amount, ttl, create=not self.opened, reject=reject,
            owner_id=self.state.worker.id, writer=self.state.ledger_writer,
            rate_tokens=rate_limits.token_cost(sizing)))
        self.opened = True
        if res.ok:
            self.attempts = attempt_no
            self.reserved += sizing.amount
        self.headers.update({"X-TF-Route-Kind": route.kind, "X-TF-Bucket": route.bucket,
                             "X-TF-Reserved-Micros": str(self.reserved)})
        if res.rate is not None:  # the first attempt of a key with rate limits
            self.headers.update(rate_limits.headers(res.rate))
            if res.refused_scope in rate_limits.SCOPES:  # nothing else is tried: its receipt is `rejected`
                raise rate_limits.refusal(res.refused_scope, res.rate, tokens=rate_limits.token_cost(sizing),
                                          receipt_id=self.head.id, answer_headers=self.headers)
        if not res.ok and reject:
            await store.explain_rejection(self.pg, self.head.id, self._refusal_error(res, sizing, route).message)
        return res

    def _refusal_error(self, res: guard.Reservation, sizing: Sizing, route: RouteInfo) -> ForgeError:
        need = (f"this request needs up to {sizing.amount} micros (at most {sizing.input_bound} input and "
                f"{sizing.output_bound} output tokens at route {route.id}'s price)")
        scope = res.refused_scope or "bucket"
        err: ForgeError
        if scope == "key_revoked":
            err = Unauthorized("invalid or revoked API key")
        elif scope == "bucket":
            err = SpendGuardError(
                f"insufficient balance: the {route.bucket} bucket has {res.remaining} micros available; {need}. "
                f"Top up the {route.bucket} bucket or lower max_tokens.", code="insufficient_balance")
        else:
            err = SpendGuardError(
                f"spend limit: {money.refusal_scope_name(scope)} has {res.remaining} micros left; {need}. "
                f"Lower max_tokens or raise the limit.", code="spend_limit_exceeded")
        err.receipt_id = self.head.id
        err.headers = dict(self.headers)
        return err

    # -- forwarding ------------------------------------------------------------------------

    async def _attempt(self, route: RouteInfo, sizing: Sizing, res: guard.Reservation) -> Response:
        api, payload = self.surface.payload(route, sizing.send_cap)
        if self.surface.stream:
            return await self._open_stream(route, sizing, res, api, payload)
        comp = await bounded(upstream.complete(self.state.http, route, payload, api), self.flight, None)
        answer = self.surface.answer(route, comp)
        charge = money.usage_charge(sizing, route.terms, answer.usage, answer.delivered)
        end = AttemptEnd("success", charge, comp.status, comp.latency_ms)
        await self.finish(route, res, end, ReceiptEnd("succeeded", usage_estimated=charge.estimated))
        self.headers.update({"X-TF-Charged-Micros": str(self.charged), **upstream_headers(comp.request_id)})
        return Response(answer.body, status_code=200, media_type="application/json", headers=self.headers)

    async def finish(self, route: RouteInfo, res: guard.Reservation, end: AttemptEnd,
                     final: ReceiptEnd | None) -> None:
        """Settle the attempt's hold with the charge decided (and close the receipt with `final`)."""
        assert res.hold_id is not None
        charged = await self.seen.settled(route, end, store.finish_attempt(
            self.pg, self.head, route, self.attempts, res.hold_id, end, final, writer=self.state.ledger_writer,
            patience_s=self.settings.settle_wait_s))
        # None: the database is away and the writer keeps the settle; it will book what was decided
        self.charged += end.charge.amount if charged is None else charged

    async def _finish_failed(self, route: RouteInfo, sizing: Sizing, res: guard.Reservation, f: UpstreamFailure,
                             final: ReceiptEnd | None) -> None:
        end = AttemptEnd(f.outcome, money.failure_charge(sizing, route.terms), f.status, error=f.message)
        await self.finish(route, res, end, final)

    async def _backoff(self, t: int, f: UpstreamFailure) -> None:
        base = int(self.key.retry_policy.get("backoff_ms", 0)) / 1000 * (2**t)
        await asyncio.sleep(min(max(base, f.retry_after or 0.0), MAX_BACKOFF_S))

    async def _passthrough(self, route: RouteInfo, f: UpstreamFailure) -> Response:
        """The upstream refused the request itself (400, 404, 422…): the client sees that answer."""
        await store.close_receipt(self.pg, self.head.id, ReceiptEnd(
            "failed", reason=f"the upstream refused the request: HTTP {f.status}", error_code="upstream_rejected"))
        self.headers.update({"X-TF-Charged-Micros": str(self.charged), **upstream_headers(f.request_id)})
        return Response(upstream.redact(f.body or b"", route), status_code=f.status or 400,
                        media_type="application/json", headers={**self.headers, **retry_header(f.status or 400)})

    async def _run_cancelled(self, route: RouteInfo, sizing: Sizing, res: guard.Reservation) -> Response:
        charge = money.delivered_charge(sizing, route.terms, money.TextCount(), why="run cancelled")
        end = AttemptEnd("cancelled", charge, error="the run was cancelled")
        await self.finish(route, res, end, ReceiptEnd("cancelled", reason="the run was cancelled",
                                                      error_code="run_cancelled", usage_estimated=True))
        err = Conflict(f"run {self.head.run_id} was cancelled; this request was aborted", code="run_cancelled")
        err.receipt_id = self.head.id
        err.headers = {**self.headers, "X-TF-Charged-Micros": str(self.charged)}
        raise err

    # -- streaming -------------------------------------------------------------------------

    async def _open_stream(self, route: RouteInfo, sizing: Sizing, res: guard.Reservation, api: str,
                           payload: bytes) -> Response:
        """Open the upstream stream and wait for its first event before answering: until a byte
        has reached the client, a failure may still retry or fall back."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        resp = await bounded(upstream.open_stream(self.state.http, route, payload, api), self.flight, None)
        chunks = resp.chunks()
        splitter = EventSplitter()
        first: list[bytes] = []
        try:
            async with asyncio.timeout(route.timeout_s):
                while not first:
                    first = splitter.feed(await bounded(anext(chunks), self.flight, None))
        except StopAsyncIteration as exc:
            await resp.aclose()
            raise UpstreamFailure("upstream_error", f"route {route.id} closed the stream before any event",
                                  status=200) from exc
        except (*TRANSPORT_ERRORS, TimeoutError) as exc:  # type: ignore[misc]  # mypy reads no starred tuple
            await resp.aclose()
            raise upstream.map_transport_error(exc, route) from exc
        except BaseException:
            await resp.aclose()
            raise
        assert res.hold_id is not None
        attempt = StreamAttempt(
            receipt_id=self.head.id, run_id=self.head.run_id, route=route, sizing=sizing, hold_id=res.hold_id,
            latency_ms=int((loop.time() - started) * 1000), codec=self.surface.codec(route), flight=self.flight,
            settle=functools.partial(self._settle_stream, route, res))
        relay = StreamRelay(attempt, resp, chunks, splitter, first)
        self.headers.update(upstream_headers(resp.request_id))
        return RelayResponse(relay.events(), status_code=200, media_type="text/event-stream",
                             headers={**self.headers, "Cache-Control": "no-cache"})

    async def _settle_stream(self, route: RouteInfo, res: guard.Reservation, end: AttemptEnd,
                             final: ReceiptEnd) -> None:
        try:
            await self.finish(route, res, end, final)
        finally:
            if self.flight is not None:
                self.state.flights.unregister(self.flight)


def routes_that_bound(routes: list[RouteInfo], surface: Surface) -> list[RouteInfo]:
    """The planned routes that can bound the request's media (a route without a file bound cannot
    reserve for a file part, so it does not serve the request)."""
    usable = [r for r in routes if money.refused_media(surface.shape, r.media) is None]
    if not usable:
        why = money.refused_media(surface.shape, routes[0].media)
        raise InvalidRequest(f"{surface.file_part}: {why}; send the document as text, or use a model whose route "
                             f"states a file bound", param=surface.file_part)
    return usable


def routes_that_take(routes: list[RouteInfo], surface: Surface) -> list[RouteInfo]:
    """The planned routes that can take the request as it is (a chat-only route cannot take what
    the Responses API translation refuses); none: the first route's refusal, a 400 naming the field."""
    able, refusal = [], None
    for route in routes:
        try:
            surface.check(route)
            able.append(route)
        except InvalidRequest as err:
            refusal = refusal or err
    if not able:
        assert refusal is not None
        raise refusal
    return able


async def handle_chat(state: AppState, key: AuthedKey, req: ChatRequest, raw: bytes, *, preference: str,
                      run_id: str | None, idempotency_key: str | None) -> Response:
    return await handle_request(state, key, ChatSurface(req), raw, preference=preference, run_id=run_id,
                                idempotency_key=idempotency_key)


async def handle_request(state: AppState, key: AuthedKey, surface: Surface, raw: bytes, *, preference: str,
                         run_id: str | None, idempotency_key: str | None, receipt_id: str | None = None) -> Response:
    """Plan the routes, claim the idempotency key, then tell the story. A run's in-flight request
    is registered so that a cancel reaches it in this process. A refusal before anything is
    reserved (the run, the model, the route kind) gets a `rejected` receipt."""
    try:
        if run_id is not None:
            await check_run_accepts(state.engine, run_id, key.account_id)
        routes = plan_routes(surface.model, await state.routes.for_model(surface.model), key, preference,
                             state.health.is_down, endpoint=surface.endpoint)
        routes = routes_that_take(routes_that_bound(routes, surface), surface)
    except ForgeError as err:
        if refusals.needs_receipt(err):
            await refusals.record_refusal(state.pg, key, err, model=surface.model, run_id=run_id,
                                          stream=surface.stream, endpoint=surface.endpoint)
        raise
    claim: idempotency.Claim | None = None
    if idempotency_key is not None:
        claimed = await idempotency.claim(state.engine, key_id=key.id, account_id=key.account_id,
                                        idempotency_key=idempotency_key,
                                        print_=idempotency.fingerprint(raw, preference, run_id, surface.endpoint),
                                        owner_id=state.worker.id, dead_after_s=state.settings.worker_dead_after_s)
        if isinstance(claimed, Response):
            return claimed
        claim = claimed
    flight = state.flights.register(run_id) if run_id else None
    story = ChatStory(state, key, surface, run_id=run_id, idempotency_key=idempotency_key, flight=flight,
                      receipt_id=receipt_id)
    streaming = False
    try:
        if claim is not None:
            await idempotency.attach_receipt(state.engine, claim, story.head.id)
        response = await story.respond(routes)
        streaming = isinstance(response, StreamingResponse)
        if claim is not None:
            if isinstance(response, StreamingResponse):
                return idempotency.tee_stream(state.engine, claim, response, state.jobs,
                                              state.settings.settle_retry_s)
            await idempotency.store(state.engine, claim, response.status_code, story.headers, bytes(response.body))
        return response
    except ForgeError as err:
        if claim is not None:
            await idempotency.store_error(state.engine, claim, err)
        raise
    except BaseException as exc:
        if claim is not None:
            await idempotency.abandon(state.engine, claim, charged=story.charged,
                                      receipt_id=story.head.id if story.opened else None)
        if story.opened and isinstance(exc, Exception):
            name_receipt(exc, story.head.id, story.headers)  # the answer for it names its receipt
        raise
    finally:
        if flight is not None and not streaming:
            state.flights.unregister(flight)
