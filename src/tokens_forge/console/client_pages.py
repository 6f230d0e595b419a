"""Client views (signed in with an API key): overview, the model marketplace, playground. Each
page reads the API as that key (`ApiDep`) and renders what it answered; runs are in
`run_pages`, records, receipts and route health in `record_pages`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from tokens_forge.console import render
from tokens_forge.console.api import ApiError, ConsoleApi
from tokens_forge.console.charts import breakdown, days_from_summary, spend_chart
from tokens_forge.console.deps import ApiDep, ConsoleRoute, KeySessionDep, page_names

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SPEND_SCOPES = ("key_daily", "key_total", "project_daily", "project_total")
OPEN_RUN_STATUSES = ("ready", "running", "paused")
PROBE_MESSAGES = [{"role": "user", "content": "Hello"}]
CHART_DAYS = 30
ROUTE_KINDS = ("official", "routed")


async def models_of(api: ConsoleApi) -> list[dict]:
    """The models this key may use, with their routes and prices (GET /v1/models)."""
    return (await api.get("/v1/models"))["data"]


@router.get("/console")
async def overview(request: Request, session: KeySessionDep, api: ApiDep, model: str | None = None) -> Response:
    """Both buckets, spend against every limit, current warnings, 30 days of spend per bucket, and
    the same 30 days per key and per model."""
    wallet = await api.get("/v1/wallet")
    models = await models_of(api)
    ids = [m["id"] for m in models]
    model = model if model in ids else (ids[0] if ids else None)
    panel, panel_error = None, None
    if model is not None:
        try:  # the limits (with project spend) and warnings as the preflight sees a small request
            panel = await api.post("/v1/preflight", {"model": model, "messages": PROBE_MESSAGES})
        except ApiError as exc:
            panel_error = exc
    today = datetime.now(UTC).date()
    since = (today - timedelta(days=CHART_DAYS - 1)).isoformat() + "T00:00:00Z"
    summary = {by: (await api.get("/v1/usage/summary", by=by, since=since))["data"] for by in ("day", "key", "model")}
    days = days_from_summary(summary["day"], today, CHART_DAYS)
    return render.html(request, "overview.html", session, active="overview", wallet=wallet, models=ids, model=model,
                       panel=panel, panel_error=panel_error, scopes=SPEND_SCOPES, chart=spend_chart(days), days=days,
                       by_key=breakdown(summary["key"]), by_model=breakdown(summary["model"]),
                       names=await page_names(request, wallet["account_id"]))


@router.get("/console/models")
async def marketplace(request: Request, session: KeySessionDep, api: ApiDep) -> Response:
    """Every model this key may use: its official and routed routes side by side, with the price
    per million tokens, the paying bucket, health and observed latency."""
    health = {h["route_id"]: h for h in (await api.get("/v1/routes/health"))["data"]}
    offers = []
    for m in await models_of(api):
        sides = {kind: [{**r, "health": health.get(r["id"])} for r in m["routes"] if r["kind"] == kind]
                 for kind in ROUTE_KINDS}
        offers.append({"id": m["id"], "sides": sides})
    return render.html(request, "models.html", session, active="models", offers=offers, kinds=ROUTE_KINDS,
                       names=await page_names(request, session.account_id))


@router.get("/console/playground")
async def playground(request: Request, session: KeySessionDep, api: ApiDep, model: str | None = None,
                     run_id: str | None = None, route_preference: str | None = None) -> Response:
    runs = [r for r in (await api.get("/v1/runs", limit=100))["data"] if r["status"] in OPEN_RUN_STATUSES]
    return render.html(request, "playground.html", session, active="playground", models=await models_of(api),
                       runs=runs, model=model, run_id=run_id,
                       preference=route_preference if route_preference in ROUTE_KINDS else "auto")


@router.post("/console/playground/preflight")
async def preflight_fragment(request: Request, session: KeySessionDep, api: ApiDep,
                             body: dict[str, Any] = Body(...)) -> Response:
    """The preflight panel for the playground's current request (or the run about to start), as an
    HTML fragment."""
    panel = await api.post("/v1/preflight", body)
    return render.html(request, "_preflight.html", session, panel=panel,
                       names=await page_names(request, session.account_id))
