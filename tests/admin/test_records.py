"""Admin views across accounts: receipts, usage, and the ledger verifier."""

import csv
import io

import pytest

from tests.admin.conftest import err
from tests.conftest import ok

SPEC_USAGE = ["receipt_id", "created_at", "model", "route_kind", "bucket", "status", "prompt_tokens",
              "completion_tokens", "charged_micros", "run_id"]


async def chat(client, t, **over):
    r = await client.post("/v1/chat/completions", json=t.chat(**over), headers=t.auth)
    return r, r.headers.get("x-tf-receipt-id")


async def test_admin_receipt_matches_the_ledger(client, admin, tenant):
    t = await tenant()
    r, rid = await chat(client, t)
    ok(r)
    rc = ok(await admin.get(f"/receipts/{rid}"), 200)
    assert rc["id"] == rid and rc["account_id"] == t.account["id"] and rc["key_id"] == t.key["id"]
    assert rc["status"] == "succeeded" and rc["total_charged_micros"] == 13 == int(r.headers["x-tf-charged-micros"])
    [attempt] = rc["attempts"]
    assert attempt["route_id"] == t.routes["official"]["id"] and attempt["outcome"] == "success"
    assert attempt["price_snapshot_id"] == t.routes["official"]["price"]["id"]
    assert attempt["charged_micros"] == 13 and attempt["reserved_micros"] >= 13
    assert len(attempt["transfer_ids"]) == 3  # reserve, settle, release
    entries = ok(await client.get("/v1/wallet/ledger", params={"receipt_id": rid, "include": "holds"},
                                  headers=t.auth))["data"]
    assert [e["transfer_id"] for e in entries] == sorted(attempt["transfer_ids"], key=lambda x: int(x[3:]), reverse=True)  # one row each
    assert sum(e["amount_micros"] for e in entries) == -13  # what the wallet bucket lost
    assert sum(e["hold_amount_micros"] for e in entries) == 0  # the hold is resolved


async def test_admin_receipt_of_a_refused_request(client, admin, tenant):
    t = await tenant(key={"limits": {"per_request_micros": 1}})
    r, rid = await chat(client, t)
    assert r.status_code == 402 and rid
    rc = ok(await admin.get(f"/receipts/{rid}"))
    assert rc["status"] == "rejected" and rc["reason"] and rc["total_charged_micros"] == 0 and rc["attempts"] == []


async def test_admin_usage_spans_accounts(client, admin, tenant):
    a, b = await tenant(), await tenant()
    _, ra = await chat(client, a)
    _, rb = await chat(client, b, max_tokens=2)
    rows = ok(await admin.get("/usage", params={"limit": 500}))["data"]
    assert {ra, rb} <= {row["receipt_id"] for row in rows}
    only_b = ok(await admin.get("/usage", params={"account_id": b.account["id"]}))
    assert [row["receipt_id"] for row in only_b["data"]] == [rb] and only_b["next_cursor"] is None
    row = only_b["data"][0]
    assert list(row)[:10] == SPEC_USAGE
    assert (row["model"], row["route_kind"], row["bucket"], row["status"]) == (b.model, "official", "credit",
                                                                               "succeeded")
    assert (row["completion_tokens"], row["charged_micros"]) == (2, 3 + 2 * 2)


async def test_admin_usage_pages_and_exports(client, admin, tenant):
    t = await tenant()
    ids = [(await chat(client, t))[1] for _ in range(3)]
    seen, cursor = [], None
    while True:
        params = {"account_id": t.account["id"], "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = ok(await admin.get("/usage", params=params))
        seen += [row["receipt_id"] for row in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ids[::-1]
    r = await admin.get("/usage", params={"account_id": t.account["id"], "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0][:10] == SPEC_USAGE and [line[0] for line in table[1:]] == ids[::-1]


@pytest.mark.parametrize(("params", "field"), [
    ({"route_kind": "cheap"}, "route_kind"),
    ({"bucket": "gold"}, "bucket"),
    ({"status": "fine"}, "status"),
    ({"since": "yesterday"}, "since"),
    ({"format": "xml"}, "format"),
])
async def test_bad_usage_filters_are_400(admin, params, field):
    err(await admin.get("/usage", params=params), 400, "invalid_request", field)


async def test_unknown_receipt_is_404(admin):
    err(await admin.get("/receipts/rcpt_nope"), 404, "not_found", "receipt_id", named=False)


async def test_ledger_verify_endpoint(admin, client, tenant):
    t = await tenant()
    await chat(client, t)
    v = ok(await admin.get("/ledger/verify"), 200)
    assert v["ok"] is True and len(v["checks"]) >= 8
    names = {c["name"] for c in v["checks"]}
    assert {"ledger_sums_to_zero", "accounts_match_transfers", "receipts_match_ledger"} <= names
    assert all(c["ok"] and c["detail"] for c in v["checks"])
