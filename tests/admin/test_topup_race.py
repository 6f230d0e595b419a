"""Top-up idempotency under concurrency: duplicates racing each other post exactly once."""

import asyncio

from tests.admin.conftest import audit_of, balances, err, uid
from tests.conftest import ok


async def test_concurrent_duplicate_topups_post_once(admin, account):
    acct = await account()
    body = {"bucket": "credit", "amount_micros": 123_456, "reference": "race-" + uid()}
    url = f"/accounts/{acct['id']}/topups"
    answers = await asyncio.gather(*(admin.post(url, json=body) for _ in range(20)))
    assert sorted(r.status_code for r in answers) == [200] * 19 + [201], [r.text for r in answers]
    transfer_ids = {ok(r)["transfer_id"] for r in answers}
    assert len(transfer_ids) == 1
    assert (await balances(admin, acct["id"]))["credit"]["available_micros"] == 123_456
    assert [e["action"] for e in await audit_of(admin, acct["id"])] == ["account.create", "account.topup"]
    err(await admin.post(url, json={**body, "amount_micros": 123_457}), 409, "conflict", "reference")
    assert (await balances(admin, acct["id"]))["credit"]["available_micros"] == 123_456


async def test_concurrent_distinct_topups_all_post(admin, account):
    acct = await account()
    url = f"/accounts/{acct['id']}/topups"
    answers = await asyncio.gather(*(admin.post(url, json={"bucket": "routed", "amount_micros": 1_000 + i,
                                                           "reference": f"r{i}"}) for i in range(20)))
    assert all(r.status_code == 201 for r in answers)
    assert len({r.json()["transfer_id"] for r in answers}) == 20
    assert (await balances(admin, acct["id"]))["routed"]["available_micros"] == sum(1_000 + i for i in range(20))
