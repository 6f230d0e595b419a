"""Every account's runs, for operators: list, show, and stop (cancel) one. A stop is the same
cancel a run's own key can make (every worker aborts the run's requests within 2 s), and it is
audited with the run as it was before and after."""

from fastapi import APIRouter, Request

from tokens_forge.api.deps import AdminDep, SessionDep
from tokens_forge.api.paging import CursorQ, LimitQ, decode_time_cursor, encode_cursor, page
from tokens_forge.audit.service import record
from tokens_forge.errors import InvalidRequest
from tokens_forge.runs import service

router = APIRouter(tags=["admin: runs"])

RUN_STATUSES = ("ready", "running", "paused", "cancelled", "finished", "budget_exhausted")
_SHOWN = ("id", "status", "budget_micros", "spent_micros", "held_micros", "account_id", "key_id")


@router.get("/runs")
async def list_runs(session: SessionDep, limit: LimitQ = 50, cursor: CursorQ = None, account_id: str | None = None,
                    status: str | None = None) -> dict:
    """Runs of every account (or of `account_id`), newest first, with their spend against the budget."""
    if status is not None and status not in RUN_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(RUN_STATUSES)}", param="status")
    async with session.begin():
        data, nxt = await service.list_runs(await session.connection(), account_id, limit,
                                            decode_time_cursor(cursor), status)
    return page(data, encode_cursor(*nxt) if nxt else None)


@router.get("/runs/{run_id}")
async def get_run(run_id: str, session: SessionDep) -> dict:
    async with session.begin():
        return await service.get_run(await session.connection(), run_id, None)


@router.post("/runs/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request, session: SessionDep, actor: AdminDep) -> dict:
    """Stop a customer's run: new requests get `409 run_cancelled`, requests in flight are aborted
    and charged their input and the output delivered."""
    async with session.begin():
        conn = await session.connection()
        before = await service.get_run(conn, run_id, None)
        after = await service.control(conn, run_id, None, "cancel")
        await record(session, actor=actor, action="run.cancel", target_type="run", target_id=run_id,
                     before={k: before[k] for k in _SHOWN}, after={k: after[k] for k in _SHOWN})
    request.app.state.flights.cancel_run(run_id)
    return after
