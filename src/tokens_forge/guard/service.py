"""Reserve and resolve holds: thin calls of the plpgsql functions of migration 0001 (one round
trip each). Refusals come back as data; the pipeline turns them into 402 answers."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

SCOPE_NAMES = {
    "key_per_request": "the key's per-request limit",
    "key_daily": "the key's daily limit",
    "key_total": "the key's total limit",
    "project_daily": "the project's daily limit",
    "project_total": "the project's total limit",
    "run": "the run's budget",
    "bucket": "the balance",
    "key_revoked": "the key",
}


@dataclass(frozen=True)
class Reservation:
    hold_id: int | None
    transfer_id: int | None
    refused_scope: str | None
    remaining: int

    @property
    def ok(self) -> bool:
        return self.refused_scope is None


@dataclass(frozen=True)
class Resolution:
    resolved: bool
    charged: int
    overage: int
    transfer_ids: list[int]


async def reserve(conn: AsyncConnection, *, key_id: str, bucket: str, amount: int, receipt_id: str,
                  attempt_no: int, run_id: str | None, ttl_s: float) -> Reservation:
    row = (await conn.execute(
        text("SELECT * FROM tf_reserve(:k, :b, :amt, :r, :n, :run, :ttl)"),
        {"k": key_id, "b": bucket, "amt": amount, "r": receipt_id, "n": attempt_no, "run": run_id, "ttl": ttl_s},
    )).one()
    return Reservation(row.hold_id, row.transfer_id, row.refused_scope, int(row.remaining or 0))


async def resolve(conn: AsyncConnection, *, hold_id: int, charge: int, kind: str = "settle",
                  status: str = "settled") -> Resolution:
    """kind: 'settle' or 'failure_charge'; status: 'settled', 'voided' or 'expired'."""
    row = (await conn.execute(
        text("SELECT * FROM tf_resolve(:h, :c, :k, :s)"),
        {"h": hold_id, "c": charge, "k": kind, "s": status},
    )).one()
    return Resolution(bool(row.resolved), int(row.charged), int(row.overage), list(row.transfer_ids or []))


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
