"""Recovery: holds carry an expiry on the database clock. The sweeper (in every worker, safe to
run concurrently: SKIP LOCKED and the exactly-once resolution of tf_resolve) releases expired
holds and closes their receipts. A settle arriving later finds nothing open and charges nothing."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokens_forge.db.plans import INDEX_ONLY
from tokens_forge.guard.service import resolve


async def sweep_expired(engine: AsyncEngine, batch: int = 100) -> int:
    async with engine.connect() as conn:
        await conn.execute(INDEX_ONLY)
        due = (await conn.execute(text("""
            SELECT id, receipt_id, attempt_no FROM holds WHERE status = 'open' AND expires_at < now()
             ORDER BY expires_at LIMIT :n"""), {"n": batch})).all()
    swept = 0
    for hold_id, receipt_id, attempt_no in due:
        async with engine.begin() as conn:
            locked = (await conn.execute(text(
                "SELECT 1 FROM holds WHERE id = :h AND status = 'open' FOR NO KEY UPDATE SKIP LOCKED"),
                {"h": hold_id})).first()
            if locked is None:
                continue
            res = await resolve(conn, hold_id=hold_id, charge=0, kind="settle", status="expired")
            if not res.resolved:
                continue
            swept += 1
            await conn.execute(text("""
                UPDATE attempts SET ended_at = clock_timestamp(), outcome = 'timeout', charged_micros = 0,
                       charge_reason = 'hold expired: released by the sweeper, nothing charged',
                       error = 'the gateway did not settle this attempt before its hold expired'
                 WHERE receipt_id = :r AND attempt_no = :n AND outcome IS NULL"""),
                {"r": receipt_id, "n": attempt_no})
            await conn.execute(text("""
                UPDATE receipts SET status = 'failed', error_code = 'hold_expired', completed_at = clock_timestamp(),
                       reason = 'the request did not finish before its hold expired; the hold was released'
                 WHERE id = :r AND status = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM holds WHERE receipt_id = :r AND status = 'open')"""),
                {"r": receipt_id})
    return swept


async def forget_old_idempotency_keys(engine: AsyncEngine, batch: int = 1000) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(text("""
            DELETE FROM idempotency_keys WHERE ctid IN (
              SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT :n)"""), {"n": batch})
        return result.rowcount or 0
