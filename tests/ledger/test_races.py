"""Two-phase transfers under concurrency (LEDGER.md): no overdraft, caps hold exactly, a hold is
resolved once, and crossing reserves and settles never deadlock."""

import asyncio
import random

import pytest

from tests.ledger.conftest import (
    assert_verified,
    bucket_balances,
    close_receipts,
    counters,
    ledger_state,
    new_receipts,
    reserve,
    resolve,
)


async def test_concurrent_reserves_never_overdraw(engine, wallet):
    w = await wallet(credit=100_000)
    receipts = await new_receipts(engine, w, 50)
    results = await asyncio.gather(*(reserve(engine, w.key_id, rid, 10_000) for rid in receipts))
    won = [r for r in results if r.ok]
    assert len(won) == 10
    assert {r.refused_scope for r in results if not r.ok} == {"bucket"}
    assert sorted(r.remaining for r in won) == list(range(0, 100_000, 10_000))  # each saw the one before it
    bal = (await bucket_balances(engine, w.account_id))["credit"]
    assert (bal.posted_micros, bal.held_micros, bal.available_micros) == (100_000, 100_000, 0)

    holds = [r.hold_id for r in won]
    charges = [7_000, 10_000, 0, 2_500]
    ends = [resolve(engine, h, "settle", c) for h, c in zip(holds[:4], charges, strict=True)]
    ends += [resolve(engine, h, "void") for h in holds[4:7]]
    ends += [resolve(engine, h, "expire") for h in holds[7:]]
    assert all(r.resolved for r in await asyncio.gather(*ends))
    spent = sum(charges)
    bal = (await bucket_balances(engine, w.account_id))["credit"]
    assert (bal.posted_micros, bal.held_micros, bal.available_micros) == (100_000 - spent, 0, 100_000 - spent)
    assert counters_total(await counters(engine, w.key_id)) == (0, spent)
    await close_receipts(engine, receipts)
    await assert_verified(engine)


def counters_total(by_scope: dict[str, tuple[int, int]]) -> tuple[int, int]:
    return by_scope["key_total"]


async def test_cap_race_key_total(engine, wallet):
    w = await wallet(credit=10_000_000, key_limits={"total_micros": 1_000_000})
    receipts = await new_receipts(engine, w, 200)
    results = await asyncio.gather(*(reserve(engine, w.key_id, rid, 10_000) for rid in receipts))
    won = [r for r in results if r.ok]
    assert len(won) == 100
    refused = [r for r in results if not r.ok]
    assert {(r.refused_scope, r.remaining) for r in refused} == {("key_total", 0)}
    assert (await counters(engine, w.key_id))["key_total"] == (1_000_000, 0)
    assert (await bucket_balances(engine, w.account_id))["credit"].held_micros == 1_000_000
    await asyncio.gather(*(resolve(engine, r.hold_id, "void") for r in won))
    assert (await counters(engine, w.key_id))["key_total"] == (0, 0)
    bal = (await bucket_balances(engine, w.account_id))["credit"]
    assert (bal.available_micros, bal.held_micros) == (10_000_000, 0)


async def test_cap_race_project_total_across_keys(engine, wallet):
    w = await wallet(routed=5_000_000, keys=4, project_limits={"total_micros": 300_000})
    receipts = await new_receipts(engine, w, 80)
    results = await asyncio.gather(*(reserve(engine, w.key_ids[i % 4], rid, 10_000, "routed")
                                     for i, rid in enumerate(receipts)))
    assert sum(r.ok for r in results) == 30
    assert {r.refused_scope for r in results if not r.ok} == {"project_total"}
    await asyncio.gather(*(resolve(engine, r.hold_id, "settle", 1_000) for r in results if r.ok))
    assert (await counters(engine, w.project_id))["project_total"] == (0, 30_000)
    assert (await bucket_balances(engine, w.account_id))["routed"].available_micros == 5_000_000 - 30_000


PAIRS = [("settle", "settle"), ("void", "void"), ("settle", "void"), ("void", "settle"),
         ("expire", "settle"), ("settle", "expire"), ("failure_charge", "settle"), ("expire", "void")]


@pytest.mark.parametrize(("first", "second"), PAIRS)
async def test_second_resolution_of_a_hold_changes_nothing(engine, wallet, first, second):
    """A hold resolves once. The one exception is a settle after the sweeper released the hold (its
    worker was judged dead, but the answer was delivered): that books a late charge, once."""
    w = await wallet(credit=50_000)
    [rid] = await new_receipts(engine, w, 1)
    hold = await reserve(engine, w.key_id, rid, 20_000)
    done = await resolve(engine, hold.hold_id, first, 6_000)
    assert done.resolved and done.charged == (6_000 if first in ("settle", "failure_charge") else 0)
    before = await ledger_state(engine, w)
    again = await resolve(engine, hold.hold_id, second, 9_000)
    if (first, second) == ("expire", "settle"):
        assert (again.resolved, again.charged, len(again.transfer_ids)) == (False, 9_000, 2)  # release + late charge
        assert (await bucket_balances(engine, w.account_id))["credit"].available_micros == 50_000 - 9_000
        before = await ledger_state(engine, w)
        again = await resolve(engine, hold.hold_id, second, 9_000)
    assert (again.resolved, again.charged, again.overage) == (False, 0, 0)
    assert await ledger_state(engine, w) == before


async def test_racing_resolutions_resolve_each_hold_once(engine, wallet):
    """Settle vs. sweep (expire) vs. void, all at once on every hold: exactly one wins."""
    w = await wallet(credit=1_000_000)
    receipts = await new_receipts(engine, w, 20)
    holds = [(await reserve(engine, w.key_id, rid, 5_000)).hold_id for rid in receipts]
    racers = [(h, how) for h in holds for how in ("settle", "expire", "void", "settle")]
    random.shuffle(racers)
    results = await asyncio.gather(*(resolve(engine, h, how, 3_000) for h, how in racers))
    winners = [(h, how, r) for (h, how), r in zip(racers, results, strict=True) if r.resolved]
    assert sorted(h for h, _, _ in winners) == sorted(holds)
    assert sum(r.charged for _, _, r in winners) == 3_000 * sum(how == "settle" for _, how, _ in winners)
    # where the sweep (expire) won, one of the later settles books a late charge; never two
    late = [(h, r) for (h, how), r in zip(racers, results, strict=True) if not r.resolved and r.charged]
    expired = {h for h, how, _ in winners if how == "expire"}
    assert sorted(h for h, _ in late) == sorted(expired) and all(r.charged == 3_000 for _, r in late)
    charged = sum(r.charged for r in results)
    bal = (await bucket_balances(engine, w.account_id))["credit"]
    assert (bal.available_micros, bal.held_micros) == (1_000_000 - charged, 0)
    await close_receipts(engine, receipts)
    await assert_verified(engine)


async def test_crossing_reserves_and_settles_never_deadlock(engine, wallet, admin):
    """Keys of one project, both buckets, settles and top-ups interleaved: no 40P01, no error."""
    w = await wallet(credit=2_000_000, routed=2_000_000, keys=4, key_limits={"total_micros": 400_000,
                                                                             "daily_micros": 400_000},
                     project_limits={"total_micros": 1_500_000, "daily_micros": 1_500_000})
    receipts = await new_receipts(engine, w, 160)
    rng = random.Random(7)

    async def story(i: int, rid: str) -> int:
        res = await reserve(engine, w.key_ids[i % 4], rid, rng.randrange(1, 20_000), rng.choice(["credit", "routed"]))
        if not res.ok:
            return 0
        await asyncio.sleep(0)
        how = rng.choice(["settle", "settle", "void", "expire"])
        return (await resolve(engine, res.hold_id, how, rng.randrange(0, 20_000))).charged

    async def topup(n: int) -> None:
        r = await admin.post(f"/accounts/{w.account_id}/topups",
                             json={"bucket": "credit" if n % 2 else "routed", "amount_micros": 1,
                                   "reference": f"x{n}"})
        assert r.status_code == 201, r.text

    tasks = [story(i, rid) for i, rid in enumerate(receipts)] + [topup(n) for n in range(10)]
    rng.shuffle(tasks)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    charged = sum(r for r in results if isinstance(r, int))
    bal = await bucket_balances(engine, w.account_id)
    assert sum(b.available_micros for b in bal.values()) == 4_000_000 + 10 - charged
    assert sum(b.held_micros for b in bal.values()) == 0
    await close_receipts(engine, receipts)
    await assert_verified(engine)
