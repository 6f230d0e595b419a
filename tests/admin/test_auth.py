"""Every admin endpoint refuses a missing or wrong admin token with 401 in the error envelope,
before it looks at the body, and writes nothing."""

import pytest

from tests.admin.conftest import ENVELOPE
from tests.conftest import ADMIN, ok

ENDPOINTS = [
    ("POST", "/accounts"), ("GET", "/accounts/acct_x"), ("POST", "/accounts/acct_x/topups"),
    ("POST", "/accounts/acct_x/adjustments"), ("POST", "/projects"), ("GET", "/projects/proj_x"),
    ("PATCH", "/projects/proj_x"), ("POST", "/keys"), ("GET", "/keys/key_x"), ("PATCH", "/keys/key_x"),
    ("POST", "/keys/key_x/revoke"), ("POST", "/routes"), ("GET", "/routes"), ("GET", "/routes/route_x"),
    ("PATCH", "/routes/route_x"), ("GET", "/price-snapshots"), ("GET", "/audit"), ("GET", "/ledger/verify"),
    ("GET", "/receipts/rcpt_x"), ("GET", "/usage"),
]
BAD_AUTH = {
    "missing": {},
    "wrong token": {"Authorization": "Bearer adm-wrong"},
    "token with a suffix": {"Authorization": f"Bearer {ADMIN}x"},
    "not bearer": {"Authorization": f"Basic {ADMIN}"},
    "empty bearer": {"Authorization": "Bearer "},
    "a client key": {"Authorization": "Bearer tf-not-an-admin-token"},
}


@pytest.mark.parametrize("how", list(BAD_AUTH))
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_admin_refuses_bad_token(client, method, path, how):
    body = {} if method in ("POST", "PATCH") else None
    r = await client.request(method, "/admin/v1" + path, json=body, headers=BAD_AUTH[how])
    assert r.status_code == 401, r.text
    e = r.json()["error"]
    assert ENVELOPE <= e.keys() and e["type"] == "authentication_error"
    assert "admin token" in e["message"]


async def test_refused_change_writes_nothing(client, admin, account):
    await account()
    newest = ok(await admin.get("/audit", params={"limit": 1}))["data"][0]["seq"]
    r = await client.post("/admin/v1/accounts", json={"name": "intruder"},
                          headers={"Authorization": "Bearer adm-wrong"})
    assert r.status_code == 401
    assert ok(await admin.get("/audit", params={"limit": 1}))["data"][0]["seq"] == newest
