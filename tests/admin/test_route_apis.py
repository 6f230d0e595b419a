"""A route's `apis` and `output_cap_param` (SPEC §3): defaults, canonical order, refusals, patch,
audit, and the table's own CHECKs."""

import asyncpg
import pytest

from tests.admin.conftest import audit_of, err, route_body
from tests.conftest import ok


async def test_defaults(admin):
    route = ok(await admin.post("/routes", json=route_body()), 201)
    assert route["apis"] == ["chat_completions"] and route["output_cap_param"] == "max_completion_tokens"


@pytest.mark.parametrize("sent,stored", [
    (["embeddings", "chat_completions"], ["chat_completions", "embeddings"]),
    (["responses", "responses"], ["responses"]),
    (["embeddings", "responses", "chat_completions"], ["chat_completions", "responses", "embeddings"]),
])
async def test_apis_are_a_set_in_one_order(admin, sent, stored):
    route = ok(await admin.post("/routes", json=route_body(apis=sent, output_cap_param="max_tokens")), 201)
    assert route["apis"] == stored and route["output_cap_param"] == "max_tokens"
    assert ok(await admin.get(f"/routes/{route['id']}"))["apis"] == stored


@pytest.mark.parametrize("field,value", [
    ("apis", []), ("apis", ["completions"]), ("apis", "responses"), ("apis", None),
    ("output_cap_param", "max_output_tokens"), ("output_cap_param", None),
])
async def test_bad_values_are_refused(admin, field, value):
    err(await admin.post("/routes", json=route_body(**{field: value})), 400, "invalid_request")


async def test_patch_is_audited(admin):
    route = ok(await admin.post("/routes", json=route_body()), 201)
    patched = ok(await admin.patch(f"/routes/{route['id']}",
                                   json={"apis": ["responses", "chat_completions"], "output_cap_param": "max_tokens"}))
    assert patched["apis"] == ["chat_completions", "responses"] and patched["output_cap_param"] == "max_tokens"
    unchanged = ok(await admin.patch(f"/routes/{route['id']}", json={"priority": 4}))
    assert unchanged["apis"] == ["chat_completions", "responses"]
    err(await admin.patch(f"/routes/{route['id']}", json={"apis": []}), 400, "invalid_request")
    [_, update, _] = await audit_of(admin, route["id"])
    assert update["before"]["apis"] == ["chat_completions"] and update["after"]["apis"] == patched["apis"]
    assert update["after"]["output_cap_param"] == "max_tokens"


@pytest.mark.parametrize("sql", [
    "UPDATE routes SET apis = '{}' WHERE id = $1",
    "UPDATE routes SET apis = '{responses,chat_completions}' WHERE id = $1",  # not the stored order
    "UPDATE routes SET apis = '{chat_completions,chat_completions}' WHERE id = $1",
    "UPDATE routes SET apis = '{completions}' WHERE id = $1",
    "UPDATE routes SET output_cap_param = 'max_output_tokens' WHERE id = $1",
])
async def test_the_table_checks_the_invariants(app, admin, sql):
    route = ok(await admin.post("/routes", json=route_body()), 201)
    async with app.state.pg.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(sql, route["id"])


async def test_receipt_endpoint_is_checked(app, client, tenant):
    t = await tenant()
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    rid = r.headers["x-tf-receipt-id"]
    assert ok(await client.get(f"/v1/receipts/{rid}", headers=t.auth))["endpoint"] == "chat_completions"
    async with app.state.pg.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE receipts SET endpoint = 'completions' WHERE id = $1", rid)
