"""The preflight panel and agent runs (SPEC §5, §8). Every run is scoped to the key's account."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from tokens_forge.api.deps import ApiKeyDep
from tokens_forge.api.paging import (
    CursorQ,
    LimitQ,
    decode_time_cursor,
    encode_cursor,
    page,
)
from tokens_forge.runs import service
from tokens_forge.runs.schemas import PreflightRequest, RunCreate

router = APIRouter(tags=["openai: runs"])


@asynccontextmanager
async def snapshot(request: Request) -> AsyncIterator[AsyncConnection]:
    """A read-only view of one instant: a run's money, counts, receipts and ledger entries are
    read by several statements, and requests settle meanwhile; one snapshot keeps them agreeing."""
    async with request.app.state.engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        yield conn


@router.post("/v1/preflight")
async def preflight(body: PreflightRequest, request: Request, key: ApiKeyDep) -> dict:
    """What one request (`messages`, `max_tokens`) or a run (`mode`, `run_id`) will likely cost and
    take, which route and bucket pay, the caps that apply, warnings, and `ok_to_start`.
    Charges nothing."""
    async with request.app.state.engine.connect() as conn:
        return await service.preflight(request.app.state, conn, key, body)


@router.post("/v1/runs", status_code=201)
async def create_run(body: RunCreate, request: Request, key: ApiKeyDep) -> dict:
    """Create a run (status `ready`) with its budget and the preflight it starts from. Send its
    requests with `X-TF-Run-Id: <id>`."""
    async with request.app.state.engine.begin() as conn:
        return await service.create_run(request.app.state, conn, key, body)


@router.get("/v1/runs")
async def list_runs(request: Request, key: ApiKeyDep, limit: LimitQ = 50, cursor: CursorQ = None) -> dict:
    """The account's runs, newest first, with their spend against the budget."""
    async with request.app.state.engine.connect() as conn:
        data, nxt = await service.list_runs(conn, key.account_id, limit, decode_time_cursor(cursor))
    return page(data, encode_cursor(*nxt) if nxt else None)


@router.get("/v1/runs/{run_id}")
async def get_run(run_id: str, request: Request, key: ApiKeyDep) -> dict:
    """A run: status, budget, spent (posted) and held (reserved) micros, requests by outcome,
    failed attempts, last activity, and its preflight."""
    async with snapshot(request) as conn:
        return await service.get_run(conn, run_id, key.account_id)


async def _control(request: Request, key: ApiKeyDep, run_id: str, action: str) -> dict:
    async with request.app.state.engine.begin() as conn:
        return await service.control(conn, run_id, key.account_id, action)


@router.post("/v1/runs/{run_id}/pause")
async def pause_run(run_id: str, request: Request, key: ApiKeyDep) -> dict:
    """New requests of the run get `409 run_paused`; requests in flight finish."""
    return await _control(request, key, run_id, "pause")


@router.post("/v1/runs/{run_id}/resume")
async def resume_run(run_id: str, request: Request, key: ApiKeyDep) -> dict:
    """Lift a pause: the run accepts requests again."""
    return await _control(request, key, run_id, "resume")


@router.post("/v1/runs/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request, key: ApiKeyDep) -> dict:
    """Refuse new requests and abort the run's requests in flight, in every gateway process,
    within 2 s. An aborted request is charged its input and the output delivered so far."""
    run = await _control(request, key, run_id, "cancel")
    # the NOTIFY reaches every worker, this one included; this makes this worker's abort immediate
    request.app.state.flights.cancel_run(run_id)
    return run


@router.post("/v1/runs/{run_id}/finish")
async def finish_run(run_id: str, request: Request, key: ApiKeyDep) -> dict:
    """Close the run: new requests get `409 run_finished`."""
    return await _control(request, key, run_id, "finish")


@router.get("/v1/runs/{run_id}/receipt")
async def run_receipt(run_id: str, request: Request, key: ApiKeyDep) -> dict:
    """The run's receipt: every request with its attempts, totals per bucket, failed-request
    charges, and the run's ledger entries."""
    async with snapshot(request) as conn:
        return await service.run_receipt(conn, run_id, key.account_id)
