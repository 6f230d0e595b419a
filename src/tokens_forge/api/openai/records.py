"""A key's view of its account: receipts, wallet, wallet ledger. Every query is scoped to the
key's account; another account's ids are indistinguishable from missing ones."""

from fastapi import APIRouter, Request, Response

from tokens_forge.api.deps import ApiKeyDep
from tokens_forge.api.paging import (
    CursorQ,
    LimitQ,
    decode_cursor,
    page_of,
)
from tokens_forge.api.records import FormatQ, SinceQ, UntilQ, list_or_export, summary
from tokens_forge.errors import InvalidRequest
from tokens_forge.ledger import views
from tokens_forge.receipts.service import get_receipt
from tokens_forge.records.export import check_format, export_response
from tokens_forge.records.filters import BUCKETS, RecordFilters, check_storable
from tokens_forge.records.queries import (
    FAILURE_COLUMNS,
    FAILURE_OUTCOMES,
    FAILURES_SQL,
    USAGE_COLUMNS,
    USAGE_SQL,
    USAGE_STATUSES,
)

router = APIRouter(tags=["openai: records"])


@router.get("/v1/receipts/{receipt_id}")
async def receipt(receipt_id: str, request: Request, key: ApiKeyDep) -> dict:
    """One request's receipt: status, every attempt, charges and the ledger transfer ids."""
    async with request.app.state.engine.connect() as conn:
        return await get_receipt(conn, receipt_id, key.account_id)


@router.get("/v1/wallet")
async def wallet(request: Request, key: ApiKeyDep) -> dict:
    """Both buckets (posted, held, available), the limits, and this key's spend today and in total."""
    async with request.app.state.engine.connect() as conn:
        return await views.wallet(conn, key)


@router.get("/v1/usage", response_model=None)
async def usage(request: Request, key: ApiKeyDep, limit: LimitQ = 50, cursor: CursorQ = None,
                since: SinceQ = None, until: UntilQ = None, model: str | None = None, route_kind: str | None = None,
                bucket: str | None = None, run_id: str | None = None, status: str | None = None,
                key_id: str | None = None, format: FormatQ = None) -> dict | Response:
    """One row per request (receipt) and paying bucket, newest first: a request charged on two
    buckets has two rows, so usage summed by bucket equals the ledger. `?format=csv|jsonl` streams
    every matching row."""
    filters = RecordFilters(key.account_id, since, until, model, route_kind, bucket, run_id, status, key_id)
    return await list_or_export(request, USAGE_SQL, USAGE_COLUMNS, filters.check(USAGE_STATUSES), limit=limit,
                                cursor=cursor, fmt=format, name="usage")


@router.get("/v1/usage/summary")
async def usage_summary(request: Request, key: ApiKeyDep, by: str = "day", since: SinceQ = None,
                        until: UntilQ = None, model: str | None = None, route_kind: str | None = None,
                        bucket: str | None = None, run_id: str | None = None, status: str | None = None,
                        key_id: str | None = None) -> dict:
    """The usage rows summed per `by` (`day` (UTC), `key`, `model`, `project` or `bucket`) and bucket:
    requests, tokens and what the ledger charged. Same filters as `/v1/usage`."""
    filters = RecordFilters(key.account_id, since, until, model, route_kind, bucket, run_id, status, key_id)
    return await summary(request, filters.check(USAGE_STATUSES), by)


@router.get("/v1/failures", response_model=None)
async def failures(request: Request, key: ApiKeyDep, limit: LimitQ = 50, cursor: CursorQ = None,
                   since: SinceQ = None, until: UntilQ = None, model: str | None = None,
                   route_kind: str | None = None, bucket: str | None = None, run_id: str | None = None,
                   status: str | None = None, key_id: str | None = None, format: FormatQ = None) -> dict | Response:
    """Failed attempts and refused requests: route, outcome, upstream status, what the ledger charged and why."""
    filters = RecordFilters(key.account_id, since, until, model, route_kind, bucket, run_id, status, key_id)
    return await list_or_export(request, FAILURES_SQL, FAILURE_COLUMNS, filters.check(FAILURE_OUTCOMES),
                                limit=limit, cursor=cursor, fmt=format, name="failures")


@router.get("/v1/wallet/ledger", response_model=None)
async def wallet_ledger(request: Request, key: ApiKeyDep, limit: LimitQ = 50, cursor: CursorQ = None,
                        receipt_id: str | None = None, run_id: str | None = None, bucket: str | None = None,
                        include: str | None = None, format: FormatQ = None) -> dict | Response:
    """The wallet buckets' entries, newest first, one row per transfer with the bucket's own running
    balance after it. `?include=holds` adds the transfers that move money only on the hold side
    (settles, failure charges) and, on every row, the hold account's change and balance."""
    if include not in (None, "", "holds"):
        raise InvalidRequest("include must be holds", param="include")
    holds = include == "holds"
    check_storable(receipt_id=receipt_id, run_id=run_id, bucket=bucket)
    if bucket is not None and bucket not in BUCKETS:
        raise InvalidRequest("bucket must be credit or routed", param="bucket")
    if (fmt := check_format(format)) is not None:
        stmt, params = views.entries_statement(key.account_id, receipt_id=receipt_id, run_id=run_id,
                                               bucket=bucket, before=None, limit=None, include_holds=holds)
        return await export_response(request.app.state.engine, fmt, "wallet-ledger", views.columns(holds), stmt,
                                     params, lambda r: views.entry_out(r, holds))
    before = decode_cursor(cursor, 1, (int,))
    async with request.app.state.engine.connect() as conn:
        rows = await views.ledger_entries(conn, key.account_id, receipt_id=receipt_id, run_id=run_id, bucket=bucket,
                                          before=int(before[0]) if before else None, limit=limit + 1,
                                          include_holds=holds)
    return page_of(rows, limit, lambda r: (r.id,), lambda r: views.entry_out(r, holds))
