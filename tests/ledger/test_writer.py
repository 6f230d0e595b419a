"""The group commit (ledger.writer, tf_write_batch): many requests' reservations and
settles in one transaction must decide and book exactly what the same requests would, one by
one. Items are queued together so that each test's writes really are batches (asserted)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import text

from tokens_forge.guard.money import Charge
from tokens_forge.ids import new_id
from tokens_forge.ledger import attempts as store
from tokens_forge.ledger.attempts import AttemptEnd, ReceiptEnd, ReceiptHead
from tokens_forge.ledger.sweeper import release_item
from tokens_forge.ledger.writer import LedgerWriter

TTL_S = 600.0


@pytest.fixture
async def writer(app):
    """A group commit of its own (so that its counts are this test's), on the app's pool."""
    w = LedgerWriter(durable_settle=False)
    yield w
    await w.close()


def head_of(t, route) -> ReceiptHead:
    return ReceiptHead(id=new_id("rcpt"), account_id=t.account["id"], project_id=t.project["id"], key_id=t.key["id"],
                       run_id=None, model=t.model, stream=False)


async def route_of(app, t, kind="official"):
    return next(r for r in await app.state.routes.for_model(t.model) if r.kind == kind)


async def open_many(app, writer, t, route, amounts, *, reject=True):
    heads = [head_of(t, route) for _ in amounts]
    results = await asyncio.gather(*[
        store.open_attempt(app.state.pg, h, route, 1, amount, TTL_S, create=True, reject=reject, writer=writer)
        for h, amount in zip(heads, amounts, strict=True)])
    return heads, results


def usage(charge: int, reserved: int) -> Charge:
    """What guard.money decides for an upstream that billed `charge` against a hold of `reserved`."""
    if charge <= reserved:
        return Charge(charge, "usage", "usage × price", 3, 5)
    return Charge(reserved, "usage_capped", "capped", 3, 5, overage=charge - reserved)


async def finish_many(app, writer, route, pairs, charges, reserved=100):
    return await asyncio.gather(*[
        store.finish_attempt(app.state.pg, h, route, 1, res.hold_id,
                             AttemptEnd("success", usage(charge, reserved), 200, 1),
                             ReceiptEnd("succeeded"), writer=writer)
        for (h, res), charge in zip(pairs, charges, strict=True)])


async def test_a_batch_decides_each_item_in_order_against_the_cap(app, tenant, writer):
    t = await tenant(key={"limits": {"daily_micros": 1000}})
    route = await route_of(app, t)
    heads, results = await open_many(app, writer, t, route, [100] * 30)
    assert writer.writes == 1 and writer.items == 30  # one transaction for all thirty
    accepted = [r for r in results if r.ok]
    assert len(accepted) == 10
    assert [r.ok for r in results] == [True] * 10 + [False] * 20  # arrival order decides
    assert {r.refused_scope for r in results if not r.ok} == {"key_daily"}
    assert {r.remaining for r in results if not r.ok} == {0}
    async with app.state.engine.connect() as conn:
        statuses = (await conn.execute(text("SELECT status, count(*) FROM receipts WHERE id = ANY(:ids) GROUP BY 1"),
                                       {"ids": [h.id for h in heads]})).all()
        holds = (await conn.execute(text("SELECT count(*), sum(amount) FROM holds WHERE receipt_id = ANY(:ids)"),
                                    {"ids": [h.id for h in heads]})).one()
        attempts = (await conn.execute(text("SELECT count(*) FROM attempts WHERE receipt_id = ANY(:ids)"),
                                       {"ids": [h.id for h in heads]})).scalar_one()
    assert dict(statuses) == {"pending": 10, "rejected": 20}
    assert tuple(holds) == (10, 1000) and attempts == 10  # refused items keep no hold or attempt row

    pairs = [(h, r) for h, r in zip(heads, results, strict=True) if r.ok]
    charged = await finish_many(app, writer, route, pairs, [40] * 10)
    assert charged == [40] * 10 and writer.writes == 2
    async with app.state.engine.connect() as conn:
        total = (await conn.execute(text(
            "SELECT sum(total_charged_micros), count(*) FILTER (WHERE status = 'succeeded') FROM receipts "
            "WHERE id = ANY(:ids)"), {"ids": [h.id for h, _ in pairs]})).one()
    assert tuple(total) == (400, 10)


async def test_one_batch_of_several_tenants_books_each_apart(app, tenant, writer):
    poor = await tenant(credit=350)            # pays for three holds of 100 and no more
    rich = await tenant()
    poor_route, rich_route = await route_of(app, poor), await route_of(app, rich)
    poor_heads = [head_of(poor, poor_route) for _ in range(5)]
    rich_heads = [head_of(rich, rich_route) for _ in range(5)]
    calls = []
    for ph, rh in zip(poor_heads, rich_heads, strict=True):  # interleaved in one queue
        calls.append(store.open_attempt(app.state.pg, ph, poor_route, 1, 100, TTL_S, create=True, reject=True,
                                        writer=writer))
        calls.append(store.open_attempt(app.state.pg, rh, rich_route, 1, 100, TTL_S, create=True, reject=True,
                                        writer=writer))
    results = await asyncio.gather(*calls)
    assert writer.writes == 1
    poor_results, rich_results = results[0::2], results[1::2]
    assert [r.ok for r in poor_results] == [True, True, True, False, False]
    assert {r.refused_scope for r in poor_results if not r.ok} == {"bucket"}
    assert [r.remaining for r in poor_results] == [250, 150, 50, 50, 50]
    assert all(r.ok for r in rich_results)

    # Settle both tenants' holds in one batch, one of them beyond its hold (an upstream that
    # reports more usage than max_tokens allows): the customer pays the hold, the platform's
    # overage account the rest.
    pairs = [(h, r) for h, r in zip(poor_heads, poor_results, strict=True) if r.ok]
    pairs += list(zip(rich_heads, rich_results, strict=True))
    charges = [30, 100, 250] + [10] * 5
    charged = await finish_many(app, writer, rich_route, pairs, charges)
    assert charged == [30, 100, 100] + [10] * 5
    async with app.state.engine.connect() as conn:
        wallet = (await conn.execute(text(
            "SELECT credits_posted - debits_posted FROM ledger_accounts WHERE code = :c"),
            {"c": f"wallet:{poor.account['id']}:credit"})).scalar_one()
        overage = (await conn.execute(text(
            "SELECT sum(amount) FROM transfers WHERE hold_id = :h AND debit_account_id = "
            "(SELECT id FROM ledger_accounts WHERE code = 'overage')"), {"h": pairs[2][1].hold_id})).scalar_one()
        balances = (await conn.execute(text(
            "SELECT t.id, t.credit_balance_after FROM transfers t JOIN ledger_accounts la ON la.id = t.credit_account_id "
            "WHERE la.code = :c ORDER BY t.id"), {"c": f"wallet:{poor.account['id']}:credit"})).all()
    assert wallet == 350 - 230 and overage == 150
    # Running balances follow transfer ids, also inside one batch.
    assert [b for _, b in balances] == [350, 120]


async def test_a_failing_item_does_not_fail_its_batch(app, tenant, writer):
    t = await tenant()
    route = await route_of(app, t)
    broken = dataclasses.replace(route, id="route_doesnotexist")  # the attempt row's foreign key refuses it
    good = [head_of(t, route) for _ in range(3)]
    bad = head_of(t, broken)
    outcomes = await asyncio.gather(
        *[store.open_attempt(app.state.pg, h, route, 1, 100, TTL_S, create=True, reject=True, writer=writer)
          for h in good],
        store.open_attempt(app.state.pg, bad, broken, 1, 100, TTL_S, create=True, reject=True, writer=writer),
        return_exceptions=True)
    assert all(r.ok for r in outcomes[:3])
    assert isinstance(outcomes[3], Exception)
    async with app.state.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT count(*) FROM receipts WHERE id = :r"), {"r": bad.id})).scalar_one()
    assert rows == 0  # nothing of the bad item was written
    await finish_many(app, writer, route, list(zip(good, outcomes[:3], strict=True)), [10, 10, 10])


async def test_a_settle_after_the_sweeper_released_the_hold_books_a_late_charge(app, tenant, writer):
    t = await tenant()
    route = await route_of(app, t)
    heads, results = await open_many(app, writer, t, route, [100, 100])
    async with app.state.engine.begin() as conn:  # the sweeper got to the first hold already
        await conn.execute(text("UPDATE holds SET expires_at = now() - interval '1 second' WHERE id = :h"),
                           {"h": results[0].hold_id})
    from tokens_forge.ledger.sweeper import sweep_expired

    await sweep_expired(app.state.engine, dead_after_s=30)  # or the app's own sweeper did, a moment before
    assert await app.state.pg.fetchval("SELECT status FROM holds WHERE id = $1", results[0].hold_id) == "expired"
    charged = await finish_many(app, writer, route, list(zip(heads, results, strict=True)), [50, 50])
    assert charged == [50, 50]  # the late one from the wallet, once
    async with app.state.engine.connect() as conn:
        attempt = (await conn.execute(text("SELECT charge_reason, charged_micros FROM attempts WHERE receipt_id = :r"),
                                      {"r": heads[0].id})).one()
        hold = (await conn.execute(text("SELECT status, charged, late_charged FROM holds WHERE id = :h"),
                                   {"h": results[0].hold_id})).one()
        receipt = (await conn.execute(text("SELECT status, total_charged_micros FROM receipts WHERE id = :r"),
                                      {"r": heads[0].id})).one()
    assert "late charge of 50 micros" in attempt.charge_reason and attempt.charged_micros == 50
    assert tuple(hold) == ("expired", 0, 50)
    assert tuple(receipt) == ("succeeded", 50)
    again = await finish_many(app, writer, route, [(heads[0], results[0])], [50])
    assert again == [0]  # never twice


@pytest.mark.parametrize("first", ["settle", "failure_charge"])
async def test_two_late_settles_of_one_hold_in_one_batch_charge_once(app, tenant, writer, caplog, first):
    """Found by test_batch_properties.py: a hold the sweeper released, finished twice in one batch,
    is late-charged once, as in two batches (the second finds it charged). It was charged twice
    (a failure charge then a settle: beyond the hold), or, two settles, the batch failed on
    transfers_hold_once and was written again item by item."""
    t = await tenant()
    route = await route_of(app, t)
    heads, results = await open_many(app, writer, t, route, [100])
    hold_id = results[0].hold_id
    released = await writer.finish(app.state.pg, release_item(hold_id))
    assert released["resolved"] and released["charged"] == 0
    ends = {"settle": AttemptEnd("success", usage(60, 100), 200, 1),
            "failure_charge": AttemptEnd("upstream_error", Charge(60, "failed_request_charge", "flat"), 502)}
    writes = writer.writes
    charged = await asyncio.gather(*[
        store.finish_attempt(app.state.pg, heads[0], route, 1, hold_id, end, ReceiptEnd("succeeded"), writer=writer)
        for end in (ends[first], ends["settle"])])
    assert writer.writes == writes + 1  # one batch
    assert not [r for r in caplog.records if r.getMessage().startswith("a group commit of")]  # written as one
    assert charged == [60, 0]
    async with app.state.engine.connect() as conn:
        hold = (await conn.execute(text("SELECT status, charged, late_charged FROM holds WHERE id = :h"),
                                   {"h": hold_id})).one()
        late = (await conn.execute(text("SELECT count(*), sum(amount) FROM transfers WHERE hold_id = :h "
                                        "AND reason LIKE 'late charge%'"), {"h": hold_id})).one()
        attempt = (await conn.execute(text("SELECT charged_micros FROM attempts WHERE receipt_id = :r"),
                                      {"r": heads[0].id})).scalar_one()
    assert tuple(hold) == ("expired", 0, 60) and tuple(late) == (1, 60) and attempt == 60
