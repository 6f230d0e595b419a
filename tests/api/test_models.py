"""GET /v1/models and GET /v1/models/{model}: what this key may use, in OpenAI's shapes, read by
the OpenAI SDK itself."""

import httpx
import openai
import pytest

from tests.admin.conftest import route_body
from tests.conftest import ok


def sdk(app, t) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test/v1")
    return openai.AsyncOpenAI(api_key=t.secret, base_url="http://gw.test/v1", http_client=http, max_retries=0)


async def test_retrieve_in_openai_shape(app, client, admin, tenant):
    t = await tenant()
    ok(await admin.patch(f"/routes/{t.routes['routed']['id']}", json={"apis": ["chat_completions", "embeddings"]}))
    m = ok(await client.get(f"/v1/models/{t.model}", headers=t.auth))
    assert {k: m[k] for k in ("id", "object", "owned_by")} == {"id": t.model, "object": "model",
                                                               "owned_by": "tokens-forge"}
    assert isinstance(m["created"], int)
    assert [(r["kind"], r["apis"]) for r in m["routes"]] == [
        ("official", ["chat_completions"]), ("routed", ["chat_completions", "embeddings"])]
    listed = ok(await client.get("/v1/models", headers=t.auth))
    assert [x for x in listed["data"] if x["id"] == t.model] == [m]
    model = await sdk(app, t).models.retrieve(t.model)
    assert (model.id, model.object, model.owned_by) == (t.model, "model", "tokens-forge")


async def test_only_the_routes_the_key_may_use(client, tenant):
    t = await tenant(key={"allowed_route_kinds": ["routed"]})
    m = ok(await client.get(f"/v1/models/{t.model}", headers=t.auth))
    assert [r["kind"] for r in m["routes"]] == ["routed"]


async def test_model_with_a_slash(client, admin, tenant):
    t = await tenant()
    name = f"vendor/{t.model}"
    ok(await admin.post("/routes", json=route_body(model=name)))
    assert ok(await client.get(f"/v1/models/{name}", headers=t.auth))["id"] == name


@pytest.mark.parametrize("case", ["missing", "not allowed", "disabled", "kind not allowed"])
async def test_not_found(app, client, admin, tenant, case):
    over = {"not allowed": {"allowed_models": ["other"]}, "kind not allowed": {"allowed_route_kinds": ["official"]}}
    t = await tenant(routed=None if case == "kind not allowed" else "ok", key=over.get(case))
    model = t.model
    if case == "missing":
        model = "no-such-model"
    if case == "disabled":
        for route in t.routes.values():
            ok(await admin.patch(f"/routes/{route['id']}", json={"enabled": False}))
    if case == "kind not allowed":
        ok(await admin.patch(f"/routes/{t.routes['official']['id']}", json={"enabled": False}))
    r = await client.get(f"/v1/models/{model}", headers=t.auth)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "model_not_found" and r.headers["x-should-retry"] == "false"
    with pytest.raises(openai.NotFoundError):
        await sdk(app, t).models.retrieve(model)


async def test_needs_a_key(client):
    r = await client.get("/v1/models/anything")
    assert r.status_code == 401 and r.headers["x-should-retry"] == "false"
