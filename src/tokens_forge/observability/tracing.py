"""OpenTelemetry traces over OTLP/HTTP, on only when an OTLP endpoint is configured (the
standard OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).

Each request is a SERVER span; the pipeline opens child spans for the reservation, each
upstream attempt (a CLIENT span) and the settle through `Tracing.span`. Attributes follow
OpenTelemetry's GenAI conventions (`gen_ai.operation.name`, `gen_ai.request.model`,
`gen_ai.usage.input_tokens`, …) plus the gateway's own under `tf.` (receipt, key, route,
bucket, micros). Never a prompt, an answer or a secret.

Off, nothing of the OpenTelemetry SDK is loaded and no span object is made: callers get `NOOP_SPAN`,
one shared object whose methods do nothing. The SDK reads its other standard variables itself
(OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_SCHEDULE_DELAY, OTEL_RESOURCE_ATTRIBUTES, …)."""

from __future__ import annotations

from typing import Any

__all__ = ["NOOP_SPAN", "Tracing", "traces_url"]

# The API the gateway speaks to clients and to its upstreams: OpenAI's (any OpenAI-compatible
# upstream). GenAI tools group spans by it.
GEN_AI_SYSTEM = "openai"


class _NoopSpan:
    """What a span is when tracing is off: one object for every call, doing nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: object) -> None:
        return None

    def set_attributes(self, attributes: dict) -> None:
        return None

    def is_recording(self) -> bool:
        return False


NOOP_SPAN = _NoopSpan()


def traces_url(endpoint: str | None, traces_endpoint: str | None) -> str | None:
    """The URL spans are posted to: the signal-specific variable as given, or the base endpoint
    plus /v1/traces (as the OTLP/HTTP specification says); None when neither is set."""
    if traces_endpoint:
        return traces_endpoint
    if endpoint:
        return endpoint.rstrip("/") + "/v1/traces"
    return None


class Tracing:
    def __init__(self, url: str, *, service_name: str, version: str):
        from opentelemetry import context, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._context, self._trace = context, trace
        self._kinds = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}
        self._error = Status(StatusCode.ERROR)
        self._propagator = TraceContextTextMapPropagator()
        resource = Resource.create({"service.name": service_name, "service.version": version})
        # Not the global provider: an app owns its tracing (tests build several apps in one process).
        self._provider = TracerProvider(resource=resource)
        # Spans are sent from the processor's own thread, in batches, never on the event loop.
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        self._tracer = self._provider.get_tracer("tokens_forge", version)

    def start_request(self, name: str, headers: list[tuple[bytes, bytes]], attributes: dict) -> tuple[Any, object]:
        """The request's SERVER span, current until `end_request`. A client's W3C `traceparent`
        makes it a child of the client's trace."""
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers
                   if k == b"traceparent" or k == b"tracestate"}
        parent = self._propagator.extract(carrier) if carrier else None
        span = self._tracer.start_span(name, context=parent, kind=self._kinds["server"], attributes=attributes)
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        return span, token

    def end_request(self, span: Any, token: object, attributes: dict, *, name: str | None, failed: bool) -> None:
        try:
            if name:
                span.update_name(name)
            span.set_attributes(attributes)
            if failed:
                span.set_status(self._error)
            span.end()
        finally:
            self._context.detach(token)  # type: ignore[arg-type]

    def span(self, name: str, attributes: dict | None = None, kind: str = "internal", parent: Any = None) -> Any:
        """A child of the current span (or of `parent`), as a context manager (an exception marks
        it failed)."""
        context = None if parent is None else self._trace.set_span_in_context(parent)
        return self._tracer.start_as_current_span(name, context=context, kind=self._kinds[kind],
                                                  attributes=attributes)

    def start_span(self, name: str, attributes: dict | None = None, kind: str = "internal") -> Any:
        """A child of the current span that outlives the caller's block (an upstream attempt lasts
        until its settle, a stream's after the answer began): ended by `end_span`."""
        return self._tracer.start_span(name, kind=self._kinds[kind], attributes=attributes)

    def end_span(self, span: Any, attributes: dict, *, failed: bool) -> None:
        span.set_attributes(attributes)
        if failed:
            span.set_status(self._error)
        span.end()

    def trace_id(self, span: Any) -> str:
        return format(span.get_span_context().trace_id, "032x")

    def shutdown(self) -> None:
        """Send what is queued, then stop the processor's thread."""
        self._provider.shutdown()
