"""Every view of money agrees: usage, failures, wallet ledger, exports, price snapshots."""

import csv
import io

import orjson

from tests.conftest import ok


async def _traffic(client, t):
    for mt in (1, 2, 3):
        ok(await client.post("/v1/chat/completions", json=t.chat(max_tokens=mt), headers=t.auth))
    ok(await client.post("/v1/chat/completions", json=t.chat(max_tokens=4),
                         headers={**t.auth, "X-TF-Route-Preference": "routed"}))


async def test_usage_csv_and_jsonl_sum_to_the_wallets_spend(client, tenant):
    t = await tenant()
    await _traffic(client, t)
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    spent = sum(10_000_000 - b["posted_micros"] for b in w["buckets"].values())
    r = await client.get("/v1/usage", params={"format": "csv"}, headers=t.auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0])[:10] == ["receipt_id", "created_at", "model", "route_kind", "bucket", "status",
                                  "prompt_tokens", "completion_tokens", "charged_micros", "run_id"]
    assert len(rows) == 4 and sum(int(x["charged_micros"]) for x in rows) == spent == w["key_spend_micros"]["total"]
    lines = (await client.get("/v1/usage", params={"format": "jsonl"}, headers=t.auth)).text.splitlines()
    assert sum(orjson.loads(x)["charged_micros"] for x in lines) == spent
    by_bucket = {}
    for x in rows:
        by_bucket[x["bucket"]] = by_bucket.get(x["bucket"], 0) + int(x["charged_micros"])
    assert by_bucket == {b: 10_000_000 - v["posted_micros"] for b, v in w["buckets"].items()}


async def test_usage_filters_and_cursor_paging(client, tenant):
    t = await tenant()
    await _traffic(client, t)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = ok(await client.get("/v1/usage", params=params, headers=t.auth))
        seen += [r["receipt_id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 4
    routed = ok(await client.get("/v1/usage", params={"route_kind": "routed"}, headers=t.auth))["data"]
    assert [r["bucket"] for r in routed] == ["routed"]
    assert ok(await client.get("/v1/usage", params={"status": "failed"}, headers=t.auth))["data"] == []
    assert (await client.get("/v1/usage", params={"status": "nope"}, headers=t.auth)).status_code == 400
    assert (await client.get("/v1/usage", params={"cursor": "garbage!"}, headers=t.auth)).status_code == 400
    assert (await client.get("/v1/usage", params={"format": "xml"}, headers=t.auth)).status_code == 400
    future = ok(await client.get("/v1/usage", params={"since": "2999-01-01T00:00:00Z"}, headers=t.auth))
    assert future["data"] == []


async def test_wallet_ledger_running_balance_and_csv(client, tenant):
    t = await tenant()
    await _traffic(client, t)
    entries = ok(await client.get("/v1/wallet/ledger", params={"limit": 500}, headers=t.auth))["data"]
    by_account: dict = {}
    for e in reversed(entries):  # oldest first: each balance is the previous plus the amount
        key = (e["bucket"], e["account"])
        prev = by_account.get(key, 0)
        assert e["balance_after_micros"] == prev + e["amount_micros"], e
        by_account[key] = e["balance_after_micros"]
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    for b, v in w["buckets"].items():
        assert by_account[(b, "wallet")] == v["available_micros"] and by_account.get((b, "hold"), 0) == 0
    r = await client.get("/v1/wallet/ledger", params={"format": "csv"}, headers=t.auth)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == len(entries) and list(rows[0])[:9] == [
        "transfer_id", "created_at", "bucket", "kind", "amount_micros", "balance_after_micros", "receipt_id",
        "attempt", "run_id"]


async def test_price_change_keeps_old_receipts_costs(client, admin, tenant):
    t = await tenant()
    r1 = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    old = ok(await client.get(f"/v1/receipts/{r1.headers['x-tf-receipt-id']}", headers=t.auth))
    route = t.routes["official"]
    new = ok(await admin.patch(f"/routes/{route['id']}", json={"price": {"input_per_mtok": 2_000_000,
                                                                           "output_per_mtok": 4_000_000}}))
    assert new["price"]["id"] != route["price"]["id"]
    import asyncio

    await asyncio.sleep(1.1)  # route caches live one second
    r2 = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    assert r2.headers["x-tf-charged-micros"] == "26"
    again = ok(await client.get(f"/v1/receipts/{old['id']}", headers=t.auth))
    assert again == old and again["attempts"][0]["price_snapshot_id"] == route["price"]["id"]
    snaps = ok(await admin.get("/price-snapshots", params={"route_id": route["id"]}))["data"]
    assert [(s["input_per_mtok"], s["output_per_mtok"]) for s in snaps] == [(2_000_000, 4_000_000),
                                                                          (1_000_000, 2_000_000)]
