"""Route health for operators: every enabled route, whoever may use it (same rows as /v1/routes/health)."""

from fastapi import APIRouter, Request

from tokens_forge.api.paging import page
from tokens_forge.routing.health import health_row

router = APIRouter(tags=["admin: routes"])


@router.get("/route-health")
async def route_health(request: Request) -> dict:
    """Per enabled route: state (healthy / degraded / down), success rate, latency p50/p95, last error."""
    state = request.app.state
    stats = await state.health.refresh()
    return page([health_row(r, stats.get(r.id)) for r in await state.routes.all_routes()], None)
