"""Helpers of the admin API tests: the error envelope, audit lookups, small object factories."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import MOCK_BASE, PRICE, ok

ENVELOPE = {"message", "type", "code", "param"}


def err(r: httpx.Response, status: int, code: str, field: str | None = None, *, named: bool = True) -> dict:
    """Assert an error in OpenAI's envelope; with `field`, `param` names it (and so does the message,
    unless `named` is false: a missing id or a refused amount is named by its value instead)."""
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:500]}"
    e = r.json()["error"]
    assert ENVELOPE <= e.keys(), e
    assert e["code"] == code, e
    assert e["message"], e
    if field is not None:
        assert e["param"] == field, e
        assert not named or field in e["message"], e
    return e


def uid() -> str:
    return uuid.uuid4().hex[:10]


async def audit_of(admin: httpx.AsyncClient, target_id: str) -> list[dict]:
    """Audit entries of one target, oldest first."""
    return list(reversed(ok(await admin.get("/audit", params={"target_id": target_id, "limit": 500}))["data"]))


async def balances(admin: httpx.AsyncClient, account_id: str) -> dict:
    return ok(await admin.get(f"/accounts/{account_id}"))["balances"]


def route_body(**over) -> dict:
    body = {"model": "m-" + uid(), "kind": "official", "base_url": MOCK_BASE, "upstream_model": "ok",
            "upstream_api_key": "sk-upstream-" + uid(), "price": PRICE,
            "failed_request_charge": {"mode": "none"}, "timeout_s": 30, "priority": 1, "enabled": True}
    body.update(over)
    return body


@pytest.fixture
def account(admin):
    """Factory: a fresh account, its buckets topped up as asked."""

    async def make(credit: int = 0, routed: int = 0) -> dict:
        acct = ok(await admin.post("/accounts", json={"name": "acct-" + uid()}))
        for bucket, amount in (("credit", credit), ("routed", routed)):
            if amount:
                ok(await admin.post(f"/accounts/{acct['id']}/topups",
                                    json={"bucket": bucket, "amount_micros": amount, "reference": uid()}))
        return acct

    return make


@pytest.fixture
def project(admin, account):
    """Factory: a project (of a fresh account unless one is given)."""

    async def make(account_id: str | None = None, **limits) -> dict:
        account_id = account_id or (await account())["id"]
        return ok(await admin.post("/projects", json={"account_id": account_id, "name": "p-" + uid(),
                                                      "limits": limits}))

    return make
