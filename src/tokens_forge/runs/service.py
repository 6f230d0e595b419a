"""Agent runs: what a request tagged with X-TF-Run-Id may do, given the run's state."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokens_forge.errors import Conflict, NotFound, SpendGuardError

REFUSALS = {
    "paused": ("run_paused", "run {id} is paused; resume it (POST /v1/runs/{id}/resume) to send requests"),
    "cancelled": ("run_cancelled", "run {id} was cancelled; start a new run"),
    "finished": ("run_finished", "run {id} is finished; start a new run"),
}


async def check_run_accepts(engine: AsyncEngine, run_id: str, account_id: str) -> None:
    async with engine.connect() as conn:
        status = (await conn.execute(text("SELECT status FROM runs WHERE id = :r AND account_id = :a"),
                                     {"r": run_id, "a": account_id})).scalar_one_or_none()
    if status is None:
        raise NotFound(f"run {run_id!r} does not exist", param="X-TF-Run-Id")
    if status in REFUSALS:
        code, message = REFUSALS[status]
        raise Conflict(message.format(id=run_id), code=code)
    if status == "budget_exhausted":
        raise SpendGuardError(f"run {run_id} has exhausted its budget", code="spend_limit_exceeded")
