from fastapi import APIRouter, Request

from tokens_forge.api.deps import ApiKeyDep
from tokens_forge.api.paging import page
from tokens_forge.routing.health import health_row

router = APIRouter(tags=["openai: routes"])


@router.get("/v1/routes/health")
async def routes_health(request: Request, key: ApiKeyDep) -> dict:
    """Every route this key may use: state (healthy/degraded/down), success rate, p50/p95 latency,
    last error. Computed from recent attempts; every worker agrees within a few seconds."""
    state = request.app.state
    stats = await state.health.refresh()
    data = [health_row(r, stats.get(r.id)) for r in await state.routes.all_routes()
            if key.may_use_model(r.model) and r.kind in key.allowed_route_kinds]
    return page(data, None)
