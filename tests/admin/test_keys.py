"""API keys: the secret is shown once, stored as a hash, never returned again; patch and revoke."""

import hashlib

import pytest

from tests.admin.conftest import audit_of, err
from tests.conftest import ok

FULL = {
    "name": "ci", "limits": {"daily_micros": 1_000, "total_micros": 50_000, "per_request_micros": 500},
    "min_balance_micros": 10_000, "allowed_models": ["gpt-x"], "allowed_route_kinds": ["routed"],
    "retry_policy": {"max_attempts": 3, "retry_on": ["timeout", "http_5xx"], "backoff_ms": 100},
    "fallback_policy": "same_bucket",
}


def no_secret(obj: dict, secret: str) -> None:
    text = str(obj)
    assert "secret" not in obj and secret not in text
    assert hashlib.sha256(secret.encode()).hexdigest() not in text


async def test_create_key_shows_the_secret_once(admin, project):
    proj = await project()
    key = ok(await admin.post("/keys", json={"project_id": proj["id"], **FULL}), 201)
    secret = key["secret"]
    assert secret.startswith("tf-") and len(secret) > 30 and key["prefix"] == secret[:10]
    assert key["id"].startswith("key_") and key["account_id"] == proj["account_id"] and key["status"] == "active"
    for field, value in FULL.items():
        assert key[field] == value, field
    got = ok(await admin.get(f"/keys/{key['id']}"), 200)
    no_secret(got, secret)
    assert got == {k: v for k, v in key.items() if k != "secret"}
    for entry in await audit_of(admin, key["id"]):
        no_secret(entry, secret)


async def test_key_defaults(admin, project):
    key = ok(await admin.post("/keys", json={"project_id": (await project())["id"], "name": "k"}), 201)
    assert key["limits"] == {"daily_micros": None, "total_micros": None, "per_request_micros": None}
    assert key["allowed_models"] is None and sorted(key["allowed_route_kinds"]) == ["official", "routed"]
    assert key["fallback_policy"] == "none" and key["retry_policy"]["max_attempts"] >= 1


async def test_patch_key_changes_only_what_was_sent(admin, project):
    key = ok(await admin.post("/keys", json={"project_id": (await project())["id"], **FULL}))
    patched = ok(await admin.patch(f"/keys/{key['id']}", json={
        "limits": {"daily_micros": None}, "allowed_models": None, "fallback_policy": "any_bucket"}), 200)
    assert patched["limits"] == {**FULL["limits"], "daily_micros": None}
    assert patched["allowed_models"] is None and patched["fallback_policy"] == "any_bucket"
    assert patched["retry_policy"] == FULL["retry_policy"] and patched["name"] == "ci"
    assert ok(await admin.get(f"/keys/{key['id']}")) == patched


async def test_patched_per_request_limit_applies_to_the_next_request(admin, client, tenant):
    t = await tenant()
    ok(await admin.patch(f"/keys/{t.key['id']}", json={"limits": {"per_request_micros": 1}}))
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 402 and r.json()["error"]["code"] == "spend_limit_exceeded", r.text


async def test_revoke_is_final_and_idempotent(admin, project):
    key = ok(await admin.post("/keys", json={"project_id": (await project())["id"], "name": "k"}))
    revoked = ok(await admin.post(f"/keys/{key['id']}/revoke"), 200)
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    again = ok(await admin.post(f"/keys/{key['id']}/revoke"), 200)
    assert again == revoked
    err(await admin.patch(f"/keys/{key['id']}", json={"name": "back"}), 409, "key_revoked", named=False)
    assert ok(await admin.get(f"/keys/{key['id']}")) == revoked
    assert [e["action"] for e in await audit_of(admin, key["id"])] == ["key.create", "key.revoke"]


@pytest.mark.parametrize(("change", "field"), [
    ({"project_id": None}, "project_id"),
    ({"name": ""}, "name"),
    ({"limits": {"per_request_micros": -1}}, "limits.per_request_micros"),
    ({"limits": {"hourly_micros": 1}}, "limits.hourly_micros"),
    ({"min_balance_micros": "high"}, "min_balance_micros"),
    ({"allowed_models": "gpt-x"}, "allowed_models"),
    ({"allowed_route_kinds": ["cheap"]}, "allowed_route_kinds.0"),
    ({"retry_policy": {"max_attempts": 0}}, "retry_policy.max_attempts"),
    ({"retry_policy": {"retry_on": ["always"]}}, "retry_policy.retry_on.0"),
    ({"retry_policy": {"backoff_ms": -1}}, "retry_policy.backoff_ms"),
    ({"fallback_policy": "sometimes"}, "fallback_policy"),
    ({"secret": "tf-mine"}, "secret"),
])
async def test_bad_key_is_400(admin, project, change, field):
    body = {"project_id": (await project())["id"], "name": "k", **change}
    body = {k: v for k, v in body.items() if v is not None}
    err(await admin.post("/keys", json=body), 400, "invalid_request", field)


@pytest.mark.parametrize(("body", "field"), [
    ({"limits": {"total_micros": -5}}, "limits.total_micros"),
    ({"project_id": "proj_other"}, "project_id"),
    ({"status": "active"}, "status"),
    ({"fallback_policy": 1}, "fallback_policy"),
])
async def test_bad_key_patch_is_400_and_changes_nothing(admin, project, body, field):
    key = ok(await admin.post("/keys", json={"project_id": (await project())["id"], **FULL}))
    err(await admin.patch(f"/keys/{key['id']}", json=body), 400, "invalid_request", field)
    assert ok(await admin.get(f"/keys/{key['id']}")) == {k: v for k, v in key.items() if k != "secret"}


async def test_unknown_key_ids_are_404(admin):
    for r, field in [
        (await admin.post("/keys", json={"project_id": "proj_nope", "name": "k"}), "project_id"),
        (await admin.get("/keys/key_nope"), "key_id"),
        (await admin.patch("/keys/key_nope", json={"name": "k"}), "key_id"),
        (await admin.post("/keys/key_nope/revoke"), "key_id"),
    ]:
        assert "nope" in err(r, 404, "not_found", field, named=False)["message"]
