"""GET /audit: every admin change has one entry (actor, action, target, before, after, when)."""

from datetime import datetime

import pytest

from tests.admin.conftest import audit_of, err, route_body
from tests.conftest import ok


def check_entry(e: dict, action: str, target_type: str, target_id: str) -> None:
    assert e["actor"] == "admin" and e["action"] == action, e
    assert e["target"] == {"type": target_type, "id": target_id}, e
    assert datetime.fromisoformat(e["created_at"]).tzinfo is not None
    if action.endswith(".create"):
        assert e["before"] is None and e["after"]["id"] == target_id
    elif action == "account.topup":  # a new transfer: nothing before it
        assert e["after"]["transfer_id"].startswith("tr_")
    else:
        assert e["before"] is not None and e["after"] is not None and e["before"] != e["after"]


async def test_every_change_is_audited(admin):
    acct = ok(await admin.post("/accounts", json={"name": "audited"}))
    a = acct["id"]
    ok(await admin.post(f"/accounts/{a}/topups", json={"bucket": "credit", "amount_micros": 900, "reference": "t1"}))
    ok(await admin.post(f"/accounts/{a}/adjustments", json={"bucket": "credit", "amount_micros": -100,
                                                            "reason": "fix"}))
    proj = ok(await admin.post("/projects", json={"account_id": a, "name": "p"}))
    ok(await admin.patch(f"/projects/{proj['id']}", json={"limits": {"daily_micros": 42}}))
    key = ok(await admin.post("/keys", json={"project_id": proj["id"], "name": "k"}))
    ok(await admin.patch(f"/keys/{key['id']}", json={"name": "k2"}))
    ok(await admin.post(f"/keys/{key['id']}/revoke"))
    route = ok(await admin.post("/routes", json=route_body()))
    ok(await admin.patch(f"/routes/{route['id']}", json={"price": {"input_per_mtok": 5, "output_per_mtok": 6}}))

    expected = {
        ("account", a): ["account.create", "account.topup", "account.adjustment"],
        ("project", proj["id"]): ["project.create", "project.update"],
        ("api_key", key["id"]): ["key.create", "key.update", "key.revoke"],
        ("route", route["id"]): ["route.create", "route.update"],
    }
    for (target_type, target_id), actions in expected.items():
        entries = await audit_of(admin, target_id)
        assert [e["action"] for e in entries] == actions
        for e, action in zip(entries, actions, strict=True):
            check_entry(e, action, target_type, target_id)

    account_trail = await audit_of(admin, a)
    assert account_trail[1]["after"]["amount_micros"] == 900 and account_trail[1]["after"]["reference"] == "t1"
    adjustment = account_trail[2]
    assert adjustment["before"]["balances"]["credit"]["available_micros"] == 900
    assert adjustment["after"]["balances"]["credit"]["available_micros"] == 800
    assert adjustment["after"]["reason"] == "fix"
    project_update = (await audit_of(admin, proj["id"]))[1]
    assert project_update["before"]["limits"]["daily_micros"] is None
    assert project_update["after"]["limits"]["daily_micros"] == 42
    key_trail = await audit_of(admin, key["id"])
    assert (key_trail[1]["before"]["name"], key_trail[1]["after"]["name"]) == ("k", "k2")
    assert key_trail[2]["after"]["status"] == "revoked"
    route_update = (await audit_of(admin, route["id"]))[1]
    assert route_update["before"]["price"]["input_per_mtok"] != route_update["after"]["price"]["input_per_mtok"]


async def test_audit_is_newest_first_and_pages(admin):
    for i in range(3):
        ok(await admin.post("/accounts", json={"name": f"page-{i}"}))
    first = ok(await admin.get("/audit", params={"limit": 2}))
    assert first["object"] == "list" and len(first["data"]) == 2 and first["next_cursor"]
    second = ok(await admin.get("/audit", params={"limit": 2, "cursor": first["next_cursor"]}))
    seqs = [e["seq"] for e in first["data"] + second["data"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4
    assert first["data"][0]["action"] == "account.create" and first["data"][0]["after"]["name"] == "page-2"


async def test_audit_filters(admin):
    acct = ok(await admin.post("/accounts", json={"name": "filtered"}))
    only = ok(await admin.get("/audit", params={"action": "account.create", "limit": 5}))["data"]
    assert only and all(e["action"] == "account.create" for e in only)
    assert only[0]["target"]["id"] == acct["id"]


@pytest.mark.parametrize("path", ["/audit", "/price-snapshots", "/usage"])
@pytest.mark.parametrize(("params", "field"), [
    ({"cursor": "not-a-cursor!"}, "cursor"),
    ({"cursor": "WzEsMiwzXQ"}, "cursor"),  # a valid encoding of the wrong shape: [1,2,3]
    ({"limit": 0}, "limit"),
    ({"limit": 501}, "limit"),
    ({"limit": "ten"}, "limit"),
])
async def test_bad_paging_is_400(admin, path, params, field):
    err(await admin.get(path, params=params), 400, "invalid_request", field)
