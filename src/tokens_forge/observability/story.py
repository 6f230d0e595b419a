"""What one request's story (pipeline/chat.py) tells the metrics, the trace and the log line: a
call per event, each wrapping the ledger write it is about.

- `StorySeen(obs, head)`: the request's receipt, key, model and run, for the log line and span;
- `reserved(route, amount, write)`: the reservation (a `tf.reserve` span, the ledger write's
  time, the micros reserved); a reservation that passes starts its upstream attempt (a CLIENT
  span that lasts until the settle, a stream's included);
- `settled(route, end, write)`: the settle (a `tf.settle` span under the attempt's), then the
  attempt's outcome and time by route, the charge by bucket and the tokens by model.

With tracing off no span or attribute is built; the metrics cost a few dict lookups."""

from __future__ import annotations

from collections.abc import Awaitable
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar

from tokens_forge.observability.request import current
from tokens_forge.observability.tracing import GEN_AI_SYSTEM

if TYPE_CHECKING:
    from tokens_forge.guard.service import Reservation
    from tokens_forge.ledger.attempts import AttemptEnd, ReceiptHead
    from tokens_forge.observability import Observability
    from tokens_forge.routing.cache import RouteInfo

T = TypeVar("T")


class StorySeen:
    __slots__ = ("_attempt_span", "_attempt_started", "endpoint", "metrics", "model", "obs", "rec")

    def __init__(self, obs: Observability, head: ReceiptHead):
        self.obs, self.metrics, self.model, self.endpoint = obs, obs.metrics, head.model, head.endpoint
        self.rec = rec = current()
        self._attempt_started = 0.0
        self._attempt_span: Any = None
        if rec is not None:
            rec.receipt_id, rec.key_id, rec.model = head.id, head.key_id, head.model
            rec.run_id, rec.stream = head.run_id, head.stream

    async def reserved(self, route: RouteInfo, amount: int, write: Awaitable[Reservation]) -> Reservation:
        tracing = self.obs.tracing
        started = perf_counter()
        if tracing is None:
            res = await write
        else:
            with tracing.span("tf.reserve", {"tf.route_id": route.id, "tf.bucket": route.bucket,
                                             "tf.amount_micros": amount}) as span:
                res = await write
                span.set_attribute("tf.refused_scope", res.refused_scope or "")
        now = perf_counter()
        self.metrics.ledger_write("reserve", now - started)
        if not res.ok:
            return res
        self.metrics.money(route.bucket, reserved=amount)
        self._attempt_started = now
        rec = self.rec
        if rec is not None:
            rec.attempts += 1
            rec.route_id, rec.route_kind, rec.bucket = route.id, route.kind, route.bucket
            rec.reserved_micros = (rec.reserved_micros or 0) + amount
        if tracing is not None:
            operation = "embeddings" if self.endpoint == "embeddings" else "chat"
            self._attempt_span = tracing.start_span(f"{operation} {route.upstream_model}", {
                "gen_ai.operation.name": operation, "gen_ai.system": GEN_AI_SYSTEM,
                "gen_ai.request.model": route.upstream_model, "tf.route_id": route.id, "tf.route_kind": route.kind,
                "tf.bucket": route.bucket, "tf.reserved_micros": amount,
                "tf.attempt_no": rec.attempts if rec is not None else 0}, kind="client")
        return res

    async def settled(self, route: RouteInfo, end: AttemptEnd, write: Awaitable[T]) -> T:
        """`write` answers what was charged (None: the writer keeps the settle while the database
        is away; then what was decided is what it will book)."""
        tracing, span = self.obs.tracing, self._attempt_span
        started = perf_counter()
        self._attempt_span = None
        try:
            if tracing is None:
                charged = await write
            else:
                with tracing.span("tf.settle", {"tf.outcome": end.outcome}, parent=span):
                    charged = await write
        except BaseException:
            if span is not None and tracing is not None:
                tracing.end_span(span, {"tf.outcome": end.outcome, "error.type": "settle_failed"}, failed=True)
            raise
        now = perf_counter()
        c = end.charge
        amount = c.amount if charged is None else int(charged)  # type: ignore[call-overload]
        self.metrics.ledger_write("settle", now - started)
        self.metrics.attempt_done(route.id, end.outcome, started - self._attempt_started)
        self.metrics.money(route.bucket, charged=amount)
        self.metrics.usage(self.model, c.prompt_tokens, c.completion_tokens)
        rec = self.rec
        if rec is not None:
            rec.charged_micros = (rec.charged_micros or 0) + amount
            rec.input_tokens = (rec.input_tokens or 0) + c.prompt_tokens
            rec.output_tokens = (rec.output_tokens or 0) + c.completion_tokens
        if span is not None and tracing is not None:
            attrs: dict = {"tf.outcome": end.outcome, "tf.charged_micros": amount, "tf.charge_rule": c.rule,
                           "gen_ai.usage.input_tokens": c.prompt_tokens,
                           "gen_ai.usage.output_tokens": c.completion_tokens}
            if end.upstream_status is not None:
                attrs["http.response.status_code"] = end.upstream_status
            if end.outcome != "success":
                attrs["error.type"] = end.outcome
            tracing.end_span(span, attrs, failed=end.outcome != "success")
        return charged
