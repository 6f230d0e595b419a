"""A key's view of its account: receipts, wallet, wallet ledger. Every query is scoped to the
key's account; another account's ids are indistinguishable from missing ones."""

from fastapi import APIRouter, Request

from tokens_forge.api.deps import ApiKeyDep
from tokens_forge.api.paging import CursorQ, LimitQ, decode_cursor, encode_cursor, page
from tokens_forge.ledger import views
from tokens_forge.receipts.service import get_receipt

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


@router.get("/v1/wallet/ledger")
async def wallet_ledger(request: Request, key: ApiKeyDep, limit: LimitQ = 50, cursor: CursorQ = None,
                        receipt_id: str | None = None, run_id: str | None = None, bucket: str | None = None) -> dict:
    """Ledger entries of the wallet and hold accounts, newest first, each with the balance after it."""
    before = decode_cursor(cursor, 2)
    async with request.app.state.engine.connect() as conn:
        rows = await views.ledger_entries(conn, key.account_id, receipt_id=receipt_id, run_id=run_id, bucket=bucket,
                                          before=(int(before[0]), str(before[1])) if before else None,
                                          limit=limit + 1)
    data = [views.entry_out(r) for r in rows[:limit]]
    more = len(rows) > limit
    return page(data, encode_cursor(rows[limit - 1].id, rows[limit - 1].side) if more else None)
