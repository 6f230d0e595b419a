"""Agent runs: what a request tagged with X-TF-Run-Id may do, given the run's state."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokens_forge.errors import Conflict, NotFound, SpendGuardError
from tokens_forge.guard.bounds import MESSAGE_OVERHEAD_TOKENS, REQUEST_OVERHEAD_TOKENS, Price, cost

# The smallest request worth sending: one short message, one output token.
MINIMAL_REQUEST_TOKENS = REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + 64

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


async def mark_exhausted_if_spent(engine: AsyncEngine, run_id: str | None, remaining: int, price: Price) -> None:
    """After the run's budget refused a reservation: if what is left cannot pay even a minimal
    request at this route's price, the run is `budget_exhausted` (conditional, so a concurrent
    pause/cancel/finish wins)."""
    if run_id is None or remaining >= cost(MINIMAL_REQUEST_TOKENS, 1, price):
        return
    async with engine.begin() as conn:
        await conn.execute(text("""UPDATE runs SET status = 'budget_exhausted', updated_at = now()
                                    WHERE id = :r AND status IN ('ready', 'running')"""), {"r": run_id})
