"""One JSON line per request, at TF_LOG_LEVEL, with ids and numbers only: never a secret, a
prompt or an answer."""

from __future__ import annotations

import contextlib
import logging

import orjson

from tests.conftest import LogCapture, leaks_in, ok
from tokens_forge.observability import logs


@contextlib.contextmanager
def request_lines():
    handler = LogCapture()
    logger = logging.getLogger("tokens_forge.requests")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


async def test_each_request_is_one_json_line(client, tenant):
    t = await tenant()
    with request_lines() as lines:
        ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
        r = await client.post("/v1/chat/completions", json=t.chat(), headers={"Authorization": "Bearer tf-nope"})
        assert r.status_code == 401
        ok(await client.get("/v1/receipts/rcpt_none", headers=t.auth), 404)
    records = [orjson.loads(line) for line in lines]
    assert [(x["endpoint"], x["status"]) for x in records] == [("chat_completions", 200), ("chat_completions", 401),
                                                                ("receipts", 404)]
    for x in records:
        assert x["msg"] == "request" and x["level"] == "info" and x["logger"] == "tokens_forge.requests"
        assert x["duration_ms"] > 0 and x["pid"] > 0 and x["ts"].endswith("Z")
    assert records[0]["path"] == "/v1/chat/completions" and records[0]["method"] == "POST"
    assert records[1]["error_code"] == "invalid_api_key"
    # a path with an id is logged as its route's template
    assert records[2]["path"] == "/v1/receipts/{receipt_id}" and records[2]["error_code"] == "not_found"
    assert not leaks_in("\n".join(lines), {t.secret})


async def test_the_level_comes_from_the_settings(client):
    try:
        logs.configure("warning")
        with request_lines() as quiet:
            await client.get("/healthz")
            await client.get("/v1/models")
        logs.configure("debug")
        with request_lines() as loud:
            await client.get("/healthz")
    finally:
        logs.configure("info")
    assert quiet == []
    # probes are logged at debug only
    assert [orjson.loads(x)["level"] for x in loud] == ["debug"]


async def test_the_suite_logs_are_captured(suite_logs, client):
    """The session-wide check (tests/conftest.py `suite_logs`) sees real request lines."""
    await client.get("/v1/models")
    assert any('"msg":"request"' in line for line in suite_logs.lines)


async def test_a_chat_line_tells_the_requests_story(client, tenant):
    t = await tenant(key={"rate_limits": {"requests_per_minute": 1}})
    with request_lines() as lines:
        answer = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
        refused = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
        ok(await client.get("/v1/wallet", headers=t.auth))
    rc = ok(await client.get(f"/v1/receipts/{answer.headers['x-tf-receipt-id']}", headers=t.auth))
    served, limited, wallet = (orjson.loads(line) for line in lines)
    assert served["receipt_id"] == rc["id"] and served["key_id"] == t.key["id"] and served["model"] == t.model
    assert served["route_id"] == t.routes["official"]["id"] and served["bucket"] == "credit"
    assert served["charged_micros"] == rc["total_charged_micros"] and served["attempts"] == 1
    assert (served["input_tokens"], served["output_tokens"]) == (rc["prompt_tokens"], rc["completion_tokens"])
    assert served["reserved_micros"] == int(answer.headers["x-tf-reserved-micros"])
    assert refused.status_code == 429 and limited["status"] == 429
    assert limited["error_code"] == "rate_limit_exceeded"
    assert limited["receipt_id"] == refused.headers["x-tf-receipt-id"] and "attempts" not in limited
    assert wallet["key_id"] == t.key["id"]  # every endpoint of a key names it
