"""OpenTelemetry: with an OTLP endpoint set, each request is a SERVER span exported over OTLP/HTTP
to a real receiver (protobuf decoded here); unset, nothing of OpenTelemetry is even imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ok
from tokens_forge.observability.tracing import NOOP_SPAN


async def test_a_chat_request_is_a_server_span_with_genai_attributes(traced_app, otlp, tenant):
    application, client = traced_app
    t = await tenant()
    r = ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    application.state.obs.tracing._provider.force_flush()
    spans = otlp.wait_for(lambda ss: any(s.kind == "server" and s.attributes.get("tf.endpoint") == "chat_completions"
                                         and s.attributes.get("http.response.status_code") == 200 for s in ss))
    root = [s for s in spans if s.kind == "server" and s.attributes.get("tf.endpoint") == "chat_completions"][-1]
    assert root.name.startswith("chat")
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["gen_ai.system"] == "openai"
    assert root.attributes["http.route"] == "/v1/chat/completions"
    assert root.resource["service.name"] == "tokens-forge"
    assert root.parent_span_id == ""
    assert r["choices"]


async def test_a_client_traceparent_makes_the_request_a_child_of_its_trace(traced_app, otlp):
    application, client = traced_app
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = await client.get("/v1/models", headers={"traceparent": f"00-{trace_id}-{parent}-01",
                                                 "Authorization": "Bearer tf-nope"})
    assert r.status_code == 401
    application.state.obs.tracing._provider.force_flush()
    spans = otlp.wait_for(lambda ss: any(s.trace_id == trace_id for s in ss))
    span = next(s for s in spans if s.trace_id == trace_id)
    assert span.parent_span_id == parent and span.kind == "server"
    assert span.attributes["error.type"] == "invalid_api_key"
    assert span.attributes["http.response.status_code"] == 401
    assert span.name == "GET /v1/models"


async def test_tracing_off_is_no_span_at_all(app):
    assert app.state.obs.tracing is None
    assert app.state.obs.span("tf.reserve", {"a": 1}) is NOOP_SPAN


@pytest.mark.slow  # a python process of its own
def test_tracing_off_loads_no_tracing_sdk():
    code = ("import sys\n"
            "from tokens_forge.config import Settings\n"
            "from tokens_forge.main import create_app\n"
            "create_app(Settings(database_url='postgresql://x@127.0.0.1:1/x'))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))\n")
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_the_reservation_each_attempt_and_each_settle_are_child_spans(traced_app, otlp, tenant):
    application, client = traced_app
    t = await tenant(official="fail500", key={"retry_policy": {"max_attempts": 2, "retry_on": ["http_5xx"]},
                                              "fallback_policy": "any_bucket"})
    answer = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    r = ok(answer)
    application.state.obs.tracing._provider.force_flush()
    official, routed = t.routes["official"]["id"], t.routes["routed"]["id"]

    def of_this(ss):
        return [s for s in ss if s.attributes.get("tf.route_id") in (official, routed)]

    spans = otlp.wait_for(lambda ss: len([s for s in of_this(ss) if s.kind == "client"]) == 3
                          and len([s for s in ss if s.name == "tf.settle"]) >= 3)
    attempts = sorted((s for s in of_this(spans) if s.kind == "client"), key=lambda s: s.start_ns)
    reserves = [s for s in of_this(spans) if s.name == "tf.reserve"]
    trace = attempts[0].trace_id
    root = next(s for s in spans if s.trace_id == trace and s.kind == "server")
    assert len(reserves) == 3 and all(s.parent_span_id == root.span_id for s in reserves + attempts)
    assert [(s.attributes["tf.route_id"], s.attributes["tf.outcome"]) for s in attempts] == [
        (official, "upstream_error"), (official, "upstream_error"), (routed, "success")]
    assert [s.attributes["tf.attempt_no"] for s in attempts] == [1, 2, 3]
    assert attempts[0].status_code == 2 and attempts[2].status_code != 2  # ERROR, then not
    assert attempts[2].attributes["gen_ai.usage.output_tokens"] == 5 == r["usage"]["completion_tokens"]
    settles = [s for s in spans if s.name == "tf.settle" and s.trace_id == trace]
    assert sorted(s.parent_span_id for s in settles) == sorted(s.span_id for s in attempts)
    assert root.attributes["gen_ai.request.model"] == t.model
    assert root.attributes["gen_ai.usage.output_tokens"] == 5 and root.attributes["tf.attempts"] == 3
    assert root.attributes["tf.receipt_id"] == answer.headers["x-tf-receipt-id"]
    assert root.attributes["tf.route_id"] == routed and root.attributes["tf.bucket"] == "routed"
