"""x-should-retry on every error answer (SPEC §6): false where repeating the same request cannot
succeed, true where it can. OpenAI's SDKs obey it: a paused run is one refused request, not three."""

import httpx
import openai
import pytest

from tests.conftest import ok
from tokens_forge.errors import should_retry


@pytest.mark.parametrize("status,code,expected", [
    (400, "invalid_request", False), (401, "invalid_api_key", False), (402, "insufficient_balance", False),
    (403, "route_not_allowed", False), (404, "model_not_found", False), (409, "run_paused", False),
    (409, "run_cancelled", False), (409, "run_finished", False), (413, "request_too_large", False),
    (409, "request_in_progress", True), (429, "rate_limit_exceeded", True), (429, "upstream_rate_limited", True),
    (503, "no_healthy_route", True), (502, "upstream_error", True), (504, "upstream_timeout", True),
])
def test_table(status, code, expected):
    assert should_retry(status, code) is expected


async def answer(client, t, body=None, headers=None, content=None):
    kw = {"content": content} if content is not None else {"json": body if body is not None else t.chat()}
    return await client.post("/v1/chat/completions", headers={**t.auth, **(headers or {})}, **kw)


async def test_answers_carry_it(client, tenant):
    t = await tenant(routed=None, credit=10)
    cases = {
        "bad json": (await answer(client, t, content=b"{"), 400, "false"),
        "bad key": (await client.post("/v1/chat/completions", json=t.chat(),
                                      headers={"Authorization": "Bearer tf-nope"}), 401, "false"),
        "no balance": (await answer(client, t, t.chat(max_tokens=1000)), 402, "false"),
        "unknown model": (await answer(client, t, t.chat(model="nope")), 404, "false"),
        "no routed route": (await answer(client, t, headers={"X-TF-Route-Preference": "routed"}), 503, "true"),
    }
    for name, (r, status, retry) in cases.items():
        assert (r.status_code, r.headers.get("x-should-retry")) == (status, retry), (name, r.text)


async def test_official_only_key_preferring_routed_is_403(client, tenant):
    t = await tenant(key={"allowed_route_kinds": ["official"]})
    r = await answer(client, t, headers={"X-TF-Route-Preference": "routed"})
    assert r.status_code == 403 and r.headers["x-should-retry"] == "false"
    e = r.json()["error"]
    assert (e["code"], e["param"]) == ("route_not_allowed", "X-TF-Route-Preference") and "official" in e["message"]


async def test_the_sdk_does_not_repeat_a_paused_run(app, client, tenant):
    t = await tenant()
    run = ok(await client.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 100_000},
                               headers=t.auth))
    ok(await client.post(f"/v1/runs/{run['id']}/pause", headers=t.auth))
    sent = []
    asgi = httpx.ASGITransport(app=app)

    class Counting(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            sent.append(request.url.path)
            return await asgi.handle_async_request(request)

    http = httpx.AsyncClient(transport=Counting(), base_url="http://gw.test/v1")
    sdk = openai.AsyncOpenAI(api_key=t.secret, base_url="http://gw.test/v1", http_client=http, max_retries=2)
    with pytest.raises(openai.ConflictError) as e:
        await sdk.chat.completions.create(model=t.model, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                          extra_headers={"X-TF-Run-Id": run["id"]})
    assert e.value.code == "run_paused"
    assert sent == ["/v1/chat/completions"]  # one refused request, not three
