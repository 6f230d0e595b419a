"""A stateful property test of the batch path: the group commit (ledger.writer.LedgerWriter) that
production's hot path writes through (ledger.attempts.open_attempt / finish_attempt), carrying
several opens and finishes of several accounts, keys, projects, runs and both buckets in one
tf_write_batch call, checked against the oracle of the single path (tests/ledger/oracle.py).

Opens and finishes are queued in a random interleaving and written in batches of random size (one
statement, one transaction each: asserted). A finish charges less than, exactly or more than its
hold (guard.money's usage charge: the rest is overage), a failure charge, a release (nothing
charged), the sweeper's release (the hold expires: a later settle is a late charge), or finishes
a hold that is no longer open (a repeat charges nothing). After every write each decision must be
the oracle's, and after every step the balances, the held amounts, the open holds, the spend
counters and the overage must be the oracle's, no cap exceeded and no balance below zero; at
teardown the ledger verifier must be green.

Each example runs on its own event loop, engine and asyncpg pool (hypothesis drives plain
functions). Examples: 15 of 30 steps by default, 40 of 50 with TF_LONG_TESTS=1
(about 90 s: CI has 45 minutes for the whole suite on two databases)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ledger.oracle import BUCKETS, Oracle, ledger_snapshot
from tokens_forge.accounts import service as accounts
from tokens_forge.accounts.schemas import AccountCreate, ProjectCreate, ProjectLimits
from tokens_forge.db.engine import make_engine, make_sessionmaker
from tokens_forge.db.pooler import hot_pool_options
from tokens_forge.db.url import plain_url
from tokens_forge.guard import money
from tokens_forge.ids import new_id
from tokens_forge.keys import service as keys
from tokens_forge.keys.schemas import KeyCreate, KeyLimits
from tokens_forge.ledger import attempts as store
from tokens_forge.ledger import service as ledger
from tokens_forge.ledger.attempts import AttemptEnd, ReceiptEnd, ReceiptHead
from tokens_forge.ledger.sweeper import release_item
from tokens_forge.ledger.verify import verify
from tokens_forge.ledger.writer import LedgerWriter
from tokens_forge.routing import service as routing
from tokens_forge.routing.cache import RouteCache, RouteInfo
from tokens_forge.routing.schemas import PriceIn, RouteCreate

LONG = os.environ.get("TF_LONG_TESTS") == "1"
TTL_S = 3600.0
PRICE = money.Price(1_000_000, 0)  # a prompt token costs one micro: an upstream bill of N micros is N tokens
LAYOUT = ((2, 1), (1,))            # per account, the keys of each of its projects
RUNS = (2, 1)                      # per account, its runs
MAX_BATCH = 10                     # items in one write
CAP = st.one_of(st.none(), st.integers(0, 150_000))
PER_REQUEST = st.one_of(st.none(), st.integers(0, 40_000))
AMOUNT = st.integers(0, 30_000)
FUNDS = st.integers(0, 150_000)
HOWS = ("release", "under", "exact", "over", "failure", "expire")
T = TypeVar("T")


@dataclass
class Books:
    """One account of the machine and its oracle."""
    account_id: str
    project_ids: list[str]
    key_ids: list[str]
    run_ids: list[str]
    oracle: Oracle
    expired: set[int] = field(default_factory=set)  # holds the sweeper's release closed


@dataclass
class Request:
    """A request the machine opened and the ledger accepted: its receipt and hold."""
    books: Books
    head: ReceiptHead
    route: RouteInfo
    hold_id: int
    amount: int

    def __repr__(self) -> str:
        return f"hold {self.hold_id} of {self.amount} on {self.route.bucket}"


@dataclass
class Open:
    books: Books
    key_id: str
    route: RouteInfo
    amount: int
    run_id: str | None

    def __repr__(self) -> str:
        return f"Open({self.key_id}, {self.route.bucket}, {self.amount}, run={self.run_id})"


@dataclass
class Finish:
    request: Request
    how: str
    bill: int  # what the upstream billed (usage) or the route's flat failure charge


async def make_books(engine: AsyncEngine, *, funds: dict[str, int], projects: list[tuple[int | None, list]],
                     run_budgets: list[int]) -> Books:
    """An account with funded buckets, projects with total caps, keys with (total, per-request)
    caps, and runs with budgets."""
    async with make_sessionmaker(engine)() as s, s.begin():
        acct = await accounts.create_account(s, AccountCreate(name="batch-property"), "test")
        project_ids, key_ids, key_project, key_total, key_per_request, project_total = [], [], {}, {}, {}, {}
        for project_cap, key_caps in projects:
            proj = await accounts.create_project(s, ProjectCreate(
                account_id=acct.id, name="p", limits=ProjectLimits(total_micros=project_cap)), "test")
            project_ids.append(proj.id)
            project_total[proj.id] = project_cap
            for total, per_request in key_caps:
                key, _ = await keys.create_key(s, KeyCreate(project_id=proj.id, name="k", limits=KeyLimits(
                    total_micros=total, per_request_micros=per_request)), "test")
                key_ids.append(key.id)
                key_project[key.id], key_total[key.id], key_per_request[key.id] = proj.id, total, per_request
        run_ids = [new_id("run") for _ in run_budgets]
        for run_id, budget in zip(run_ids, run_budgets, strict=True):
            await s.execute(text("""
                INSERT INTO runs (id, account_id, project_id, key_id, model, mode, budget_micros, preflight)
                VALUES (:id, :a, :p, :k, 'batch-property', 'quick', :b, '{}'::jsonb)"""),
                {"id": run_id, "a": acct.id, "p": project_ids[0], "k": key_ids[0], "b": budget})
        for bucket, amount in funds.items():
            if amount:
                await ledger.topup(s, account_id=acct.id, bucket=bucket, amount=amount, reference=uuid.uuid4().hex)
    oracle = Oracle(available=dict(funds), key_total=key_total, key_per_request=key_per_request,
                    key_project=key_project, project_total=project_total,
                    run_budget=dict(zip(run_ids, run_budgets, strict=True)))
    return Books(acct.id, project_ids, key_ids, run_ids, oracle)


async def make_routes(engine: AsyncEngine, pg: asyncpg.Pool) -> dict[str, RouteInfo]:
    """An official route (paid from `credit`) and a routed one (`routed`) of a model of their own,
    as the hot path reads them (RouteCache): attempts get their rows, as in production."""
    model = "batch-" + uuid.uuid4().hex[:10]
    async with make_sessionmaker(engine)() as s, s.begin():
        for kind in ("official", "routed"):
            await routing.create_route(s, RouteCreate(
                model=model, kind=kind, base_url="http://mock.test/v1", upstream_model="m",
                price=PriceIn(input_per_mtok=PRICE.input_per_mtok, output_per_mtok=PRICE.output_per_mtok)), "test")
    routes = await RouteCache(pg).for_model(model)
    return {r.bucket: r for r in routes}


def finishes(request: Request) -> st.SearchStrategy[Finish]:
    """The end of an attempt: an upstream bill below, at or above its hold, a flat failure
    charge, a release (nothing charged), or the sweeper's release."""
    a = request.amount
    bills = {"release": st.just(0), "expire": st.just(0), "exact": st.just(a),
             "under": st.integers(0, max(a - 1, 0)), "over": st.integers(a + 1, a + 20_000),
             "failure": st.integers(0, 30_000)}
    return st.sampled_from(HOWS).flatmap(lambda how: bills[how].map(lambda bill: Finish(request, how, bill)))


def sizing(amount: int) -> money.Sizing:
    return money.Sizing(amount=amount, send_cap=None, input_bound=amount, output_bound=0, prompt_estimate=0)


def attempt_end(f: Finish) -> tuple[AttemptEnd, ReceiptEnd]:
    """What the pipeline would finish the attempt with, the charge decided by guard.money."""
    terms = money.Terms(PRICE, failure=money.FailurePolicy("flat", f.bill))
    if f.how == "release":
        return AttemptEnd("upstream_error", money.gateway_error_charge(), 502), ReceiptEnd("failed")
    if f.how == "failure":
        return AttemptEnd("upstream_error", money.failure_charge(sizing(f.request.amount), terms), 502), ReceiptEnd("failed")
    charge = money.usage_charge(sizing(f.request.amount), terms, (f.bill, 0), money.TextCount())
    return AttemptEnd("success", charge, 200, 1), ReceiptEnd("succeeded")


def billed(f: Finish) -> int:
    """What the oracle is told the upstream billed (its resolve caps it at the hold)."""
    if f.how in ("release", "expire"):
        return 0
    if f.how == "failure":
        return min(f.bill, f.request.amount) if f.bill > 0 else 0
    return f.bill


class _Fallbacks(logging.Handler):
    """Collects the writer's warnings that a group commit failed and was written item by item."""

    def __init__(self, seen: list[str]):
        super().__init__(logging.WARNING)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("a group commit of"):
            self.seen.append(record.getMessage())


class BatchMachine(RuleBasedStateMachine):
    database: Any = None  # the session's SuiteDatabase, set by the test

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(self.database.url, pool_size=2, max_overflow=0, pooled=self.database.pooled)
        self.pg: asyncpg.Pool = self.run(self.hot_pool())
        self.writer = LedgerWriter(durable_settle=False)
        self.books: list[Books] = []
        self.routes: dict[str, RouteInfo] = {}
        self.accepted: list[Request] = []
        self.queue: list[Open | Finish] = []
        self.dirty = False
        # A batch that fails is written again item by item (ledger.writer): the results would
        # still be right, but not decided by one tf_write_batch call. Such a fallback is a failure.
        self.fallbacks: list[str] = []
        self.log = _Fallbacks(self.fallbacks)
        logging.getLogger("tokens_forge.ledger").addHandler(self.log)

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    async def hot_pool(self) -> asyncpg.Pool:
        """The hot path's asyncpg pool, as main.py makes it (on this example's loop)."""
        return await asyncpg.create_pool(plain_url(self.database.url), min_size=1, max_size=2,
                                         **hot_pool_options(self.database.pooled))

    @initialize(funds=st.lists(st.tuples(FUNDS, FUNDS), min_size=2, max_size=2),
                key_caps=st.lists(st.tuples(CAP, PER_REQUEST), min_size=4, max_size=4),
                project_caps=st.lists(CAP, min_size=3, max_size=3),
                run_budgets=st.lists(st.integers(0, 60_000), min_size=3, max_size=3))
    def start(self, funds, key_caps, project_caps, run_budgets):
        """Two accounts: one with two projects (of two keys and of one) and two runs, one with a
        project of one key and a run; every key, project and run with a tight cap or none."""
        caps, projects, budgets = iter(key_caps), iter(project_caps), iter(run_budgets)
        for (credit, routed), layout, runs in zip(funds, LAYOUT, RUNS, strict=True):
            spec = [(next(projects), [next(caps) for _ in range(n)]) for n in layout]
            self.books.append(self.run(make_books(self.engine, funds={"credit": credit, "routed": routed},
                                                  projects=spec, run_budgets=[next(budgets) for _ in range(runs)])))
        self.routes = self.run(make_routes(self.engine, self.pg))
        self.dirty = True

    # -- a batch -----------------------------------------------------------------------------

    @precondition(lambda self: self.books)
    @rule(data=st.data(), size=st.integers(1, MAX_BATCH))
    def write_batch(self, data, size):
        """`size` items in a random interleaving of opens and finishes, written by the group
        commit in one tf_write_batch call. A finish may pick a hold that an earlier item of the
        same batch finishes already (a repeat, or a settle after the sweeper's release)."""
        open_before = [r for r in self.accepted if r.hold_id in r.books.oracle.holds]
        closed_before = [r for r in self.accepted if r.hold_id not in r.books.oracle.holds]
        kinds = ["open"] * 3 + ["finish"] * 3 * bool(open_before) + ["finish again"] * bool(closed_before)
        for _ in range(size):
            kind = data.draw(st.sampled_from(kinds))
            if kind == "open":
                self.queue.append(data.draw(self.opens()))
            else:
                request = data.draw(st.sampled_from(open_before if kind == "finish" else closed_before))
                self.queue.append(data.draw(finishes(request)))
        self.flush()

    def opens(self) -> st.SearchStrategy[Open]:
        """A request's first attempt (its receipt and a reservation), maybe under a run."""
        def build(account: int, key: int, bucket: str, amount: int, run: int | None) -> Open:
            b = self.books[account]
            run_id = None if run is None else b.run_ids[run % len(b.run_ids)]
            return Open(b, b.key_ids[key % len(b.key_ids)], self.routes[bucket], amount, run_id)

        return st.builds(build, st.integers(0, len(self.books) - 1), st.integers(0, 2), st.sampled_from(BUCKETS),
                         AMOUNT, st.one_of(st.none(), st.integers(0, 1)))

    def flush(self) -> None:
        queue, self.queue = self.queue, []
        finishes = [q for q in queue if isinstance(q, Finish)]
        opens = [q for q in queue if isinstance(q, Open)]
        event(f"batch of {len(queue)}: {len(finishes)} finish(es), {len(opens)} open(s)")
        heads = {id(o): ReceiptHead(id=new_id("rcpt"), account_id=o.books.account_id,
                                    project_id=o.books.oracle.key_project[o.key_id], key_id=o.key_id,
                                    run_id=o.run_id, model=o.route.model, stream=False) for o in opens}
        before = [self.run(self.transfer_count(b.account_id)) for b in self.books]
        writes, items = self.writer.writes, self.writer.items

        def call(q: Open | Finish) -> Awaitable[Any]:
            if isinstance(q, Open):
                return store.open_attempt(self.pg, heads[id(q)], q.route, 1, q.amount, TTL_S, create=True,
                                          reject=True, writer=self.writer)
            if q.how == "expire":  # the sweeper's release, as it sends it
                return self.writer.finish(self.pg, release_item(q.request.hold_id))
            end, final = attempt_end(q)
            return store.finish_attempt(self.pg, q.request.head, q.request.route, 1, q.request.hold_id, end, final,
                                        writer=self.writer)

        async def go():
            return await asyncio.gather(*(call(q) for q in queue))  # queued together: one batch

        results = dict(zip(map(id, queue), self.run(go()), strict=True))
        assert (self.writer.writes - writes, self.writer.items - items) == (1, len(queue))
        assert not self.fallbacks, self.fallbacks
        self.dirty = True

        # The oracle decides in the writer's order: every finish, then every open, each in turn.
        transfers = {b.account_id: 0 for b in self.books}
        for f in finishes:
            r, o = f.request, f.request.books.oracle
            if r.hold_id in o.holds:
                charged, overage = o.resolve(r.hold_id, billed(f), "expired" if f.how == "expire" else "settled")
                if f.how == "expire":
                    r.books.expired.add(r.hold_id)
                transfers[r.books.account_id] += int(charged > 0) + int(r.amount > charged) + int(overage > 0)
            else:
                charged = o.late_charge(r.hold_id, billed(f))
                transfers[r.books.account_id] += int(charged > 0)
            got = results[id(f)]
            got = int(got["charged"]) if f.how == "expire" else got
            assert got == charged, (f.how, f.bill, r.amount, got, charged)
        for q in opens:
            o, res = q.books.oracle, results[id(q)]
            scope, remaining = o.refusal(q.key_id, q.route.bucket, q.amount, q.run_id)
            event(f"open: {scope or 'accepted'}")
            assert (res.refused_scope, res.remaining) == (scope, remaining), (q, res)
            assert (res.hold_id is None) == (scope is not None)
            if scope is None:
                o.reserve(res.hold_id, q.key_id, q.route.bucket, q.amount, q.run_id)
                self.accepted.append(Request(q.books, heads[id(q)], q.route, res.hold_id, q.amount))
                transfers[q.books.account_id] += int(q.amount > 0)
        after = [self.run(self.transfer_count(b.account_id)) for b in self.books]
        assert [a - b for a, b in zip(after, before, strict=True)] == [transfers[b.account_id] for b in self.books]

    @precondition(lambda self: self.books)
    @rule(account=st.integers(0, len(LAYOUT) - 1), bucket=st.sampled_from(BUCKETS), amount=st.integers(1, 50_000))
    def topup(self, account, bucket, amount):
        b = self.books[account]

        async def go():
            async with make_sessionmaker(self.engine)() as s, s.begin():
                return await ledger.topup(s, account_id=b.account_id, bucket=bucket, amount=amount,
                                          reference=uuid.uuid4().hex)

        assert self.run(go()).created
        b.oracle.available[bucket] += amount
        self.dirty = True

    # -- what must hold after every step -----------------------------------------------------

    @invariant()
    def ledger_matches_oracle(self):
        if not self.dirty:
            return
        self.dirty = False
        for b in self.books:
            snap = self.run(ledger_snapshot(self.engine, b.account_id, b.oracle.owners()))
            assert snap == b.oracle.snapshot()
            balances, counters = snap
            assert all(available >= 0 and held >= 0 for available, held in balances.values())
            for _, owner, cap in self.all_caps(b):
                assert cap is None or sum(counters[owner]) <= cap, (owner, counters[owner], cap)
            holds, expired, overage = self.run(self.hold_state(b.account_id))
            assert holds == {h: v.amount for h, v in b.oracle.holds.items()}
            assert expired == b.expired
            assert overage == b.oracle.overage

    @staticmethod
    def all_caps(b: Books) -> list[tuple[str, str, int | None]]:
        o = b.oracle
        return ([("key_total", k, o.key_total[k]) for k in o.key_project]
                + [("project_total", p, c) for p, c in o.project_total.items()]
                + [("run", r, c) for r, c in o.run_budget.items()])

    async def transfer_count(self, account_id: str) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM transfers WHERE account_id = :a"),
                                       {"a": account_id})).scalar_one()

    async def hold_state(self, account_id: str) -> tuple[dict[int, int], set[int], int]:
        """The open holds (id -> amount), the expired ones, and the overage booked for the account."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, status, amount FROM holds WHERE account_id = :a"),
                                       {"a": account_id})).all()
            overage = (await conn.execute(text("""
                SELECT coalesce(sum(t.amount), 0) FROM transfers t
                  JOIN ledger_accounts la ON la.id = t.debit_account_id AND la.code = 'overage'
                 WHERE t.account_id = :a"""), {"a": account_id})).scalar_one()
        return ({r.id: int(r.amount) for r in rows if r.status == "open"},
                {r.id for r in rows if r.status == "expired"}, int(overage))

    def teardown(self):
        try:
            if self.books:
                if self.queue:
                    self.flush()
                self.queue = [Finish(r, "release", 0) for r in self.accepted if r.hold_id in r.books.oracle.holds]
                if self.queue:
                    self.flush()
                self.dirty = True
                self.ledger_matches_oracle()
                self.run(self.verified())
        finally:
            logging.getLogger("tokens_forge.ledger").removeHandler(self.log)
            self.run(self.writer.close())
            self.run(self.pg.close())
            self.run(self.engine.dispose())
            self.loop.close()

    async def verified(self) -> None:
        async with self.engine.connect() as conn:
            good, checks = await verify(conn, sweep_interval_s=60)
        assert good, [c.as_dict() for c in checks if not c.ok]


STATEFUL = settings(max_examples=40 if LONG else 15, stateful_step_count=50 if LONG else 30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_batch_path_matches_oracle(database):
    machine = type("Machine", (BatchMachine,), {"database": database})
    run_state_machine_as_test(machine, settings=STATEFUL)
