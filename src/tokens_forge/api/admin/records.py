"""Admin views of records: the audit trail, the ledger verifier, receipts across accounts."""

from fastapi import APIRouter, Request

from tokens_forge.api.deps import SessionDep
from tokens_forge.api.paging import CursorQ, LimitQ, decode_cursor, encode_cursor, page
from tokens_forge.audit.service import list_entries
from tokens_forge.ledger.verify import verify
from tokens_forge.receipts.service import get_receipt

router = APIRouter(tags=["admin: records"])


@router.get("/audit")
async def list_audit(session: SessionDep, limit: LimitQ = 50, cursor: CursorQ = None,
                     target_id: str | None = None, action: str | None = None) -> dict:
    """Every admin change (actor, action, target, before, after, time), newest first. Append-only."""
    before = decode_cursor(cursor, 1)
    async with session.begin():
        rows = await list_entries(session, limit=limit + 1, before_id=before[0] if before else None,
                                  target_id=target_id, action=action)
    more = len(rows) > limit
    rows = rows[:limit]
    return page(rows, encode_cursor(rows[-1]["seq"]) if more else None)


@router.get("/ledger/verify")
async def verify_ledger(request: Request, session: SessionDep) -> dict:
    """Recompute every balance from the transfers and check every ledger invariant."""
    async with session.begin():
        ok, checks = await verify(await session.connection(),
                                  sweep_interval_s=request.app.state.settings.sweep_interval_s)
    return {"ok": ok, "checks": [c.as_dict() for c in checks]}


@router.get("/receipts/{receipt_id}")
async def admin_receipt(receipt_id: str, session: SessionDep) -> dict:
    async with session.begin():
        return await get_receipt(session, receipt_id, None)
