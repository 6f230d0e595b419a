"""Admin views of records: the audit trail, the ledger verifier, receipts across accounts."""

from fastapi import APIRouter, Request, Response

from tokens_forge.api.deps import SessionDep
from tokens_forge.api.paging import (
    CursorQ,
    LimitQ,
    decode_cursor,
    page_of,
)
from tokens_forge.api.records import FormatQ, SinceQ, UntilQ, list_or_export, summary
from tokens_forge.audit.service import list_entries
from tokens_forge.ledger.verify import verify
from tokens_forge.receipts.service import get_receipt
from tokens_forge.records.filters import RecordFilters
from tokens_forge.records.queries import USAGE_COLUMNS, USAGE_SQL, USAGE_STATUSES

router = APIRouter(tags=["admin: records"])


@router.get("/audit")
async def list_audit(session: SessionDep, limit: LimitQ = 50, cursor: CursorQ = None,
                     target_id: str | None = None, action: str | None = None) -> dict:
    """Every admin change (actor, action, target, before, after, time), newest first. Append-only."""
    before = decode_cursor(cursor, 1, (int,))
    async with session.begin():
        rows = await list_entries(session, limit=limit + 1, before_id=before[0] if before else None,
                                  target_id=target_id, action=action)
    return page_of(rows, limit, lambda r: (r["seq"],))


@router.get("/ledger/verify")
async def verify_ledger(request: Request, session: SessionDep) -> dict:
    """Recompute every balance from the transfers and check every ledger invariant."""
    async with session.begin():
        settings = request.app.state.settings
        ok, checks = await verify(await session.connection(), sweep_interval_s=settings.sweep_interval_s,
                                  dead_after_s=settings.worker_dead_after_s)
    return {"ok": ok, "checks": [c.as_dict() for c in checks]}


@router.get("/receipts/{receipt_id}")
async def admin_receipt(receipt_id: str, session: SessionDep) -> dict:
    async with session.begin():
        return await get_receipt(session, receipt_id, None)


@router.get("/usage", response_model=None)
async def admin_usage(request: Request, limit: LimitQ = 50, cursor: CursorQ = None, account_id: str | None = None,
                      since: SinceQ = None, until: UntilQ = None, model: str | None = None,
                      route_kind: str | None = None, bucket: str | None = None, run_id: str | None = None,
                      status: str | None = None, key_id: str | None = None,
                      format: FormatQ = None) -> dict | Response:
    """Usage across accounts (filter with `account_id`), one row per receipt and paying bucket;
    `?format=csv|jsonl` streams every row."""
    filters = RecordFilters(account_id, since, until, model, route_kind, bucket, run_id, status, key_id)
    return await list_or_export(request, USAGE_SQL, USAGE_COLUMNS, filters.check(USAGE_STATUSES), limit=limit,
                                cursor=cursor, fmt=format, name="usage")


@router.get("/usage/summary")
async def admin_usage_summary(request: Request, by: str = "key", account_id: str | None = None,
                              since: SinceQ = None, until: UntilQ = None, model: str | None = None,
                              bucket: str | None = None, key_id: str | None = None) -> dict:
    """Usage summed per `by` (`day`, `key`, `model`, `project`, `bucket`) and bucket, across accounts
    or for `account_id`: requests, tokens, and what the ledger charged."""
    filters = RecordFilters(account_id, since, until, model, None, bucket, None, None, key_id)
    return await summary(request, filters.check(USAGE_STATUSES), by)
