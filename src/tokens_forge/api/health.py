import asyncio

from fastapi import APIRouter, Request
from sqlalchemy import text

from tokens_forge.errors import ServiceUnavailable

router = APIRouter(tags=["health"])
HEALTH_TIMEOUT_S = 3.0  # a probe must answer: a database that accepts and then says nothing is "not ready"


@router.get("/healthz")
async def healthz(request: Request) -> dict:
    """200 {"status": "ok"} once the database answers."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S), request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database is "not ready", never a 500
        raise ServiceUnavailable("the database is not reachable") from exc
    return {"status": "ok"}
