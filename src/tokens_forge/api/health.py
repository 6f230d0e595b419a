from fastapi import APIRouter, Request
from sqlalchemy import text

from tokens_forge.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request) -> dict:
    """200 {"status": "ok"} once the database answers."""
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database is "not ready", never a 500
        raise ServiceUnavailable("the database is not reachable") from exc
    return {"status": "ok"}
