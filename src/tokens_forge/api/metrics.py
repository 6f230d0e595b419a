"""GET /metrics: Prometheus text format, one view of every worker process (SPEC §11)."""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter, Request, Response

from tokens_forge.api.deps import bearer
from tokens_forge.errors import Unauthorized
from tokens_forge.observability.gauges import database_families, route_families
from tokens_forge.observability.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Every worker's counters and histograms, and the database's gauges (money held, open
    holds) read now. With TF_METRICS_TOKEN set, `Authorization: Bearer $TF_METRICS_TOKEN`."""
    state = request.app.state
    expected = state.settings.metrics_token
    if expected and not hmac.compare_digest(bearer(request).encode(), expected.encode()):
        raise Unauthorized("missing or wrong metrics token (Authorization: Bearer $TF_METRICS_TOKEN)")
    families = await database_families(state.pg) + route_families(state.health.all_stats())
    body = state.obs.metrics.exposition(families)
    # Which worker answered: lets an operator (and the tests) see that any of them gives the whole view.
    return Response(body, media_type=CONTENT_TYPE, headers={"X-TF-Worker-Pid": str(os.getpid())})
