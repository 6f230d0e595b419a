"""Operating the gateway (SPEC §11): Prometheus metrics of all workers (`metrics`, `gauges`),
OpenTelemetry traces (`tracing`), one JSON log line per request (`logs`), and what the pipeline
tells them about a request (`request`). The app builds one `Observability` (app.state.obs); the
outermost middleware reports every request through it."""

from __future__ import annotations

from typing import Any

from tokens_forge import __version__
from tokens_forge.config import Settings
from tokens_forge.observability import logs
from tokens_forge.observability.metrics import Metrics
from tokens_forge.observability.request import RequestObs, current, note_error
from tokens_forge.observability.tracing import NOOP_SPAN, Tracing, traces_url

__all__ = ["Observability", "RequestObs", "current", "note_error"]


class Observability:
    def __init__(self, settings: Settings):
        logs.configure(settings.log_level)
        self.metrics = Metrics(settings.prometheus_multiproc_dir)
        url = traces_url(settings.otel_exporter_otlp_endpoint, settings.otel_exporter_otlp_traces_endpoint)
        self.tracing = Tracing(url, service_name=settings.otel_service_name, version=__version__) if url else None

    def span(self, name: str, attributes: dict | None = None, kind: str = "internal", parent: Any = None) -> Any:
        """A child span of the current request (or of `parent`) as a context manager; `NOOP_SPAN`
        when tracing is off. Build costly attributes only `if obs.tracing is not None`."""
        if self.tracing is None:
            return NOOP_SPAN
        return self.tracing.span(name, attributes, kind, parent)

    def close(self) -> None:
        if self.tracing is not None:
            self.tracing.shutdown()
