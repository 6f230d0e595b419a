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


def _burst(live, t, n: int) -> tuple[list[httpx.Response], float]:
    """`n` requests at once, each on a connection of its own (so that both workers take some)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_):
        return httpx.post(live.base + "/v1/chat/completions", json=t.chat(), headers=t.auth, timeout=30)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=n) as pool:
        answers = list(pool.map(one, range(n)))
    return answers, time.monotonic() - started


def test_a_requests_per_minute_limit_holds_across_both_workers(ops_gateway):
    live = ops_gateway
    for _ in range(3):  # until the burst was served by both workers
        t = live.tenant(key={"rate_limits": {"requests_per_minute": 10}})  # one more every 6 s
        answers, seconds = _burst(live, t, 30)
        time.sleep(0.3)
        pids = {r["pid"] for r in request_lines(live.log.read_text()) if r.get("key_id") == t.key["id"]}
        if len(pids) == 2:
            break
    assert len(pids) == 2, "one worker served the whole burst three times"
    assert seconds < 6, f"the burst took {seconds:.1f}s: a request may have come back meanwhile"
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 10 + [429] * 20, codes
    for r in answers:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limit_exceeded" and int(r.headers["retry-after"]) >= 1
    refused = [r.headers["x-tf-receipt-id"] for r in answers if r.status_code == 429]
    for rid in refused[:3]:
        rc = ok(httpx.get(f"{live.base}/v1/receipts/{rid}", headers=t.auth, timeout=10))
        assert (rc["status"], rc["error_code"], rc["total_charged_micros"]) == ("rejected", "rate_limit_exceeded", 0)
    charged = sum(int(r.headers["x-tf-charged-micros"]) for r in answers if r.status_code == 200)
    w = ok(httpx.get(f"{live.base}/v1/wallet", headers=t.auth, timeout=10))
    assert w["buckets"]["credit"]["available_micros"] == 10_000_000 - charged  # the 429s cost nothing
    live.verify()


def test_the_openai_sdk_reads_the_rate_limit_headers_and_the_429(ops_gateway):
    import openai

    live = ops_gateway
    t = live.tenant(key={"rate_limits": {"requests_per_minute": 2, "tokens_per_minute": 50_000}})
    sdk = openai.OpenAI(base_url=live.base + "/v1", api_key=t.secret, max_retries=0)
    messages = [{"role": "user", "content": "hello world"}]
    raw = sdk.chat.completions.with_raw_response.create(model=t.model, messages=messages, max_tokens=5)
    assert raw.parse().choices[0].message.content
    h = raw.headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("2", "1")
    assert h["x-ratelimit-reset-requests"].endswith("s") and h["x-ratelimit-limit-tokens"] == "50000"
    assert 0 < int(h["x-ratelimit-remaining-tokens"]) < 50_000 and h["x-ratelimit-reset-tokens"].endswith("s")
    sdk.chat.completions.create(model=t.model, messages=messages, max_tokens=5)
    try:
        sdk.chat.completions.create(model=t.model, messages=messages, max_tokens=5)
        raise AssertionError("the third request in a minute passed a limit of 2")
    except openai.RateLimitError as e:
        err = e
    assert err.status_code == 429 and err.code == "rate_limit_exceeded" and err.type == "rate_limit_error"
    assert int(err.response.headers["retry-after"]) >= 1 and err.response.headers["x-should-retry"] == "true"
    rc = ok(httpx.get(f"{live.base}/v1/receipts/{err.body['receipt_id']}", headers=t.auth, timeout=10))
    assert rc["status"] == "rejected" and rc["total_charged_micros"] == 0 and rc["attempts"] == []
    live.verify()
