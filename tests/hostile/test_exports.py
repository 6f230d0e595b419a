"""Exports refuse a filter PostgreSQL cannot take before the first byte: CSV and JSON Lines
streams answer 200 once their headers are out, so a value that fails in the query (a NUL
character in a text filter) must be a 400 `invalid_request` naming the filter, never a 200 that
is then cut. In-process for every export and filter, and once through a real `serve`."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ok
from tests.hostile.conftest import ADMIN_AUTH

EXPORTS = {
    "/v1/usage": ["model", "run_id", "status", "route_kind", "bucket"],
    "/v1/failures": ["model", "run_id", "status", "route_kind", "bucket"],
    "/v1/wallet/ledger": ["receipt_id", "run_id", "bucket"],
    "/admin/v1/usage": ["account_id", "model", "run_id", "status", "route_kind", "bucket"],
}
CASES = [(path, param, fmt) for path, params in EXPORTS.items() for param in params for fmt in ("csv", "jsonl", "json")]


@pytest.mark.parametrize(("path", "param", "fmt"), CASES)
async def test_a_filter_postgres_cannot_take_is_400_before_streaming(hclient, tenant, path, param, fmt):
    t = await tenant()
    ok(await hclient.post("/v1/chat/completions", json=t.chat(), headers=t.auth))  # at least one row
    headers = t.auth if path.startswith("/v1") else ADMIN_AUTH
    r = await hclient.get(path, params={param: "a\u0000b", "format": fmt}, headers=headers)
    assert r.status_code == 400, f"{path}?{param}=NUL&format={fmt} -> {r.status_code}: {r.text[:300]}"
    err = r.json()["error"]
    assert (err["code"], err["type"], err["param"]) == ("invalid_request", "invalid_request_error", param), err
    assert "NUL" in err["message"], err


async def test_an_export_with_good_filters_still_streams(hclient, tenant):
    t = await tenant()
    rid = ok(await hclient.post("/v1/chat/completions", json=t.chat(), headers=t.auth))["id"]
    assert rid
    r = await hclient.get("/v1/usage", params={"model": t.model, "format": "csv"}, headers=t.auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("receipt_id,") and len(lines) == 2, r.text
    r = await hclient.get("/v1/usage", params={"model": "none-such", "format": "jsonl"}, headers=t.auth)
    assert r.status_code == 200 and r.text == ""


def test_a_nul_filter_through_a_real_server_is_a_whole_400(live_gateway):
    live = live_gateway
    t = live.tenant()
    with httpx.Client(base_url=live.base, headers=t.auth, timeout=30) as c:
        for path in ("/v1/usage", "/v1/failures", "/v1/wallet/ledger"):
            for fmt in ("csv", "jsonl"):
                r = c.get(path, params={"run_id": "x\u0000", "format": fmt})
                assert r.status_code == 400, (path, fmt, r.status_code, r.text[:300])
                assert r.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
@pytest.mark.parametrize(("param", "value"), [("since", "0001-01-01T00:00:00+05:00"),
                                              ("until", "9999-12-31T23:59:59-05:00")])
async def test_a_time_outside_utc_is_400(hclient, tenant, fmt, param, value):
    """A time whose UTC form does not exist (year 0, year 10000) cannot be sent to PostgreSQL."""
    t = await tenant()
    for path, headers in (("/v1/usage", t.auth), ("/v1/failures", t.auth), ("/admin/v1/usage", ADMIN_AUTH)):
        r = await hclient.get(path, params={param: value, "format": fmt}, headers=headers)
        assert r.status_code == 400, f"{path}?{param}={value}&format={fmt} -> {r.status_code}: {r.text[:300]}"
        assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("invalid_request", param)
