"""Talking to an OpenAI-compatible upstream: one pooled client (upstream.transport), per-route
timeouts, and every way an upstream can fail mapped to one exception, in one place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tokens_forge.guard.money import TextCount
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.upstream.transport import TRANSPORT_ERRORS, UpstreamClient, read_limited

RETRY_AFTER_MAX_S = 10.0
PASSTHROUGH_STATUSES = {400, 404, 413, 422}  # the client's request is wrong: tell the client, don't fall back
ERROR_BODY_LIMIT = 64 * 1024
_FAILURES: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, TimeoutError)  # the transport failed, or the route timed out


class UpstreamFailure(Exception):
    """outcome: 'timeout' | 'connect_error' | 'upstream_error'."""

    def __init__(self, outcome: str, message: str, *, status: int | None = None,
                 retry_after: float | None = None, body: bytes | None = None,
                 retry_after_header: str | None = None, request_id: str | None = None):
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.status = status
        self.retry_after = retry_after                # seconds, bounded: the gateway's own backoff
        self.retry_after_header = retry_after_header  # as the upstream sent it: passed on to the client
        self.request_id = request_id                  # the upstream's x-request-id
        self.body = body

    @property
    def retry_class(self) -> str | None:
        """The retry_policy.retry_on name of this failure, if any."""
        if self.outcome in ("timeout", "connect_error"):
            return self.outcome
        if self.status == 429:
            return "http_429"
        if self.status is not None and self.status >= 500:
            return "http_5xx"
        return None

    @property
    def is_client_error(self) -> bool:
        return self.status in PASSTHROUGH_STATUSES and self.body is not None


@dataclass
class Completion:
    status: int
    body: bytes
    data: dict[str, Any]
    latency_ms: int
    request_id: str | None = None  # the upstream's x-request-id


def request_id_of(resp: aiohttp.ClientResponse) -> str | None:
    """The upstream's own id of the request (OpenAI's `x-request-id`), for the client to quote to
    the provider; bounded and printable, or nothing."""
    v = resp.headers.get("x-request-id")
    return v if v and len(v) <= 200 and v.isprintable() else None


def upstream_body(body: dict[str, Any], route: RouteInfo, *, output_cap: int | None, stream: bool) -> bytes:
    """The body forwarded to the route: the client's, with the route's model, the output cap the
    gateway set (when the client sent none: in the route's `output_cap_param`, since reasoning
    models refuse `max_tokens` and older servers know only it) and, for streams, usage asked for.
    A cap the client sent passes as sent."""
    out = dict(body)
    out["model"] = route.upstream_model
    if output_cap is not None:
        out[route.output_cap_param] = output_cap
    if stream:
        # Always ask for usage so that the charge is exact; the pipeline drops the usage
        # chunk again when the client did not ask for it.
        opts = dict(out.get("stream_options") or {})
        opts["include_usage"] = True
        out["stream_options"] = opts
    return orjson.dumps(out)


def _headers(route: RouteInfo) -> dict[str, str]:
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if route.api_key:
        h["authorization"] = f"Bearer {route.api_key}"
    return h


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    v = resp.headers.get("retry-after")
    if not v:
        return None
    try:
        return min(max(float(v), 0.0), RETRY_AFTER_MAX_S)
    except ValueError:
        return None


def redact(data: bytes, route: RouteInfo) -> bytes:
    """Upstreams quote the key back ("Incorrect API key provided: sk-…"): never pass it on."""
    if route.api_key and len(route.api_key) >= 8:
        return data.replace(route.api_key.encode(), b"[redacted]")
    return data


def _status_failure(resp: aiohttp.ClientResponse, body: bytes, route: RouteInfo) -> UpstreamFailure:
    header = resp.headers.get("retry-after")
    return UpstreamFailure("upstream_error", f"upstream answered HTTP {resp.status}", status=resp.status,
                           retry_after=_retry_after(resp), body=redact(body[:ERROR_BODY_LIMIT], route),
                           retry_after_header=header if header and len(header) <= 64 and header.isprintable()
                           else None, request_id=request_id_of(resp))


def map_transport_error(exc: BaseException, route: RouteInfo) -> UpstreamFailure:
    # aiohttp's connect timeout is also a TimeoutError: it is a connect failure, not a slow answer.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamFailure("connect_error", f"connecting to route {route.id} timed out")
    if isinstance(exc, TimeoutError):
        return UpstreamFailure("timeout", f"route {route.id} did not answer within {route.timeout_s:g}s")
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return UpstreamFailure("connect_error", f"could not connect to route {route.id}")
    return UpstreamFailure("upstream_error", f"route {route.id} failed: {type(exc).__name__}")


# The upstream APIs a route may speak: the path under its base_url, and the list field without
# which an answer is not one (an HTML error page with status 200 must not settle as a success).
PATHS = {"chat_completions": "/chat/completions", "responses": "/responses", "embeddings": "/embeddings"}
ANSWER_LISTS = {"chat_completions": "choices", "responses": "output", "embeddings": "data"}


def url(route: RouteInfo, api: str = "chat_completions") -> str:
    return route.base_url + PATHS[api]


async def complete(http: UpstreamClient, route: RouteInfo, payload: bytes,
                   api: str = "chat_completions") -> Completion:
    """A non-streaming answer, bounded as a whole by the route's timeout."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(route.timeout_s):
            resp = await http.post(url(route, api), payload, _headers(route))
            async with resp:
                body = await resp.read()
    except _FAILURES as exc:
        raise map_transport_error(exc, route) from exc
    latency = int((loop.time() - started) * 1000)
    # What the client gets is built from these bytes only (no upstream header is passed on), so
    # redacting here covers every non-streaming answer: 200s, errors and idempotent replays.
    body = redact(body, route)
    if resp.status != 200:
        raise _status_failure(resp, body, route)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFailure("upstream_error", f"route {route.id} answered with a body that is not JSON",
                              status=resp.status) from exc
    if not isinstance(data, dict) or not isinstance(data.get(ANSWER_LISTS[api]), list):
        raise UpstreamFailure("upstream_error", f"route {route.id} answered without {ANSWER_LISTS[api]}",
                              status=resp.status)
    return Completion(resp.status, body, data, latency, request_id_of(resp))


class UpstreamStream:
    """An open event stream; the caller reads `chunks()` and must `aclose()` it."""

    def __init__(self, resp: aiohttp.ClientResponse):
        self._resp = resp
        self.request_id = request_id_of(resp)

    def chunks(self) -> AsyncIterator[bytes]:
        return self._resp.content.iter_any()

    async def aclose(self) -> None:
        # A body read to its end gives the connection back to the pool; anything else closes it.
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()


async def open_stream(http: UpstreamClient, route: RouteInfo, payload: bytes,
                      api: str = "chat_completions") -> UpstreamStream:
    """Open a streaming answer; the caller owns the stream and must close it."""
    try:
        async with asyncio.timeout(route.timeout_s):
            resp = await http.post(url(route, api), payload, _headers(route))
    except _FAILURES as exc:
        raise map_transport_error(exc, route) from exc
    if resp.status != 200:
        try:
            async with asyncio.timeout(route.timeout_s):
                body = await read_limited(resp, ERROR_BODY_LIMIT)
        except _FAILURES:
            body = b""
        finally:
            resp.close()
        raise _status_failure(resp, body, route)
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "text/event-stream":
        resp.close()
        raise UpstreamFailure("upstream_error", f"route {route.id} answered a stream request with "
                              f"{ctype or 'no content type'}, not an event stream", status=resp.status)
    return UpstreamStream(resp)


def usage_of(data: dict[str, Any]) -> tuple[int, int] | None:
    u = data.get("usage")
    if not isinstance(u, dict):
        return None
    pt, ct = u.get("prompt_tokens"), u.get("completion_tokens")
    if (isinstance(pt, int) and isinstance(ct, int) and not isinstance(pt, bool) and not isinstance(ct, bool)
            and pt >= 0 and ct >= 0):
        return pt, ct
    return None


def completion_text(data: dict[str, Any]) -> TextCount:
    """The output text of a non-streaming answer (content, refusal, reasoning, tool calls)."""
    out = TextCount()
    for choice in data.get("choices") or []:
        msg = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(msg, dict):
            continue
        for name in ("content", "refusal", "reasoning_content", "reasoning"):
            if isinstance(msg.get(name), str):
                out.add(msg[name])
        for call in msg.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                for part in (function.get("name"), function.get("arguments")):
                    if isinstance(part, str):
                        out.add(part)
    return out
