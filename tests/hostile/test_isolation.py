"""Tenant isolation: with its own valid key, account A reads, pages, exports, controls and spends
against every id of account B it can get hold of, and gets nothing of B's: 404s or empty lists, no
B id in any body or export, B's runs and wallet untouched, B's idempotent answer never replayed
to A. Routes are the platform's (shared by design), so route health must carry nothing that
belongs to an account."""

from __future__ import annotations

import re

from tests.conftest import ok
from tests.hostile.conftest import money_of

EXPORTS = [None, "csv", "jsonl"]


async def _b_activity(hclient, t):
    """Everything that leaves traces: a run with a request, plain and streamed answers, an
    idempotent request, and a failure."""
    run = ok(await hclient.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 1_000_000,
                                                  "name": "b-run"}, headers=t.auth))
    receipts = []
    for extra, headers in (({}, {"X-TF-Run-Id": run["id"]}), ({"stream": True}, {}),
                           ({}, {"Idempotency-Key": "shared-idem-key"})):
        r = await hclient.post("/v1/chat/completions", json=t.chat(**extra), headers={**t.auth, **headers})
        assert r.status_code == 200, r.text
        receipts.append(r.headers["x-tf-receipt-id"])
    return run, receipts


async def test_one_account_sees_nothing_of_another(hclient, hadmin, tenant):
    a = await tenant()
    b = await tenant()
    b_fail = await tenant(official="fail500", routed=None)  # B's second key... a separate account's failure
    run, receipts = await _b_activity(hclient, b)
    r = await hclient.post("/v1/chat/completions", json=b_fail.chat(), headers=b_fail.auth)
    assert r.status_code == 502
    receipts.append(r.headers["x-tf-receipt-id"])
    ok(await hclient.post("/v1/chat/completions", json=a.chat(), headers=a.auth))  # A has rows of its own
    b_money = await money_of(hclient, b)
    b_ids = {run["id"], *receipts, b.account["id"], b.project["id"], b.key["id"], b_fail.account["id"],
             b_fail.key["id"], b_fail.project["id"]}
    leaks, wrong = [], []

    def scan(label, text, sent=()):
        """B's ids in an answer to A, other than the ones A itself sent (a 404 may name them)."""
        for i in b_ids - set(sent):
            if i in text:
                leaks.append((label, i))

    # direct reads of B's objects
    for rid in receipts:
        for path in (f"/v1/receipts/{rid}",):
            r = await hclient.get(path, headers=a.auth)
            if r.status_code != 404:
                wrong.append((path, r.status_code))
            scan(path, r.text, sent=[rid])
    for suffix in ("", "/receipt"):
        r = await hclient.get(f"/v1/runs/{run['id']}{suffix}", headers=a.auth)
        if r.status_code != 404:
            wrong.append((f"runs{suffix}", r.status_code))
        scan(f"runs{suffix}", r.text, sent=[run["id"]])
    for action in ("pause", "resume", "cancel", "finish"):
        r = await hclient.post(f"/v1/runs/{run['id']}/{action}", headers=a.auth)
        if r.status_code != 404:
            wrong.append((action, r.status_code))
        scan(action, r.text, sent=[run["id"]])
    # lists and exports, filtered by B's ids or not
    filters = [{}, {"run_id": run["id"]}, {"model": b.model}, {"receipt_id": receipts[0]}]
    for path in ("/v1/usage", "/v1/failures", "/v1/wallet/ledger", "/v1/runs"):
        for f in filters:
            for fmt in EXPORTS if path != "/v1/runs" else [None]:
                params = {**f, **({"format": fmt} if fmt else {}), "limit": 500}
                if path in ("/v1/usage", "/v1/failures", "/v1/runs"):
                    params.pop("receipt_id", None)
                r = await hclient.get(path, params=params, headers=a.auth)
                if r.status_code >= 500:
                    wrong.append((path, params, r.status_code))
                scan(f"{path} {params}", r.text, sent=list(f.values()))
    for path in ("/v1/wallet", "/v1/routes/health", "/v1/models"):
        r = ok(await hclient.get(path, headers=a.auth))
        scan(path, str(r))
    # spending against B's run or with B's idempotency key
    r = await hclient.post("/v1/chat/completions", json=a.chat(), headers={**a.auth, "X-TF-Run-Id": run["id"]})
    if r.status_code != 404:
        wrong.append(("chat with B's run", r.status_code))
    scan("chat with B's run", r.text + str(dict(r.headers)), sent=[run["id"]])
    r = await hclient.post("/v1/preflight", json={"model": a.model, "run_id": run["id"]}, headers=a.auth)
    if r.status_code != 404:
        wrong.append(("preflight with B's run", r.status_code))
    scan("preflight with B's run", r.text, sent=[run["id"]])
    r = await hclient.post("/v1/chat/completions", json=b.chat(), headers={**a.auth, "Idempotency-Key": "shared-idem-key"})
    assert r.status_code == 200 and r.headers["x-tf-receipt-id"] not in receipts, "B's idempotent answer replayed to A"
    scan("idempotency", r.text + str(dict(r.headers)))
    # B's list cursor in A's hands pages A's rows only
    for _ in range(3):
        ok(await hclient.post("/v1/chat/completions", json=b.chat(), headers=b.auth))
    page = ok(await hclient.get("/v1/usage", params={"limit": 1}, headers=b.auth))
    assert page["next_cursor"]
    r = await hclient.get("/v1/usage", params={"limit": 500, "cursor": page["next_cursor"]}, headers=a.auth)
    scan("B's cursor", r.text)
    # route health: the platform's routes, nothing of an account in it
    health = ok(await hclient.get("/v1/routes/health", headers=a.auth))
    for h in health["data"]:
        text = str(h)
        assert not re.search(r"(acct|proj|key|rcpt|run)_[a-z2-7]{24}", text), h
    b_after = await money_of(hclient, b)
    b_spend_own = b_after["buckets"]["credit"]["posted_micros"]
    assert b_after["buckets"]["credit"]["held_micros"] == 0
    # B's wallet moved only by B's own three extra requests
    usage = ok(await hclient.get("/v1/usage", params={"limit": 500}, headers=b.auth))["data"]
    assert b_money["buckets"]["credit"]["posted_micros"] - b_spend_own == sum(
        u["charged_micros"] for u in usage[:3])
    rb = ok(await hclient.get(f"/v1/runs/{run['id']}", headers=b.auth))
    assert rb["status"] in ("ready", "running"), rb
    assert not wrong, f"A got an answer other than 404 for B's objects: {wrong}"
    assert not leaks, f"B's ids appeared in A's answers: {sorted(set(leaks))[:10]}"
