"""Helpers of the ledger tests: funded wallets with keys and caps (made through the admin API),
receipt rows for holds to point at, and one-transaction wrappers of reserve and resolve."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import ok
from tokens_forge.db.engine import make_engine
from tokens_forge.guard import service as guard
from tokens_forge.ids import new_id
from tokens_forge.ledger.service import BucketBalance, balances
from tokens_forge.ledger.verify import verify

HOLD_TTL_S = 3600.0


@dataclass(frozen=True)
class Wallet:
    account_id: str
    project_id: str
    key_ids: list[str]

    @property
    def key_id(self) -> str:
        return self.key_ids[0]


@pytest.fixture
def wallet(admin):
    """Factory: an account with funded buckets, a project and `keys` keys, with the caps asked."""

    async def make(credit: int = 0, routed: int = 0, keys: int = 1, key_limits: dict | None = None,
                   project_limits: dict | None = None) -> Wallet:
        acct = ok(await admin.post("/accounts", json={"name": "ledger-" + uuid.uuid4().hex[:8]}))
        for bucket, amount in (("credit", credit), ("routed", routed)):
            if amount:
                ok(await admin.post(f"/accounts/{acct['id']}/topups", json={
                    "bucket": bucket, "amount_micros": amount, "reference": uuid.uuid4().hex}))
        proj = ok(await admin.post("/projects", json={"account_id": acct["id"], "name": "p",
                                                      "limits": project_limits or {}}))
        key_ids = [ok(await admin.post("/keys", json={"project_id": proj["id"], "name": f"k{i}",
                                                      "limits": key_limits or {}}))["id"] for i in range(keys)]
        return Wallet(acct["id"], proj["id"], key_ids)

    return make


@pytest.fixture(scope="session")
async def engine(app):
    """An engine of its own with a bounded pool: each reserve and resolve runs in its own
    transaction on its own connection, 20 at a time, without exhausting the connections of a
    server that other test sessions share."""
    db = app.state.database
    own = make_engine(db.url, pool_size=20, max_overflow=0, pooled=db.pooled)
    yield own
    await own.dispose()


async def new_receipts(engine: AsyncEngine, w: Wallet, n: int) -> list[str]:
    """Pending receipt rows for holds to point at (the hold's foreign key)."""
    ids = [new_id("rcpt") for _ in range(n)]
    async with engine.begin() as conn:
        await conn.execute(text("""
            INSERT INTO receipts (id, account_id, project_id, key_id, model)
            SELECT unnest(CAST(:ids AS TEXT[])), :a, :p, :k, 'ledger-test'"""),
            {"ids": ids, "a": w.account_id, "p": w.project_id, "k": w.key_id})
    return ids


async def close_receipts(engine: AsyncEngine, ids: list[str]) -> None:
    """Close the receipts whose holds are all resolved, with what their holds charged."""
    async with engine.begin() as conn:
        await conn.execute(text("""
            UPDATE receipts r SET status = 'succeeded', completed_at = clock_timestamp(),
                   total_charged_micros = (SELECT coalesce(sum(charged + late_charged), 0) FROM holds h WHERE h.receipt_id = r.id)
             WHERE id = ANY(:ids) AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.receipt_id = r.id
                                                                      AND h.status = 'open')"""),
            {"ids": ids})


async def reserve(engine: AsyncEngine, key_id: str, receipt_id: str, amount: int, bucket: str = "credit",
                  attempt_no: int = 1) -> guard.Reservation:
    async with engine.begin() as conn:
        return await guard.reserve(conn, key_id=key_id, bucket=bucket, amount=amount, receipt_id=receipt_id,
                                   attempt_no=attempt_no, run_id=None, ttl_s=HOLD_TTL_S)


RESOLUTIONS = {  # how a hold ends: (kind, status)
    "settle": ("settle", "settled"),
    "failure_charge": ("failure_charge", "settled"),
    "void": ("settle", "voided"),
    "expire": ("settle", "expired"),
}


async def resolve(engine: AsyncEngine, hold_id: int, how: str = "settle", charge: int = 0) -> guard.Resolution:
    kind, status = RESOLUTIONS[how]
    charge = charge if how in ("settle", "failure_charge") else 0
    async with engine.begin() as conn:
        return await guard.resolve(conn, hold_id=hold_id, charge=charge, kind=kind, status=status)


async def bucket_balances(engine: AsyncEngine, account_id: str) -> dict[str, BucketBalance]:
    async with engine.connect() as conn:
        return await balances(conn, account_id)


async def counters(engine: AsyncEngine, owner_id: str) -> dict[str, tuple[int, int]]:
    """scope -> (pending, posted) of one key's or project's spend counters."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT scope, pending_micros, posted_micros FROM spend_counters "
                                        "WHERE owner_id = :o"), {"o": owner_id})).all()
    return {r.scope: (int(r.pending_micros), int(r.posted_micros)) for r in rows}


async def ledger_state(engine: AsyncEngine, w: Wallet) -> tuple:
    """Everything a refused or repeated operation must leave unchanged."""
    async with engine.connect() as conn:
        n = (await conn.execute(text("SELECT count(*), coalesce(max(id), 0) FROM transfers WHERE account_id = :a"),
                                {"a": w.account_id})).one()
        holds = (await conn.execute(text("SELECT id, status, charged FROM holds WHERE account_id = :a ORDER BY id"),
                                    {"a": w.account_id})).all()
    owners = [*w.key_ids, w.project_id]
    return (await bucket_balances(engine, w.account_id), tuple(n), [tuple(h) for h in holds],
            [await counters(engine, o) for o in owners])


async def assert_verified(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        good, checks = await verify(conn, sweep_interval_s=60)
    assert good, [c.as_dict() for c in checks if not c.ok]
