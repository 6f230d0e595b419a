"""Fixtures for operating the gateway: a metrics parser, a local OTLP receiver, an in-process app
with tracing on, and a real `tokens-forge serve --workers 2` with a metrics token, tracing and
its log in a file."""

from __future__ import annotations

import os

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN, LiveGateway, make_settings, serve_with_mock
from tests.observability.otlp import OtlpReceiver
from tokens_forge.main import create_app
from tokens_forge.upstream.transport import UpstreamClient

METRICS_TOKEN = "mt-test-metrics-token"


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(metrics: dict, name: str, **labels) -> float:
    """One sample's value, 0 when the series does not exist (yet)."""
    return metrics.get((name, frozenset(labels.items())), 0.0)


def series(metrics: dict, name: str) -> dict[frozenset, float]:
    return {labels: v for (n, labels), v in metrics.items() if n == name}


@pytest.fixture(scope="session")
def otlp():
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
async def traced_app(database_url, mock_upstream_port, otlp):
    """A second in-process app, exporting spans to the test's receiver (its own tracer provider:
    the session's app stays untraced)."""
    settings = make_settings(database_url=database_url, OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint)
    application = create_app(settings, db_url=database_url)
    async with application.router.lifespan_context(application):
        await application.state.http.aclose()
        application.state.http = UpstreamClient(100, hosts={"mock.test": ("127.0.0.1", mock_upstream_port)})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://gw.test",
                                     timeout=30) as client:
            yield application, client


class OpsGateway(LiveGateway):
    def metrics(self) -> tuple[dict, int]:
        """One scrape on a fresh connection: (the samples, the pid of the worker that answered)."""
        r = httpx.get(self.base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        assert r.status_code == 200, r.text
        return parse_metrics(r.text), int(r.headers["x-tf-worker-pid"])


@pytest.fixture(scope="session")
def ops_gateway(database_url, tmp_path_factory, otlp):
    """`tokens-forge serve --workers 2` with TF_METRICS_TOKEN, spans to the test's OTLP receiver
    and its whole output (the JSON log lines included) in a file; the mock upstream beside it."""
    d = tmp_path_factory.mktemp("ops")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    env.update({"TF_DATABASE_URL": database_url, "TF_ADMIN_TOKEN": ADMIN, "TF_DATA_DIR": str(d),
                "TF_METRICS_TOKEN": METRICS_TOKEN, "TF_LOG_LEVEL": "info", "TF_KEY_CACHE_TTL_S": "0.2",
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    with serve_with_mock(d, env, OpsGateway) as live:
        yield live
