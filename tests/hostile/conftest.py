"""Fixtures for hostile-input tests: funded tenants made over the in-process admin API and helpers to check that a bad input changed no wallet and left the ledger whole."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from tests.conftest import ADMIN, PRICE, Tenant, ok
from tests.faults.conftest import fault_upstream  # noqa: F401 - the fault-injecting upstream, here too

LONG = os.environ.get("TF_LONG_TESTS") == "1"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
CLOSED_UPSTREAM = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: connection refused at once


async def make_tenant(admin, *, base_url: str = "http://mock.test/v1", official: str = "ok", routed: str = "ok",
                      credit: int = 10_000_000, routed_balance: int = 10_000_000, key: dict | None = None,
                      name: str | None = None) -> Tenant:
    model = "h-" + uuid.uuid4().hex[:10]
    acct = ok(await admin.post("/accounts", json={"name": name or model}))
    for bucket, amount in (("credit", credit), ("routed", routed_balance)):
        if amount:
            ok(await admin.post(f"/accounts/{acct['id']}/topups",
                                json={"bucket": bucket, "amount_micros": amount, "reference": f"{model}-{bucket}"}))
    proj = ok(await admin.post("/projects", json={"account_id": acct["id"], "name": "p", "limits": {}}))
    routes = {}
    for kind, up, prio in (("official", official, 1), ("routed", routed, 2)):
        routes[kind] = ok(await admin.post("/routes", json={
            "model": model, "kind": kind, "base_url": base_url, "upstream_model": up,
            "upstream_api_key": f"sk-upstream-secret-{kind}-{model}", "price": PRICE,
            "failed_request_charge": {"mode": "none"}, "timeout_s": 10, "priority": prio}))
    body = {"project_id": proj["id"], "name": "k",
            "retry_policy": {"max_attempts": 1, "retry_on": [], "backoff_ms": 0}, "fallback_policy": "none"}
    body.update(key or {})
    return Tenant(model, acct, proj, routes, ok(await admin.post("/keys", json=body)))


async def money_of(client, t: Tenant) -> dict:
    """What a bad input must not change: both buckets and the key's spend."""
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    return {"buckets": w["buckets"], "key_spend": w["key_spend_micros"]}


async def verify_ledger(app) -> None:
    from tokens_forge.ledger.verify import verify

    async with app.state.engine.connect() as conn:
        good, checks = await verify(conn, sweep_interval_s=60)
    assert good, [c.as_dict() for c in checks if not c.ok]


@pytest.fixture(scope="session")
async def st_tenant(admin):
    """The key schemathesis authenticates /v1 with; its routes go nowhere (connection refused)."""
    return await make_tenant(admin, base_url=CLOSED_UPSTREAM, name="schemathesis")


@pytest.fixture(scope="session")
def st_headers(st_tenant):
    return {"tenant": dict(st_tenant.auth), "admin": dict(ADMIN_AUTH)}


@pytest.fixture(scope="session")
async def hclient(app):
    """Like `client`, but an exception escaping the app becomes the 500 a real server would send
    (so a test can collect every bad answer instead of stopping at the first)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://gw.test", timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
async def hadmin(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://gw.test/admin/v1", headers=ADMIN_AUTH, timeout=60) as c:
        yield c
