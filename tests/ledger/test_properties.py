"""Property tests of the single path (one item per tf_write_batch, guard.service) against the
Python oracle of tests/ledger/oracle.py (LEDGER.md): a stateful model of top-up, reserve, settle,
failure charge, void, expire and cap changes, and a concurrent race of random reserves on one
balance. (The batch path is checked against the same oracle by test_batch_properties.py.) Every
acceptance, refusal, remaining amount, balance and spend counter must match the oracle; a refused
or repeated operation writes nothing.

Each example runs on its own event loop and engine (hypothesis drives plain functions; the
session loop of pytest-asyncio is not running during a sync test). Examples: 25 stateful and 10
concurrent by default, more with TF_LONG_TESTS=1."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ledger.conftest import RESOLUTIONS
from tests.ledger.oracle import BUCKETS, Oracle, ledger_snapshot
from tokens_forge.accounts import service as accounts
from tokens_forge.accounts.schemas import AccountCreate, ProjectCreate, ProjectLimits
from tokens_forge.db.engine import make_engine, make_sessionmaker
from tokens_forge.guard import service as guard
from tokens_forge.ids import new_id
from tokens_forge.keys import service as keys
from tokens_forge.keys.schemas import KeyCreate, KeyLimits, KeyUpdate
from tokens_forge.ledger import service as ledger
from tokens_forge.ledger.verify import verify

LONG = os.environ.get("TF_LONG_TESTS") == "1"
TTL_S = 3600.0
T = TypeVar("T")


@dataclass
class Tenant:
    account_id: str
    project_id: str
    key_ids: list[str]
    receipt_id: str


async def make_tenant(engine: AsyncEngine, *, funds: dict[str, int], key_caps: list[tuple[int | None, int | None]],
                      project_cap: int | None) -> Tenant:
    """An account, a project with a total cap, keys with (total, per-request) caps, one receipt."""
    async with make_sessionmaker(engine)() as s, s.begin():
        acct = await accounts.create_account(s, AccountCreate(name="property"), "test")
        proj = await accounts.create_project(s, ProjectCreate(account_id=acct.id, name="p",
                                                              limits=ProjectLimits(total_micros=project_cap)), "test")
        key_ids = []
        for total, per_request in key_caps:
            key, _ = await keys.create_key(s, KeyCreate(project_id=proj.id, name="k", limits=KeyLimits(
                total_micros=total, per_request_micros=per_request)), "test")
            key_ids.append(key.id)
        for bucket, amount in funds.items():
            if amount:
                await ledger.topup(s, account_id=acct.id, bucket=bucket, amount=amount, reference=uuid.uuid4().hex)
        receipt_id = new_id("rcpt")
        await s.execute(text("INSERT INTO receipts (id, account_id, project_id, key_id, model) "
                             "VALUES (:r, :a, :p, :k, 'property')"),
                        {"r": receipt_id, "a": acct.id, "p": proj.id, "k": key_ids[0]})
    return Tenant(acct.id, proj.id, key_ids, receipt_id)


async def transfer_count(engine: AsyncEngine, account_id: str) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM transfers WHERE account_id = :a"),
                                   {"a": account_id})).scalar_one()


CAP = st.one_of(st.none(), st.integers(0, 150_000))
AMOUNT = st.integers(0, 30_000)


class LedgerMachine(RuleBasedStateMachine):
    database: Any = None  # the session's SuiteDatabase, set by the test
    open_holds = Bundle("open_holds")
    closed_holds = Bundle("closed_holds")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(self.database.url, pool_size=2, max_overflow=0, pooled=self.database.pooled)
        self.t: Tenant | None = None
        self.o: Oracle | None = None
        self.attempt = 0

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    @initialize(credit=st.integers(0, 200_000), routed=st.integers(0, 200_000),
                caps=st.lists(st.tuples(CAP, CAP), min_size=2, max_size=2), project_cap=CAP)
    def start(self, credit, routed, caps, project_cap):
        """A fresh tenant: funded buckets, two keys with caps, a project cap."""
        funds = {"credit": credit, "routed": routed}
        self.t = self.run(make_tenant(self.engine, funds=funds, key_caps=caps, project_cap=project_cap))
        self.o = Oracle(available=dict(funds), key_total={k: c[0] for k, c in zip(self.t.key_ids, caps, strict=True)},
                        key_per_request={k: c[1] for k, c in zip(self.t.key_ids, caps, strict=True)},
                        key_project=dict.fromkeys(self.t.key_ids, self.t.project_id),
                        project_total={self.t.project_id: project_cap})

    def expect_transfers(self, delta: int, op: Awaitable[T]) -> T:
        before = self.run(transfer_count(self.engine, self.t.account_id))
        result = self.run(op)
        assert self.run(transfer_count(self.engine, self.t.account_id)) - before == delta
        return result

    @rule(bucket=st.sampled_from(BUCKETS), amount=st.integers(1, 60_000))
    def topup(self, bucket, amount):
        async def go():
            async with make_sessionmaker(self.engine)() as s, s.begin():
                return await ledger.topup(s, account_id=self.t.account_id, bucket=bucket, amount=amount,
                                          reference=uuid.uuid4().hex)

        assert self.expect_transfers(1, go()).created
        self.o.available[bucket] += amount

    @rule(target=open_holds, key=st.integers(0, 1), bucket=st.sampled_from(BUCKETS), amount=AMOUNT)
    def reserve(self, key, bucket, amount):
        key_id = self.t.key_ids[key]
        scope, remaining = self.o.refusal(key_id, bucket, amount)
        self.attempt += 1

        async def go():
            async with self.engine.begin() as conn:
                return await guard.reserve(conn, key_id=key_id, bucket=bucket, amount=amount,
                                           receipt_id=self.t.receipt_id, attempt_no=self.attempt, run_id=None,
                                           ttl_s=TTL_S)

        event(f"reserve: {scope or 'accepted'}")
        res = self.expect_transfers(int(scope is None and amount > 0), go())
        assert (res.refused_scope, res.remaining) == (scope, remaining)
        if scope is not None:
            assert res.hold_id is None
            return multiple()
        self.o.reserve(res.hold_id, key_id, bucket, amount)
        return res.hold_id

    def close(self, hold_id: int, charge: int, kind: str, status: str) -> int:
        amount = self.o.holds[hold_id][2]
        charged, overage = self.o.resolve(hold_id, charge, status)
        delta = int(charged > 0) + int(amount > charged) + int(overage > 0)

        async def go():
            async with self.engine.begin() as conn:
                return await guard.resolve(conn, hold_id=hold_id, charge=charge, kind=kind, status=status)

        res = self.expect_transfers(delta, go())
        assert (res.resolved, res.charged, res.overage, len(res.transfer_ids)) == (True, charged, overage, delta)
        return hold_id

    @rule(target=closed_holds, hold=consumes(open_holds), how=st.sampled_from(list(RESOLUTIONS)),
          charge=st.integers(0, 60_000))
    def resolve(self, hold, how, charge):
        """Settle or failure-charge (a charge beyond the hold books overage), void, or expire."""
        kind, status = RESOLUTIONS[how]
        return self.close(hold, charge if status == "settled" else 0, kind, status)

    @rule(hold=closed_holds, charge=st.integers(0, 60_000), status=st.sampled_from(["settled", "voided", "expired"]))
    def resolve_again(self, hold, charge, status):
        """A second resolution resolves nothing; a settle of a hold the sweeper released books a late
        charge, once (SPEC: a settle that finds its hold gone charges what the funds and caps allow)."""
        late = self.o.late_charge(hold, charge) if status == "settled" else 0

        async def go():
            async with self.engine.begin() as conn:
                return await guard.resolve(conn, hold_id=hold, charge=charge if status == "settled" else 0,
                                           kind="settle", status=status)

        res = self.expect_transfers(int(late > 0), go())
        assert (res.resolved, res.charged) == (False, late)

    @rule(key=st.integers(0, 1), cap=CAP)
    def change_key_cap(self, key, cap):
        key_id = self.t.key_ids[key]

        async def go():
            async with make_sessionmaker(self.engine)() as s, s.begin():
                await keys.update_key(s, key_id, KeyUpdate(limits=KeyLimits(total_micros=cap)), "test")

        self.run(go())
        self.o.key_total[key_id] = cap

    @invariant()
    def ledger_matches_oracle(self):
        if self.t is not None:
            assert self.run(ledger_snapshot(self.engine, self.t.account_id, self.o.owners())) == self.o.snapshot()

    def teardown(self):
        try:
            if self.t is not None:
                for hold_id in list(self.o.holds):
                    self.close(hold_id, 0, "settle", "voided")
                self.run(self.finish())
        finally:
            self.run(self.engine.dispose())
            self.loop.close()

    async def finish(self) -> None:
        """Close the receipt with what the oracle says was charged; the verifier must agree."""
        async with self.engine.begin() as conn:
            await conn.execute(text("UPDATE receipts SET status = 'succeeded', total_charged_micros = :c, "
                                    "completed_at = now() WHERE id = :r"), {"c": self.o.charged, "r": self.t.receipt_id})
        async with self.engine.connect() as conn:
            good, checks = await verify(conn, sweep_interval_s=60)
        assert good, [c.as_dict() for c in checks if not c.ok]


STATEFUL = settings(max_examples=50 if LONG else 25, stateful_step_count=40 if LONG else 25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_ledger_matches_oracle(database):
    machine = type("Machine", (LedgerMachine,), {"database": database})
    run_state_machine_as_test(machine, settings=STATEFUL)


def run_on_own_loop(database, body) -> T:
    async def main():
        engine = make_engine(database.url, pool_size=10, max_overflow=0, pooled=database.pooled)
        try:
            return await body(engine)
        finally:
            await engine.dispose()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


@settings(max_examples=50 if LONG else 10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(funds=st.integers(0, 150_000), amounts=st.lists(st.integers(1, 30_000), min_size=2, max_size=40))
def test_shared_balance_race(database, funds, amounts):
    """Random concurrent reserves on one bucket: what is accepted fits the funds, a refusal is
    only ever for lack of money, and voiding everything restores the funds exactly."""

    async def body(engine: AsyncEngine):
        t = await make_tenant(engine, funds={"routed": funds}, key_caps=[(None, None)], project_cap=None)

        async def one(n: int, amount: int):
            async with engine.begin() as conn:
                return await guard.reserve(conn, key_id=t.key_ids[0], bucket="routed", amount=amount,
                                           receipt_id=t.receipt_id, attempt_no=n, run_id=None, ttl_s=TTL_S)

        results = await asyncio.gather(*(one(n, a) for n, a in enumerate(amounts, 1)))
        accepted = sum(a for a, r in zip(amounts, results, strict=True) if r.ok)
        left = funds - accepted
        assert 0 <= left
        assert (await ledger_snapshot(engine, t.account_id, []))[0]["routed"] == (left, accepted)
        for amount, r in zip(amounts, results, strict=True):
            assert r.ok or (r.refused_scope == "bucket" and amount > left), (amount, r, left)
        async with engine.begin() as conn:
            for r in results:
                if r.ok:
                    assert (await guard.resolve(conn, hold_id=r.hold_id, charge=0, kind="settle",
                                                status="voided")).resolved
        assert (await ledger_snapshot(engine, t.account_id, []))[0]["routed"] == (funds, 0)

    run_on_own_loop(database, body)
