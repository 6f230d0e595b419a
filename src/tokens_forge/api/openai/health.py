from fastapi import APIRouter, Request

from tokens_forge.api.deps import ApiKeyDep
from tokens_forge.api.paging import page

router = APIRouter(tags=["openai: routes"])


@router.get("/v1/routes/health")
async def routes_health(request: Request, key: ApiKeyDep) -> dict:
    """Every route this key may use: state (healthy/degraded/down), success rate, p50/p95 latency,
    last error. Computed from recent attempts; every worker agrees within a few seconds."""
    state = request.app.state
    stats = await state.health.refresh()
    data = []
    for r in await state.routes.all_routes():
        if not key.may_use_model(r.model) or r.kind not in key.allowed_route_kinds:
            continue
        s = stats.get(r.id)
        data.append({
            "route_id": r.id, "model": r.model, "kind": r.kind, "state": s.state if s else "healthy",
            "success_rate": s.success_rate if s else None,
            "latency_ms": {"p50": s.p50_ms if s else None, "p95": s.p95_ms if s else None},
            "last_error": s.last_error if s else None, "samples": s.samples if s else 0,
            "consecutive_failures": s.consecutive_failures if s else 0,
        })
    return page(data, None)
