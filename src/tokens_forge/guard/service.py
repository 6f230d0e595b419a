"""Reserve and resolve holds one at a time (tf_write_batch with one item, ledger/sql/), and what is
left of a key's budget. Refusals come back as data; the pipeline turns them into 402 answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tokens_forge.guard import money
from tokens_forge.guard.money import SCOPES

if TYPE_CHECKING:
    from tokens_forge.keys.rate_limits import RateState

SCOPE_NAMES = {**SCOPES, "key_revoked": "the key"}


@dataclass(frozen=True)
class Reservation:
    hold_id: int | None
    transfer_id: int | None
    refused_scope: str | None
    remaining: int
    rate: RateState | None = None  # the key's rate limits after a request's first attempt

    @property
    def ok(self) -> bool:
        return self.refused_scope is None


@dataclass(frozen=True)
class Resolution:
    resolved: bool
    charged: int
    overage: int
    transfer_ids: list[int]


def _write(finishes: list[dict], opens: list[dict]):
    return text("SELECT * FROM tf_write_batch(CAST(:f AS jsonb), CAST(:o AS jsonb), true)").bindparams(
        f=orjson.dumps(finishes).decode(), o=orjson.dumps(opens).decode())


async def reserve(conn: AsyncConnection, *, key_id: str, bucket: str, amount: int, receipt_id: str,
                  attempt_no: int, run_id: str | None, ttl_s: float, owner_id: str | None = None) -> Reservation:
    """One reservation through tf_write_batch, in the caller's transaction (its receipt must exist;
    no attempt row). The hot path goes through ledger.attempts instead."""
    item = {"receipt_id": receipt_id, "create": False, "key_id": key_id, "run_id": run_id, "bucket": bucket,
            "attempt_no": attempt_no, "amount": amount, "ttl_s": ttl_s, "owner_id": owner_id}
    row = (await conn.execute(_write([], [item]))).one()
    transfer = None
    if row.hold_id is not None:
        transfer = (await conn.execute(text("SELECT id FROM transfers WHERE hold_id = :h AND kind = 'reserve'"),
                                       {"h": row.hold_id})).scalar()
    return Reservation(row.hold_id, transfer, row.refused_scope, int(row.remaining or 0))


async def resolve(conn: AsyncConnection, *, hold_id: int, charge: int, kind: str = "settle",
                  status: str | None = None) -> Resolution:
    """Resolve one hold through tf_write_batch, in the caller's transaction: charge what fits the
    hold and book the rest as overage. kind: 'settle' or 'failure_charge'; status: 'settled',
    'voided' or 'expired' (None: settled when something is charged, else voided)."""
    amount = (await conn.execute(text("SELECT amount FROM holds WHERE id = :h"), {"h": hold_id})).scalar() or 0
    paid, overage = money.split_at_hold(charge, amount)
    item = {"hold_id": hold_id, "charge": paid, "overage": overage, "kind": kind, "status": status, "record": False}
    row = (await conn.execute(_write([item], []))).one()
    ids = (await conn.execute(text("SELECT id FROM transfers WHERE hold_id = :h AND kind <> 'reserve' ORDER BY id"),
                              {"h": hold_id})).scalars().all()
    return Resolution(bool(row.resolved), int(row.charged), overage if row.resolved else 0, list(ids))


_REMAINING = """
    WITH k AS (SELECT * FROM api_keys WHERE id = $1),
         p AS (SELECT pr.* FROM projects pr JOIN k ON pr.id = k.project_id),
         day AS (SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d),
         used AS (
           SELECT sc.scope, sc.pending_micros + sc.posted_micros AS u FROM spend_counters sc, k, p, day
            WHERE (sc.owner_id = k.id AND ((sc.scope = 'key_daily' AND sc.period = day.d) OR sc.scope = 'key_total'))
               OR (sc.owner_id = p.id AND ((sc.scope = 'project_daily' AND sc.period = day.d)
                                           OR sc.scope = 'project_total'))
               OR (sc.scope = 'run' AND sc.owner_id = $3))
    SELECT least(
        (SELECT credits_posted - debits_posted FROM ledger_accounts, k WHERE code = 'wallet:' || k.account_id || ':' || $2),
        (SELECT k.per_request_limit_micros FROM k),
        (SELECT k.daily_limit_micros - coalesce((SELECT u FROM used WHERE scope = 'key_daily'), 0) FROM k),
        (SELECT k.total_limit_micros - coalesce((SELECT u FROM used WHERE scope = 'key_total'), 0) FROM k),
        (SELECT p.daily_limit_micros - coalesce((SELECT u FROM used WHERE scope = 'project_daily'), 0) FROM p),
        (SELECT p.total_limit_micros - coalesce((SELECT u FROM used WHERE scope = 'project_total'), 0) FROM p),
        (SELECT r.budget_micros - coalesce((SELECT u FROM used WHERE scope = 'run'), 0) FROM runs r WHERE r.id = $3))"""


async def remaining_budget(pg: asyncpg.Pool | asyncpg.Connection, *, key_id: str, bucket: str,
                           run_id: str | None) -> int:
    """The least that any cap or the bucket still allows (a read, for sizing max_tokens; the
    reservation itself re-checks atomically)."""
    return max(int(await pg.fetchval(_REMAINING, key_id, bucket, run_id) or 0), 0)
