"""A real `tokens-forge serve --workers 2`: a scrape of either worker counts both workers'
requests, spans arrive at the test's OTLP receiver, and the gateway's log has one JSON line per
request and no secret or prompt."""

from __future__ import annotations

import time
import uuid

import httpx
import orjson

from tests.conftest import SECRETS_SEEN, leaks_in, ok
from tests.observability.conftest import sample, series


def request_lines(log_text: str) -> list[dict]:
    out = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            rec = orjson.loads(line)
            if rec.get("msg") == "request":
                out.append(rec)
    return out


def chat_pids(live) -> set[int]:
    return {r["pid"] for r in request_lines(live.log.read_text()) if r["endpoint"] == "chat_completions"}


def test_a_scrape_of_either_worker_counts_every_workers_requests(ops_gateway):
    live = ops_gateway
    t = live.tenant()
    before, _ = live.metrics()
    sent = 0
    # each request on a connection of its own, until both workers have served some
    while sent < 10 or len(chat_pids(live)) < 2:
        assert sent < 300, "one worker served every request"
        ok(httpx.post(live.base + "/v1/chat/completions", json=t.chat(), headers=t.auth, timeout=30))
        sent += 1
    answered_by: set[int] = set()
    for _ in range(200):
        after, pid = live.metrics()
        answered_by.add(pid)
        counted = (sample(after, "tf_requests_total", endpoint="chat_completions", status="200")
                   - sample(before, "tf_requests_total", endpoint="chat_completions", status="200"))
        assert counted == sent, f"worker {pid} counted {counted} of {sent}"
        assert (sample(after, "tf_request_duration_seconds_count", endpoint="chat_completions")
                - sample(before, "tf_request_duration_seconds_count", endpoint="chat_completions")) == sent
        assert len(series(after, "tf_worker_start_time_seconds")) == 2
        assert sample(after, "tf_database_up") == 1
        if len(answered_by) == 2:
            break
    assert len(answered_by) == 2, "every scrape was answered by the same worker"


def test_the_metrics_of_a_real_server_need_its_token(ops_gateway):
    r = httpx.get(ops_gateway.base + "/metrics", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_a_real_server_exports_its_spans(ops_gateway, otlp):
    live = ops_gateway
    t = live.tenant()
    trace_id = uuid.uuid4().hex
    headers = {**t.auth, "traceparent": f"00-{trace_id}-{'1' * 16}-01"}
    ok(httpx.post(live.base + "/v1/chat/completions", json=t.chat(), headers=headers, timeout=30))
    spans = otlp.wait_for(lambda ss: any(s.trace_id == trace_id and s.kind == "server" for s in ss))
    root = next(s for s in spans if s.trace_id == trace_id and s.kind == "server")
    assert root.parent_span_id == "1" * 16
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["http.response.status_code"] == 200
    assert root.resource["service.name"] == "tokens-forge"


def test_the_log_of_a_real_server_has_every_request_and_no_secret(ops_gateway):
    live = ops_gateway
    t = live.tenant()
    with httpx.Client(base_url=live.base, headers=t.auth, timeout=30) as c:
        for extra in ({}, {"stream": True}, {"max_tokens": 10**6, "n": 128}):
            c.post("/v1/chat/completions", json={**t.chat(), **extra})
        c.post("/v1/chat/completions", json=t.chat(), headers={"Authorization": "Bearer " + t.secret + "x"})
        c.get("/v1/wallet")
    time.sleep(0.3)
    text = live.log.read_text(errors="replace")
    lines = request_lines(text)
    assert {(r["endpoint"], r["status"]) for r in lines} >= {("chat_completions", 200), ("chat_completions", 401),
                                                            ("wallet", 200)}
    assert all(isinstance(r["duration_ms"], float | int) for r in lines)
    leaks = leaks_in(text, SECRETS_SEEN | {t.secret + "x"})
    assert not leaks, f"the gateway log holds {leaks}"
