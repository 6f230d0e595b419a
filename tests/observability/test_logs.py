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
