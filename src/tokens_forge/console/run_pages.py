"""Run views (signed in with an API key): the runs list with the start form (whose preflight is
shown before Start: `runs.js` asks `/console/runs/preflight` for the panel of the run as the form
describes it, the panel `POST /v1/runs` will store), a run's live page and its polled fragment."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from tokens_forge.console import render
from tokens_forge.console.api import ConsoleApi
from tokens_forge.console.client_pages import OPEN_RUN_STATUSES, models_of
from tokens_forge.console.deps import ApiDep, ConsoleRoute, KeySessionDep, page_names
from tokens_forge.runs.service import TRANSITIONS

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

RUN_FIELDS = ("model", "mode", "budget_micros", "route_preference")


def next_url(request: Request, listing: dict) -> str | None:
    if not listing.get("next_cursor"):
        return None
    params = dict(request.query_params)
    params["cursor"] = listing["next_cursor"]
    return f"{request.url.path}?{urlencode(params)}"


@router.get("/console/runs")
async def runs(request: Request, session: KeySessionDep, api: ApiDep, cursor: str | None = None) -> Response:
    listing = await api.get("/v1/runs", limit=50, cursor=cursor)
    return render.html(request, "runs.html", session, active="runs", runs=listing["data"],
                       next_url=next_url(request, listing), models=await models_of(api),
                       names=await page_names(request, session.account_id))


@router.post("/console/runs/preflight")
async def run_preflight(request: Request, session: KeySessionDep, api: ApiDep,
                        body: dict[str, Any] = Body(...)) -> Response:
    """The panel of the run the start form describes (its budget as the run cap), as a fragment:
    the same panel `POST /v1/runs` stores with the run."""
    panel = await api.post("/v1/preflight", {k: v for k, v in body.items() if k in RUN_FIELDS})
    return render.html(request, "_run_preflight.html", session, panel=panel,
                       names=await page_names(request, session.account_id))


async def run_state(api: ConsoleApi, run_id: str) -> dict[str, Any]:
    run = await api.get(f"/v1/runs/{run_id}")
    settled = run["held_micros"] == 0 and run["requests"]["pending"] == 0
    done = run["status"] not in OPEN_RUN_STATUSES and settled
    receipt = await api.get(f"/v1/runs/{run_id}/receipt") if done else None
    return {"run": run, "done": done, "actions": actions(run["status"]), "run_receipt": receipt}


def actions(status: str) -> list[str]:
    """The controls that would change this run, from the run service's own transition table (which
    also accepts repeating an action as a no-op: those are not offered)."""
    return [a for a, (start, _, past) in TRANSITIONS.items()
            if status in start and status != past and (a != "resume" or status == "paused")]


@router.get("/console/runs/{run_id}")
async def run_page(request: Request, run_id: str, session: KeySessionDep, api: ApiDep) -> Response:
    return render.html(request, "run.html", session, active="runs", **await run_state(api, run_id),
                       names=await page_names(request, session.account_id))


@router.get("/console/runs/{run_id}/live")
async def run_live(request: Request, run_id: str, session: KeySessionDep, api: ApiDep) -> Response:
    """The changing part of the run page, polled by its script every second."""
    return render.html(request, "_run_live.html", session, **await run_state(api, run_id),
                       names=await page_names(request, session.account_id))
