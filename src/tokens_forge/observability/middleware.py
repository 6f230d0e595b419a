"""The outermost ASGI layer: every HTTP request is measured, logged and (with tracing on) a span,
whichever router or fast path answers it, and a stream only once it has ended and settled."""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from tokens_forge.observability.logs import log_request
from tokens_forge.observability.request import _CURRENT, _EXACT, LLM_ENDPOINTS, RequestObs, endpoint_of
from tokens_forge.observability.tracing import GEN_AI_SYSTEM

if TYPE_CHECKING:
    from tokens_forge.observability import Observability


class ObservedRequests:
    def __init__(self, app: Any, obs: Observability):
        self.app = app
        self.obs = obs
        self.metrics = obs.metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_of(scope["path"])
        rec = RequestObs(endpoint)
        context_token = _CURRENT.set(rec)
        status = 500  # what the server sends when nothing was answered

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        tracing = self.obs.tracing
        span = span_token = None
        if tracing is not None:
            span, span_token = tracing.start_request(
                LLM_ENDPOINTS.get(endpoint, scope["method"]), scope["headers"],
                {"http.request.method": scope["method"], "tf.endpoint": endpoint})
            rec.span = span
        self.metrics.request_started(endpoint)
        started = perf_counter()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = perf_counter() - started
            _CURRENT.reset(context_token)
            self.metrics.request_done(endpoint, status, seconds, rec.error_code)
            path = _path_of(scope, endpoint)
            trace_id = None
            if tracing is not None:
                trace_id = tracing.trace_id(span)
                tracing.end_request(span, span_token, _span_attributes(rec, status, path),
                                    name=_span_name(rec, scope["method"], path), failed=status >= 500)
            log_request(rec, method=scope["method"], path=path, status=status, seconds=seconds, trace_id=trace_id)


def _path_of(scope: dict, endpoint: str) -> str:
    """The route's template (`/v1/receipts/{receipt_id}`), never a raw path a client made up."""
    template = getattr(scope.get("route"), "path", None)
    if template:
        return template
    return scope["path"] if scope["path"] in _EXACT else "unmatched"


def _span_name(rec: RequestObs, method: str, path: str) -> str:
    operation = LLM_ENDPOINTS.get(rec.endpoint)
    if operation is None:
        return f"{method} {path}"
    return f"{operation} {rec.model}" if rec.model else operation


def _span_attributes(rec: RequestObs, status: int, path: str) -> dict:
    attrs: dict = {"http.response.status_code": status, "http.route": path}
    operation = LLM_ENDPOINTS.get(rec.endpoint)
    if operation is not None:
        attrs["gen_ai.operation.name"] = operation
        attrs["gen_ai.system"] = GEN_AI_SYSTEM
        if rec.model:
            attrs["gen_ai.request.model"] = rec.model
        if rec.input_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = rec.input_tokens
        if rec.output_tokens is not None:
            attrs["gen_ai.usage.output_tokens"] = rec.output_tokens
    if rec.error_code is not None:
        attrs["error.type"] = rec.error_code
    for name, value in rec.fields().items():
        if name not in ("model", "input_tokens", "output_tokens", "error_code"):
            attrs["tf." + name] = value
    return attrs
