"""One request paid from two buckets: its failed first attempt is charged on `credit` (the route's
flat failed-request charge), its fallback succeeds on `routed` (fallback_policy any_bucket). Every
view (usage JSON and CSV, the usage summary and the overview's chart, failures, the receipt's
header, the run receipt, the wallet ledger) shows each bucket's share, and each equals what the
ledger's transfers took from that bucket, to the micro."""

from __future__ import annotations

import csv
import io

from sqlalchemy import text

from tests.conftest import ok
from tokens_forge.console import directory

FLAT = 100


async def ledger_taken(app, account_id: str, receipt_id: str) -> dict[str, int]:
    """Straight from the transfers table: per bucket, how much the account's wallet and hold
    accounts lost over the receipt's transfers (reserve and release cancel out; what is left is
    the charge)."""
    async with app.state.engine.connect() as conn:
        rows = (await conn.execute(text("""
            SELECT t.bucket,
                   sum(CASE WHEN d.account_id = :a AND d.kind IN ('wallet', 'hold') THEN t.amount ELSE 0 END)
                 - sum(CASE WHEN c.account_id = :a AND c.kind IN ('wallet', 'hold') THEN t.amount ELSE 0 END) AS lost
              FROM transfers t
              JOIN ledger_accounts d ON d.id = t.debit_account_id
              JOIN ledger_accounts c ON c.id = t.credit_account_id
             WHERE t.receipt_id = :r GROUP BY t.bucket"""), {"a": account_id, "r": receipt_id})).all()
    return {r.bucket: int(r.lost) for r in rows}


async def test_one_request_paid_from_two_buckets_reads_the_same_everywhere(app, client, tenant):
    t = await tenant(official="fail500", official_charge={"mode": "flat", "flat_micros": FLAT},
                     key={"fallback_policy": "any_bucket"})
    run = ok(await client.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 100_000},
                               headers=t.auth))
    r = await client.post("/v1/chat/completions", json=t.chat(), headers={**t.auth, "X-TF-Run-Id": run["id"]})
    ok(r)
    rid = r.headers["x-tf-receipt-id"]
    truth = await ledger_taken(app, t.account["id"], rid)
    assert truth["credit"] == FLAT and truth["routed"] > 0
    assert int(r.headers["x-tf-charged-micros"]) == sum(truth.values())

    # the receipt's header names each bucket's share
    receipt = ok(await client.get(f"/v1/receipts/{rid}", headers=t.auth))
    assert receipt["charged_by_bucket"] == truth
    assert [(a["bucket"], a["charged_micros"]) for a in receipt["attempts"]] == [
        ("credit", truth["credit"]), ("routed", truth["routed"])]

    # usage: one row per receipt and paying bucket, in JSON and CSV
    rows = ok(await client.get("/v1/usage", headers=t.auth))["data"]
    assert {(x["bucket"], x["route_kind"]): x["charged_micros"] for x in rows if x["receipt_id"] == rid} == {
        ("credit", "official"): truth["credit"], ("routed", "routed"): truth["routed"]}
    assert {x["bucket"]: x["completion_tokens"] for x in rows} == {"credit": 0, "routed": 5}
    csv_rows = list(csv.DictReader(io.StringIO((await client.get("/v1/usage", params={"format": "csv"},
                                                                 headers=t.auth)).text)))
    assert {x["bucket"]: int(x["charged_micros"]) for x in csv_rows if x["receipt_id"] == rid} == truth
    credit_only = ok(await client.get("/v1/usage", params={"bucket": "credit"}, headers=t.auth))["data"]
    assert [(x["receipt_id"], x["charged_micros"]) for x in credit_only] == [(rid, FLAT)]
    paged = ok(await client.get("/v1/usage", params={"limit": 1}, headers=t.auth))
    second = ok(await client.get("/v1/usage", params={"limit": 1, "cursor": paged["next_cursor"]}, headers=t.auth))
    assert {paged["data"][0]["bucket"], second["data"][0]["bucket"]} == {"credit", "routed"}
    assert second["next_cursor"] is None

    # the overview's data: the usage summary per day and per key, and the console's chart
    by_day = ok(await client.get("/v1/usage/summary", params={"by": "day"}, headers=t.auth))["data"]
    assert {x["bucket"]: x["charged_micros"] for x in by_day} == truth
    by_key = ok(await client.get("/v1/usage/summary", params={"by": "key"}, headers=t.auth))["data"]
    assert {(x["group"], x["bucket"]): x["charged_micros"] for x in by_key} == {
        (t.key["id"], b): v for b, v in truth.items()}
    async with app.state.engine.connect() as conn:
        days = await directory.daily_spend(conn, t.account["id"])
    assert {b: days[-1][b] for b in truth} == truth

    # failures: the failed attempt and what the ledger charged for it
    [failure] = ok(await client.get("/v1/failures", headers=t.auth))["data"]
    assert (failure["bucket"], failure["attempt"], failure["charged_micros"]) == ("credit", 1, FLAT)

    # the run receipt, per bucket
    totals = ok(await client.get(f"/v1/runs/{run['id']}/receipt", headers=t.auth))["totals"]
    assert {b: v["charged_micros"] for b, v in totals["by_bucket"].items()} == truth
    assert totals["matches_ledger"] is True and totals["charged_micros"] == sum(truth.values())
    assert totals["failed_request_charges_micros"] == FLAT

    # the wallet ledger: the wallet buckets' own entries (reserve, release), one per transfer; what
    # they took per bucket is the charge, and each balance follows from the one before
    entries = ok(await client.get("/v1/wallet/ledger", params={"receipt_id": rid}, headers=t.auth))["data"]
    assert len({e["transfer_id"] for e in entries}) == len(entries)
    assert {e["account"] for e in entries} == {"wallet"} and {e["kind"] for e in entries} == {"reserve", "release"}
    assert {b: -sum(e["amount_micros"] for e in entries if e["bucket"] == b) for b in truth} == truth
    with_holds = ok(await client.get("/v1/wallet/ledger", params={"receipt_id": rid, "include": "holds"},
                                     headers=t.auth))["data"]
    settles = [e for e in with_holds if e["kind"] in ("settle", "failure_charge")]
    assert {e["bucket"]: -e["hold_amount_micros"] for e in settles} == truth
    assert all(e["amount_micros"] == 0 and e["account"] == "hold" for e in settles)
    wallet = ok(await client.get("/v1/wallet", headers=t.auth))
    assert {b: 10_000_000 - v["posted_micros"] for b, v in wallet["buckets"].items()} == truth


async def test_wallet_ledger_rows_are_the_wallets_own_running_balance(client, tenant):
    t = await tenant()
    for kind in ("official", "routed", "official"):
        ok(await client.post("/v1/chat/completions", json=t.chat(), headers={**t.auth, "X-TF-Route-Preference": kind}))
    for include in (None, "holds"):
        params = {"limit": 500, **({"include": include} if include else {})}
        entries = ok(await client.get("/v1/wallet/ledger", params=params, headers=t.auth))["data"]
        assert len({e["transfer_id"] for e in entries}) == len(entries)  # never both legs of a transfer
        balance = {"credit": 0, "routed": 0}
        for e in reversed(entries):
            assert e["balance_after_micros"] == balance[e["bucket"]] + e["amount_micros"], e
            balance[e["bucket"]] = e["balance_after_micros"]
        wallet = ok(await client.get("/v1/wallet", headers=t.auth))
        assert balance == {b: v["available_micros"] for b, v in wallet["buckets"].items()}
        assert ("hold_balance_after_micros" in entries[0]) is (include == "holds")
    assert (await client.get("/v1/wallet/ledger", params={"include": "everything"}, headers=t.auth)).status_code == 400
