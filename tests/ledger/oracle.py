"""The Python oracle of the ledger's property tests (LEDGER.md): what one account's buckets, holds
and spend counters must say after each reservation, resolution and late charge, computed in plain
Python. The single path (test_properties.py, one item per tf_write_batch) and the batch path
(test_batch_properties.py, the group commit) are checked against this same model.

It models the total caps (a key's total and per-request limits, its project's total, a run's
budget) and the bucket, checked in tf_write_batch's order; the daily caps are left out (they count
the same as the totals within one UTC day, and a run across midnight would split them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokens_forge.ledger import service as ledger

BUCKETS = ("credit", "routed")
SCOPES = ("key_total", "project_total", "run")  # the spend counters the oracle keeps


class Held(NamedTuple):
    key: str
    bucket: str
    amount: int
    run: str | None = None


@dataclass
class Oracle:
    """One account: its buckets, its keys (by project) and runs, and the holds made on them."""

    available: dict[str, int]                 # bucket -> available balance
    key_total: dict[str, int | None]          # key -> total cap
    key_per_request: dict[str, int | None]    # key -> per-request cap
    key_project: dict[str, str]               # key -> its project
    project_total: dict[str, int | None]      # project -> total cap
    run_budget: dict[str, int | None] = field(default_factory=dict)  # run -> budget
    held: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    pending: dict[str, int] = field(default_factory=dict)  # counter owner -> pending
    posted: dict[str, int] = field(default_factory=dict)   # counter owner -> posted
    holds: dict[int, Held] = field(default_factory=dict)     # open holds by id
    released: dict[int, Held] = field(default_factory=dict)  # expired, not late-charged yet
    charged: int = 0   # everything charged to the customer (settles, failure and late charges)
    overage: int = 0   # what upstreams billed beyond the holds (the platform's)

    def used(self, owner: str) -> int:
        return self.pending.get(owner, 0) + self.posted.get(owner, 0)

    def caps(self, key: str, run: str | None) -> list[tuple[str, str, int | None]]:
        """(scope, counter owner, cap) of a hold of `key` (and `run`), in tf_write_batch's order."""
        project = self.key_project[key]
        out = [("key_total", key, self.key_total[key]), ("project_total", project, self.project_total[project])]
        if run is not None:
            out.append(("run", run, self.run_budget[run]))
        return out

    def refusal(self, key: str, bucket: str, amount: int, run: str | None = None) -> tuple[str | None, int]:
        """(refused scope or None, remaining), in the order tf_write_batch checks them."""
        per_request = self.key_per_request[key]
        if per_request is not None and amount > per_request:
            return "key_per_request", per_request
        for scope, owner, cap in self.caps(key, run):
            if cap is not None and cap - self.used(owner) < amount:
                return scope, max(cap - self.used(owner), 0)
        if self.available[bucket] < amount:
            return "bucket", self.available[bucket]
        return None, self.available[bucket] - amount

    def reserve(self, hold_id: int, key: str, bucket: str, amount: int, run: str | None = None) -> None:
        self.available[bucket] -= amount
        self.held[bucket] += amount
        for _, owner, _ in self.caps(key, run):
            self.pending[owner] = self.pending.get(owner, 0) + amount
        self.holds[hold_id] = Held(key, bucket, amount, run)

    def late_charge(self, hold_id: int, charge: int) -> int:
        """A settle after the sweeper released the hold: charged from the wallet once, within every
        cap and the funds. A late settle that finds nothing to take (no funds, a cap reached)
        leaves the hold to a later one, as the ledger does (its late_charged stays 0)."""
        if hold_id not in self.released or charge <= 0:
            return 0
        key, bucket, amount, run = self.released[hold_id]
        late = min(charge, amount, self.available[bucket])  # a charge never exceeds the reservation
        for _, owner, cap in self.caps(key, run):
            if cap is not None:
                late = min(late, max(cap - self.used(owner), 0))
        if late <= 0:
            return 0
        del self.released[hold_id]
        self.available[bucket] -= late
        for _, owner, _ in self.caps(key, run):
            self.posted[owner] = self.posted.get(owner, 0) + late
        self.charged += late
        return late

    def resolve(self, hold_id: int, charge: int, status: str = "settled") -> tuple[int, int]:
        """Close an open hold with what the upstream billed; returns (charged, overage)."""
        held = self.holds.pop(hold_id)
        if status == "expired":
            self.released[hold_id] = held
        charged = min(charge, held.amount)
        self.held[held.bucket] -= held.amount
        self.available[held.bucket] += held.amount - charged
        for _, owner, _ in self.caps(held.key, held.run):
            self.pending[owner] -= held.amount
            self.posted[owner] = self.posted.get(owner, 0) + charged
        self.charged += charged
        overage = max(charge - held.amount, 0)
        self.overage += overage
        return charged, overage

    def owners(self) -> list[str]:
        """Every counter owner: keys, projects, runs."""
        return [*self.key_project, *self.project_total, *self.run_budget]

    def snapshot(self) -> tuple[dict, dict]:
        return ({b: (self.available[b], self.held[b]) for b in BUCKETS},
                {o: (self.pending.get(o, 0), self.posted.get(o, 0)) for o in self.owners()})


async def ledger_snapshot(engine: AsyncEngine, account_id: str, owners: list[str]) -> tuple[dict, dict]:
    """What the ledger says, shaped as Oracle.snapshot: balances per bucket (available, held) and
    the total spend counters (pending, posted) by owner."""
    async with engine.connect() as conn:
        bal = await ledger.balances(conn, account_id)
        rows = (await conn.execute(text("""SELECT owner_id, pending_micros, posted_micros FROM spend_counters
                                            WHERE account_id = :a AND scope = ANY(:s)"""),
                                   {"a": account_id, "s": list(SCOPES)})).all()
    counters = dict.fromkeys(owners, (0, 0))  # a counter is made on first use
    counters.update({r.owner_id: (int(r.pending_micros), int(r.posted_micros)) for r in rows})
    return {b: (v.available_micros, v.held_micros) for b, v in bal.items()}, counters
