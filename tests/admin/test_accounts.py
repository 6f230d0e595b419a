"""Accounts, top-ups, adjustments and projects: happy paths, money and refusals."""

import pytest

from tests.admin.conftest import audit_of, balances, err, uid
from tests.conftest import ok

ZERO = {"posted_micros": 0, "held_micros": 0, "available_micros": 0}


def bucket(posted: int) -> dict:
    return {"posted_micros": posted, "held_micros": 0, "available_micros": posted}


async def test_create_and_get_account(admin):
    r = await admin.post("/accounts", json={"name": "  Acme  "})
    acct = ok(r, 201)
    assert acct["id"].startswith("acct_") and acct["name"] == "Acme" and acct["created_at"]
    assert acct["balances"] == {"credit": ZERO, "routed": ZERO}
    assert ok(await admin.get(f"/accounts/{acct['id']}"), 200) == acct


async def test_topup_credits_one_bucket(admin, account):
    acct = await account()
    r = await admin.post(f"/accounts/{acct['id']}/topups",
                         json={"bucket": "routed", "amount_micros": 2_500_000, "reference": "inv-1"})
    t = ok(r, 201)
    assert t["transfer_id"].startswith("tr_") and t["amount_micros"] == 2_500_000 and t["replayed"] is False
    assert t["balances"] == {"credit": ZERO, "routed": bucket(2_500_000)}
    assert await balances(admin, acct["id"]) == t["balances"]


async def test_topup_reference_is_idempotent(admin, account):
    acct = await account()
    body = {"bucket": "credit", "amount_micros": 700, "reference": "inv-" + uid()}
    first = ok(await admin.post(f"/accounts/{acct['id']}/topups", json=body), 201)
    again = ok(await admin.post(f"/accounts/{acct['id']}/topups", json=body), 200)
    assert again["transfer_id"] == first["transfer_id"] and again["replayed"] is True
    assert (await balances(admin, acct["id"]))["credit"] == bucket(700)
    other = await account()  # a reference is per account
    ok(await admin.post(f"/accounts/{other['id']}/topups", json=body), 201)


@pytest.mark.parametrize("change", [{"amount_micros": 701}, {"bucket": "routed"}])
async def test_reused_reference_with_other_terms_is_409(admin, account, change):
    acct = await account()
    body = {"bucket": "credit", "amount_micros": 700, "reference": "inv-" + uid()}
    ok(await admin.post(f"/accounts/{acct['id']}/topups", json=body), 201)
    r = await admin.post(f"/accounts/{acct['id']}/topups", json={**body, **change})
    err(r, 409, "conflict", "reference")
    assert await balances(admin, acct["id"]) == {"credit": bucket(700), "routed": ZERO}


async def test_positive_and_negative_adjustments(admin, account):
    acct = await account(credit=1_000)
    up = ok(await admin.post(f"/accounts/{acct['id']}/adjustments",
                             json={"bucket": "credit", "amount_micros": 250, "reason": "goodwill"}), 201)
    assert up["transfer_id"].startswith("tr_") and up["balances"]["credit"] == bucket(1_250)
    down = ok(await admin.post(f"/accounts/{acct['id']}/adjustments",
                               json={"bucket": "credit", "amount_micros": -1_250, "reason": "refund"}), 201)
    assert down["amount_micros"] == -1_250 and down["transfer_id"] != up["transfer_id"]
    assert await balances(admin, acct["id"]) == {"credit": ZERO, "routed": ZERO}


async def test_negative_adjustment_beyond_balance_changes_nothing(admin, account):
    acct = await account(credit=1_000, routed=5_000)
    before, trail = await balances(admin, acct["id"]), await audit_of(admin, acct["id"])
    r = await admin.post(f"/accounts/{acct['id']}/adjustments",
                         json={"bucket": "credit", "amount_micros": -1_001, "reason": "too much"})
    e = err(r, 400, "invalid_request", "amount_micros", named=False)
    assert "1001" in e["message"] and "1000" in e["message"]  # says what was asked and what there is
    assert await balances(admin, acct["id"]) == before
    assert await audit_of(admin, acct["id"]) == trail


async def test_buckets_are_separate(admin, account):
    acct = await account(routed=5_000)
    r = await admin.post(f"/accounts/{acct['id']}/adjustments",
                         json={"bucket": "credit", "amount_micros": -1, "reason": "wrong bucket"})
    err(r, 400, "invalid_request", "amount_micros", named=False)
    assert await balances(admin, acct["id"]) == {"credit": ZERO, "routed": bucket(5_000)}


async def test_project_create_get_patch_limits(admin, account):
    acct = await account()
    proj = ok(await admin.post("/projects", json={"account_id": acct["id"], "name": "web",
                                                  "limits": {"daily_micros": 100, "total_micros": 1_000}}), 201)
    assert proj["id"].startswith("proj_") and proj["account_id"] == acct["id"]
    assert proj["limits"] == {"daily_micros": 100, "total_micros": 1_000}
    patched = ok(await admin.patch(f"/projects/{proj['id']}", json={"limits": {"daily_micros": None}}), 200)
    assert patched["limits"] == {"daily_micros": None, "total_micros": 1_000}  # only what was sent
    patched = ok(await admin.patch(f"/projects/{proj['id']}", json={"name": "api", "limits": {"total_micros": 5}}))
    assert patched["name"] == "api" and patched["limits"] == {"daily_micros": None, "total_micros": 5}
    assert ok(await admin.get(f"/projects/{proj['id']}")) == patched
    no_limits = ok(await admin.post("/projects", json={"account_id": acct["id"], "name": "free"}), 201)
    assert no_limits["limits"] == {"daily_micros": None, "total_micros": None}


async def test_project_limit_patch_applies_to_the_next_request(admin, client, tenant):
    t = await tenant()
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    ok(await admin.patch(f"/projects/{t.project['id']}", json={"limits": {"total_micros": 20}}))
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r.status_code == 402 and r.json()["error"]["code"] == "spend_limit_exceeded", r.text
    assert "project" in r.json()["error"]["message"]


BAD_MONEY = [
    ({"amount_micros": 0}, "amount_micros"),
    ({"amount_micros": -5}, "amount_micros"),
    ({"amount_micros": 1.5}, "amount_micros"),
    ({"amount_micros": "lots"}, "amount_micros"),
    ({"amount_micros": None}, "amount_micros"),
    ({"amount_micros": 10**16}, "amount_micros"),
    ({"bucket": "gold"}, "bucket"),
    ({"reference": ""}, "reference"),
    ({"extra": 1}, "extra"),
]


@pytest.mark.parametrize(("change", "field"), BAD_MONEY)
async def test_bad_topup_is_400_and_changes_nothing(admin, account, change, field):
    acct = await account()
    body = {"bucket": "credit", "amount_micros": 100, "reference": uid(), **change}
    err(await admin.post(f"/accounts/{acct['id']}/topups", json=body), 400, "invalid_request", field)
    assert await balances(admin, acct["id"]) == {"credit": ZERO, "routed": ZERO}


@pytest.mark.parametrize("missing", ["bucket", "amount_micros", "reference"])
async def test_topup_missing_field_is_400(admin, account, missing):
    acct = await account()
    body = {"bucket": "credit", "amount_micros": 100, "reference": uid()}
    del body[missing]
    err(await admin.post(f"/accounts/{acct['id']}/topups", json=body), 400, "invalid_request", missing)


@pytest.mark.parametrize("amount", ["100", True, 100.0])
async def test_money_must_be_a_json_integer(admin, account, amount):
    """No floats (or strings, or booleans) for money (SPEC §2): a wrong type is a 400."""
    acct = await account()
    body = {"bucket": "credit", "amount_micros": amount, "reference": uid()}
    err(await admin.post(f"/accounts/{acct['id']}/topups", json=body), 400, "invalid_request", "amount_micros")
    assert await balances(admin, acct["id"]) == {"credit": ZERO, "routed": ZERO}


@pytest.mark.parametrize(("body", "field"), [
    ({"bucket": "credit", "reason": "x"}, "amount_micros"),
    ({"bucket": "credit", "amount_micros": 5}, "reason"),
    ({"bucket": "credit", "amount_micros": 5, "reason": ""}, "reason"),
    ({"bucket": "both", "amount_micros": 5, "reason": "x"}, "bucket"),
    ({"bucket": "credit", "amount_micros": -(10**16), "reason": "x"}, "amount_micros"),
    ({"bucket": "credit", "amount_micros": 5, "reason": "x", "by": "me"}, "by"),
])
async def test_bad_adjustment_is_400(admin, account, body, field):
    acct = await account(credit=10)
    err(await admin.post(f"/accounts/{acct['id']}/adjustments", json=body), 400, "invalid_request", field)
    assert (await balances(admin, acct["id"]))["credit"] == bucket(10)


@pytest.mark.parametrize(("body", "field"), [
    ({}, "name"),
    ({"name": "   "}, "name"),
    ({"name": 5}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "a", "owner": "b"}, "owner"),
])
async def test_bad_account_is_400(admin, body, field):
    err(await admin.post("/accounts", json=body), 400, "invalid_request", field)


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "p"}, "account_id"),
    ({"account_id": "ACCT", "name": "p", "limits": {"daily_micros": -1}}, "limits.daily_micros"),
    ({"account_id": "ACCT", "name": "p", "limits": {"total_micros": "a lot"}}, "limits.total_micros"),
    ({"account_id": "ACCT", "name": "p", "limits": {"monthly_micros": 5}}, "limits.monthly_micros"),
    ({"account_id": "ACCT", "name": "p", "limits": 5}, "limits"),
    ({"account_id": "ACCT"}, "name"),
])
async def test_bad_project_is_400(admin, account, body, field):
    acct = await account()
    body = {k: (acct["id"] if v == "ACCT" else v) for k, v in body.items()}
    err(await admin.post("/projects", json=body), 400, "invalid_request", field)


@pytest.mark.parametrize(("body", "field"), [
    ({"limits": {"total_micros": -1}}, "limits.total_micros"),
    ({"name": ""}, "name"),
    ({"account_id": "acct_other"}, "account_id"),
])
async def test_bad_project_patch_is_400_and_changes_nothing(admin, project, body, field):
    proj = await project(total_micros=7)
    err(await admin.patch(f"/projects/{proj['id']}", json=body), 400, "invalid_request", field)
    assert ok(await admin.get(f"/projects/{proj['id']}")) == proj


async def test_unknown_ids_are_404(admin, account):
    acct = await account()
    for r, field in [
        (await admin.get("/accounts/acct_nope"), "account_id"),
        (await admin.post("/accounts/acct_nope/topups",
                          json={"bucket": "credit", "amount_micros": 1, "reference": "r"}), "account_id"),
        (await admin.post("/accounts/acct_nope/adjustments",
                          json={"bucket": "credit", "amount_micros": 1, "reason": "r"}), "account_id"),
        (await admin.post("/projects", json={"account_id": "acct_nope", "name": "p"}), "account_id"),
        (await admin.get("/projects/proj_nope"), "project_id"),
        (await admin.patch("/projects/proj_nope", json={"name": "x"}), "project_id"),
    ]:
        e = err(r, 404, "not_found", field, named=False)
        assert "nope" in e["message"]
    assert await balances(admin, acct["id"]) == {"credit": ZERO, "routed": ZERO}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"null", b""])
async def test_body_that_is_not_an_object_is_400(admin, raw):
    r = await admin.post("/accounts", content=raw, headers={"Content-Type": "application/json"})
    err(r, 400, "invalid_request")
