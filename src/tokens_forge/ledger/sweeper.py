"""Recovery: a hold is released when its worker is gone (its heartbeat stopped: ledger.workers),
or, for a hold that has no owner, when its expiry on the database clock has passed. The sweeper
runs in every worker, safe to run concurrently: SKIP LOCKED, and tf_write_batch resolves a hold
exactly once. A settle arriving later books what was delivered as a late charge, as far as the
funds and caps allow."""

from __future__ import annotations

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokens_forge.db.plans import INDEX_ONLY

_DUE = text("""
    SELECT h.id FROM holds h
     WHERE h.status = 'open'
       AND CASE WHEN h.owner_id IS NULL THEN h.expires_at < now() ELSE tf_owner_gone(h.owner_id, :dead) END
     ORDER BY h.id LIMIT :n
       FOR NO KEY UPDATE SKIP LOCKED""")
_RELEASE = text("SELECT count(*) FILTER (WHERE resolved) FROM tf_write_batch(CAST(:f AS jsonb), '[]'::jsonb, false)")
REASON = "released by the sweeper: the gateway worker serving the request is gone; nothing charged"


def release_item(hold_id: int) -> dict:
    return {"hold_id": hold_id, "charge": 0, "overage": 0, "kind": "settle", "status": "expired",
            "outcome": "timeout", "charge_rule": "none", "reason": REASON,
            "error": "the gateway did not settle this attempt: its worker stopped or lost the database",
            "final_status": "failed", "final_code": "hold_expired",
            "final_reason": "the request did not finish: the gateway worker serving it is gone; its hold was released"}


async def sweep_expired(engine: AsyncEngine, *, dead_after_s: float, batch: int = 100) -> int:
    async with engine.begin() as conn:
        await conn.execute(INDEX_ONLY)
        due = (await conn.execute(_DUE, {"dead": dead_after_s, "n": batch})).scalars().all()
        if not due:
            return 0
        items = orjson.dumps([release_item(h) for h in due]).decode()
        return int((await conn.execute(_RELEASE, {"f": items})).scalar_one())


async def forget_old_idempotency_keys(engine: AsyncEngine, batch: int = 1000) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(text("""
            DELETE FROM idempotency_keys WHERE ctid IN (
              SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT :n)"""), {"n": batch})
        return result.rowcount or 0
