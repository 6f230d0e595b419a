"""A key's rate limits (SPEC §11) in the reservation's own transaction: the first attempt of a
request counts, retries and fallbacks do not; the limit refills continuously on the database's
clock; a refusal is a 429 with a `rejected` receipt and no charge; the admin API sets them. The
ledger is verified after every test (conftest)."""

from __future__ import annotations

import asyncio

from tests.conftest import ok

RETRY_5XX = {"max_attempts": 3, "retry_on": ["http_5xx"], "backoff_ms": 0}


async def receipt(client, t, r) -> dict:
    return ok(await client.get(f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))


async def available(client, t) -> tuple[int, int]:
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    return w["buckets"]["credit"]["available_micros"], w["buckets"]["routed"]["available_micros"]


async def test_the_requests_limit_passes_exactly_its_count_then_refuses_with_a_rejected_receipt(client, tenant):
    t = await tenant(key={"rate_limits": {"requests_per_minute": 3}})
    remaining = []
    for _ in range(3):
        r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
        ok(r)
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert "x-ratelimit-limit-tokens" not in r.headers  # no token limit: no tokens trio
        remaining.append(r.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    before = await available(client, t)
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 429
    err = r.json()["error"]
    assert (err["code"], err["type"]) == ("rate_limit_exceeded", "rate_limit_error")
    assert "3 requests per minute" in err["message"]
    # one request comes back every 20 s: the first of the three was taken a moment ago
    assert 1 <= int(r.headers["retry-after"]) <= 20 and int(r.headers["retry-after-ms"]) <= 20_000
    assert r.headers["x-should-retry"] == "true" and r.headers["x-ratelimit-remaining-requests"] == "0"
    rc = await receipt(client, t, r)
    assert err["receipt_id"] == rc["id"]
    assert (rc["status"], rc["error_code"], rc["total_charged_micros"], rc["attempts"]) == (
        "rejected", "rate_limit_exceeded", 0, [])
    assert "rate limit" in rc["reason"]
    assert await available(client, t) == before  # nothing reserved, nothing charged


async def test_retries_and_fallbacks_count_once(client, tenant):
    t = await tenant(official="fail500", key={"rate_limits": {"requests_per_minute": 2}, "retry_policy": RETRY_5XX,
                                              "fallback_policy": "any_bucket"})
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    ok(r)
    assert len((await receipt(client, t, r))["attempts"]) == 4  # three on official, then routed
    assert r.headers["x-ratelimit-remaining-requests"] == "1"
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 429


async def test_the_limit_refills_continuously_on_the_databases_clock(app, client, tenant):
    t = await tenant(key={"rate_limits": {"requests_per_minute": 6}})  # one back every 10 s
    for _ in range(6):
        ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    assert (await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)).status_code == 429
    # as if 10.5 s had passed: exactly one request is back
    await app.state.pg.execute("UPDATE key_rate_limits SET updated_at = updated_at - interval '10.5 seconds' "
                               "WHERE key_id = $1", t.key["id"])
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    ok(r)
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert (await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)).status_code == 429


async def test_the_tokens_limit_counts_the_first_reservations_bounds(client, tenant):
    probe = await tenant(key={"rate_limits": {"tokens_per_minute": 1_000_000}})
    r = await client.post("/v1/chat/completions", json=probe.chat(), headers=probe.auth)
    ok(r)
    cost = 1_000_000 - int(r.headers["x-ratelimit-remaining-tokens"])
    assert "x-ratelimit-limit-requests" not in r.headers and cost > 5  # the input bound and max_tokens 5
    t = await tenant(key={"rate_limits": {"tokens_per_minute": 2 * cost + cost // 2}})
    for left in (cost + cost // 2, cost // 2):
        r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
        ok(r)
        assert int(r.headers["x-ratelimit-remaining-tokens"]) == left
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert f"{cost} tokens" in r.json()["error"]["message"] and int(r.headers["retry-after"]) >= 1
    assert (await receipt(client, t, r))["status"] == "rejected"


async def test_a_request_larger_than_the_tokens_limit_is_refused_for_good(client, tenant):
    t = await tenant(key={"rate_limits": {"tokens_per_minute": 5}})
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 429 and r.headers["x-should-retry"] == "false" and "retry-after" not in r.headers
    assert "lower max_tokens" in r.json()["error"]["message"]
    assert r.headers["x-ratelimit-remaining-tokens"] == "5"  # a refusal takes nothing
    assert (await receipt(client, t, r))["error_code"] == "rate_limit_exceeded"


async def test_a_stream_carries_the_headers_and_a_refused_stream_is_a_429(client, tenant):
    t = await tenant(key={"rate_limits": {"requests_per_minute": 1, "tokens_per_minute": 100_000}})
    async with client.stream("POST", "/v1/chat/completions", json=t.chat(stream=True), headers=t.auth) as r:
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "0"
        assert int(r.headers["x-ratelimit-remaining-tokens"]) < 100_000
        assert b"[DONE]" in b"".join([c async for c in r.aiter_bytes()])
    r = await client.post("/v1/chat/completions", json=t.chat(stream=True), headers=t.auth)
    assert r.status_code == 429 and r.headers["x-ratelimit-limit-tokens"] == "100000"


async def test_a_burst_of_concurrent_requests_passes_exactly_the_limit(client, tenant):
    t = await tenant(key={"rate_limits": {"requests_per_minute": 7}})
    answers = await asyncio.gather(*[client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
                                     for _ in range(20)])
    assert sorted(r.status_code for r in answers) == [200] * 7 + [429] * 13


async def test_an_idempotency_key_refused_by_the_rate_limit_runs_anew_once_it_passes(app, client, tenant):
    t = await tenant(key={"rate_limits": {"requests_per_minute": 1}})
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    headers = {**t.auth, "Idempotency-Key": "rl-retry-1"}
    assert (await client.post("/v1/chat/completions", json=t.chat(), headers=headers)).status_code == 429
    await app.state.pg.execute("UPDATE key_rate_limits SET updated_at = updated_at - interval '61 seconds' "
                               "WHERE key_id = $1", t.key["id"])
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=headers))


async def test_the_admin_api_sets_shows_and_lifts_rate_limits(admin, client, tenant):
    t = await tenant()
    key_id = t.key["id"]
    assert t.key["rate_limits"] == {"requests_per_minute": None, "tokens_per_minute": None}
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert not any(h.startswith("x-ratelimit-") for h in r.headers)  # no limits: no headers
    k = ok(await admin.patch(f"/keys/{key_id}", json={"rate_limits": {"requests_per_minute": 1}}))
    assert k["rate_limits"] == {"requests_per_minute": 1, "tokens_per_minute": None}
    k = ok(await admin.patch(f"/keys/{key_id}", json={"rate_limits": {"tokens_per_minute": 9000}}))
    assert k["rate_limits"] == {"requests_per_minute": 1, "tokens_per_minute": 9000}  # the fields sent only
    assert ok(await admin.get(f"/keys/{key_id}"))["rate_limits"]["requests_per_minute"] == 1
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    assert (await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)).status_code == 429
    k = ok(await admin.patch(f"/keys/{key_id}", json={"rate_limits": None}))
    assert k["rate_limits"] == {"requests_per_minute": None, "tokens_per_minute": None}
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    audit = ok(await admin.get("/audit", params={"target_id": key_id}))["data"]
    assert any(a["after"]["rate_limits"]["tokens_per_minute"] == 9000 for a in audit)


async def test_rate_limits_out_of_range_are_a_400(admin, tenant):
    t = await tenant()
    for bad in ({"requests_per_minute": 0}, {"tokens_per_minute": -1}, {"requests_per_minute": 10**9},
                {"tokens_per_minute": 10**11}, {"requests_per_minute": "ten"}, {"per_hour": 5}):
        r = await admin.patch(f"/keys/{t.key['id']}", json={"rate_limits": bad})
        assert r.status_code == 400 and r.json()["error"]["param"].startswith("rate_limits"), (bad, r.text)
    r = await admin.post("/keys", json={"project_id": t.project["id"], "name": "k2",
                                        "rate_limits": {"requests_per_minute": 0}})
    assert r.status_code == 400


async def test_one_group_commit_decides_each_first_attempt_in_order(app, tenant):
    from tests.ledger.test_writer import head_of, route_of
    from tokens_forge.guard.money import Charge
    from tokens_forge.ledger import attempts as store
    from tokens_forge.ledger.attempts import AttemptEnd, ReceiptEnd
    from tokens_forge.ledger.writer import LedgerWriter

    limited, free = await tenant(key={"rate_limits": {"requests_per_minute": 2}}), await tenant()
    on_limited, on_free = await route_of(app, limited), await route_of(app, free)
    writer = LedgerWriter(durable_settle=True)
    heads = [head_of(limited, on_limited) for _ in range(3)] + [head_of(free, on_free)]
    routes = [on_limited] * 3 + [on_free]
    try:
        results = await asyncio.gather(*[
            store.open_attempt(app.state.pg, h, r, 1, 100, 600, create=True, reject=False, writer=writer)
            for h, r in zip(heads, routes, strict=True)])
        assert writer.writes == 1  # one transaction carried all four
        assert [r.refused_scope for r in results] == [None, None, "requests_per_minute", None]
        assert [r.rate.requests_remaining if r.rate else None for r in results] == [1, 0, 0, None]
        # a later attempt of an admitted request is not counted
        again = await store.open_attempt(app.state.pg, heads[0], on_limited, 2, 100, 600, create=False,
                                         reject=False, writer=writer)
        assert again.ok and again.rate is None
        status = await app.state.pg.fetchval("SELECT status FROM receipts WHERE id = $1", heads[2].id)
        assert status == "rejected"  # closed though `reject` was not set: nothing else is tried
        for h, route, no, res in [(heads[0], on_limited, 1, results[0]), (heads[1], on_limited, 1, results[1]),
                                  (heads[3], on_free, 1, results[3]), (heads[0], on_limited, 2, again)]:
            await store.finish_attempt(app.state.pg, h, route, no, res.hold_id,
                                       AttemptEnd("cancelled", Charge(0, "none", "test")),
                                       ReceiptEnd("cancelled"), writer=writer)
    finally:
        await writer.close()


async def test_responses_and_embeddings_share_the_keys_limits_and_carry_the_headers(client, admin, tenant):
    t = await tenant(routed=None, key={"rate_limits": {"requests_per_minute": 3, "tokens_per_minute": 100_000}})
    ok(await admin.patch(f"/routes/{t.routes['official']['id']}",
                         json={"apis": ["chat_completions", "responses", "embeddings"]}))
    calls = [("/v1/chat/completions", t.chat()),
             ("/v1/responses", {"model": t.model, "input": "hello world", "max_output_tokens": 16}),
             ("/v1/embeddings", {"model": t.model, "input": "hello world"})]
    seen = []
    for path, body in calls:
        r = await client.post(path, json=body, headers=t.auth)
        ok(r)
        seen.append((r.headers["x-ratelimit-remaining-requests"], int(r.headers["x-ratelimit-remaining-tokens"])))
    assert [s[0] for s in seen] == ["2", "1", "0"]  # one limit for every endpoint of the key
    assert seen[0][1] > seen[1][1] > seen[2][1]
    r = await client.post("/v1/embeddings", json={"model": t.model, "input": "hello world"}, headers=t.auth)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    rc = await receipt(client, t, r)
    assert (rc["status"], rc["endpoint"], rc["total_charged_micros"]) == ("rejected", "embeddings", 0)
