"""Client views (signed in with an API key): overview, playground, runs, records, receipts, route
health. Each page reads the API as that key (`ApiDep`) and renders what it answered."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from tokens_forge.console import directory, render
from tokens_forge.console.api import ApiError, ConsoleApi
from tokens_forge.console.charts import spend_chart
from tokens_forge.console.deps import ApiDep, ConsoleRoute, KeySessionDep
from tokens_forge.runs.service import TRANSITIONS

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SPEND_SCOPES = ("key_daily", "key_total", "project_daily", "project_total")
OPEN_RUN_STATUSES = ("ready", "running", "paused")
RECORDS = {  # page -> (API path, the API's filters for it)
    "usage": ("/v1/usage", ("since", "until", "model", "route_kind", "bucket", "run_id", "status")),
    "failures": ("/v1/failures", ("since", "until", "model", "route_kind", "bucket", "run_id", "status")),
    "ledger": ("/v1/wallet/ledger", ("receipt_id", "run_id", "bucket")),
}
PROBE_MESSAGES = [{"role": "user", "content": "Hello"}]


async def _models(api: ConsoleApi) -> list[dict]:
    """The models this key may use, with their routes and prices (GET /v1/models)."""
    return (await api.get("/v1/models"))["data"]


@router.get("/console")
async def overview(request: Request, session: KeySessionDep, api: ApiDep, model: str | None = None) -> Response:
    """Both buckets, spend against every limit, current warnings, 30 days of spend per bucket."""
    wallet = await api.get("/v1/wallet")
    models = await _models(api)
    ids = [m["id"] for m in models]
    model = model if model in ids else (ids[0] if ids else None)
    panel, panel_error = None, None
    if model is not None:
        try:  # the limits (with project spend) and warnings as the preflight sees a small request
            panel = await api.post("/v1/preflight", {"model": model, "messages": PROBE_MESSAGES})
        except ApiError as exc:
            panel_error = exc
    async with request.app.state.engine.connect() as conn:
        days = await directory.daily_spend(conn, wallet["account_id"])
    return render.html(request, "overview.html", session, active="overview", wallet=wallet, models=ids, model=model,
                       panel=panel, panel_error=panel_error, scopes=SPEND_SCOPES, chart=spend_chart(days), days=days)


@router.get("/console/playground")
async def playground(request: Request, session: KeySessionDep, api: ApiDep, model: str | None = None,
                     run_id: str | None = None) -> Response:
    runs = [r for r in (await api.get("/v1/runs", limit=100))["data"] if r["status"] in OPEN_RUN_STATUSES]
    return render.html(request, "playground.html", session, active="playground", models=await _models(api),
                       runs=runs, model=model, run_id=run_id)


@router.post("/console/playground/preflight")
async def preflight_fragment(request: Request, session: KeySessionDep, api: ApiDep,
                             body: dict[str, Any] = Body(...)) -> Response:
    """The preflight panel for the playground's current request, as an HTML fragment."""
    panel = await api.post("/v1/preflight", body)
    return render.html(request, "_preflight.html", session, panel=panel)


@router.get("/console/runs")
async def runs(request: Request, session: KeySessionDep, api: ApiDep, cursor: str | None = None) -> Response:
    listing = await api.get("/v1/runs", limit=50, cursor=cursor)
    return render.html(request, "runs.html", session, active="runs", runs=listing["data"],
                       next_url=_next(request, listing), models=await _models(api))


async def _run_state(api: ConsoleApi, run_id: str) -> dict[str, Any]:
    run = await api.get(f"/v1/runs/{run_id}")
    settled = run["held_micros"] == 0 and run["requests"]["pending"] == 0
    done = run["status"] not in OPEN_RUN_STATUSES and settled
    actions = _actions(run["status"])
    receipt = await api.get(f"/v1/runs/{run_id}/receipt") if done else None
    return {"run": run, "done": done, "actions": actions, "run_receipt": receipt}


def _actions(status: str) -> list[str]:
    """The controls that would change this run, from the run service's own transition table (which
    also accepts repeating an action as a no-op: those are not offered)."""
    return [a for a, (start, _, past) in TRANSITIONS.items()
            if status in start and status != past and (a != "resume" or status == "paused")]


@router.get("/console/runs/{run_id}")
async def run_page(request: Request, run_id: str, session: KeySessionDep, api: ApiDep) -> Response:
    return render.html(request, "run.html", session, active="runs", **await _run_state(api, run_id))


@router.get("/console/runs/{run_id}/live")
async def run_live(request: Request, run_id: str, session: KeySessionDep, api: ApiDep) -> Response:
    """The changing part of the run page, polled by its script every second."""
    return render.html(request, "_run_live.html", session, **await _run_state(api, run_id))


@router.get("/console/receipts/{receipt_id}")
async def receipt_page(request: Request, receipt_id: str, session: KeySessionDep, api: ApiDep,
                       fragment: bool = False) -> Response:
    receipt = await api.get(f"/v1/receipts/{receipt_id}")
    return render.html(request, "_receipt.html" if fragment else "receipt.html", session, active="records",
                       receipt=receipt)


@router.get("/console/records/{kind}")
async def records(request: Request, kind: str, session: KeySessionDep, api: ApiDep, limit: int = 50,
                  cursor: str | None = None) -> Response:
    """Usage, failures or the wallet ledger with the API's filters, paging and exports."""
    if kind not in RECORDS:
        kind = "usage"
    path, names = RECORDS[kind]
    filters = {n: request.query_params.get(n, "").strip() for n in names}
    query = {n: _utc(v) if n in ("since", "until") else v for n, v in filters.items() if v}
    listing = await api.get(path, limit=max(1, min(limit, 500)), cursor=cursor, **query)
    exports = {fmt: f"/console/api{path}?{urlencode({**query, 'format': fmt})}" for fmt in ("csv", "jsonl")}
    return render.html(request, "records.html", session, active="records", kind=kind, rows=listing["data"],
                       filters=filters, limit=limit, next_url=_next(request, listing), exports=exports,
                       first_url=f"{request.url.path}?{urlencode({**filters, 'limit': limit})}")


@router.get("/console/records")
async def records_home(request: Request, session: KeySessionDep, api: ApiDep) -> Response:
    return await records(request, "usage", session, api)


@router.get("/console/health")
async def route_health(request: Request, session: KeySessionDep, api: ApiDep) -> Response:
    routes = (await api.get("/v1/routes/health"))["data"]
    return render.html(request, "health.html", session, active="health", routes=routes)


def _next(request: Request, listing: dict) -> str | None:
    if not listing.get("next_cursor"):
        return None
    params = dict(request.query_params)
    params["cursor"] = listing["next_cursor"]
    return f"{request.url.path}?{urlencode(params)}"


def _utc(value: str) -> str:
    """A datetime-local field ("2025-01-31T12:00") is read as UTC."""
    if len(value) == 16 and "T" in value:
        return value + ":00Z"
    if len(value) == 10:
        return value + "T00:00:00Z"
    return value
