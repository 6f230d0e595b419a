"""Record views (signed in with an API key): usage (with per-key and per-model breakdowns of the
same filters), failures, the wallet ledger, a receipt, route health."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokens_forge.console import render
from tokens_forge.console.charts import breakdown
from tokens_forge.console.deps import ApiDep, ConsoleRoute, KeySessionDep, page_names
from tokens_forge.console.run_pages import next_url

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

_RECORD_FILTERS = ("since", "until", "model", "route_kind", "bucket", "run_id", "status", "key_id")
RECORDS = {  # page -> (API path, the API's filters for it)
    "usage": ("/v1/usage", _RECORD_FILTERS),
    "failures": ("/v1/failures", _RECORD_FILTERS),
    "ledger": ("/v1/wallet/ledger", ("receipt_id", "run_id", "bucket", "include")),
}
SUMMARY_FILTERS = ("since", "until", "model", "route_kind", "bucket", "run_id", "status", "key_id")


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
    summaries = {}
    if kind == "usage":
        shared = {k: v for k, v in query.items() if k in SUMMARY_FILTERS}
        summaries = {by: breakdown((await api.get("/v1/usage/summary", by=by, **shared))["data"])
                     for by in ("key", "model")}
    exports = {fmt: f"/console/api{path}?{urlencode({**query, 'format': fmt})}" for fmt in ("csv", "jsonl")}
    return render.html(request, "records.html", session, active="records", kind=kind, rows=listing["data"],
                       filters=filters, limit=limit, next_url=next_url(request, listing), exports=exports,
                       first_url=f"{request.url.path}?{urlencode({**filters, 'limit': limit})}",
                       summaries=summaries, names=await page_names(request, session.account_id))


@router.get("/console/records")
async def records_home(request: Request, session: KeySessionDep, api: ApiDep) -> Response:
    return await records(request, "usage", session, api)


@router.get("/console/receipts/{receipt_id}")
async def receipt_page(request: Request, receipt_id: str, session: KeySessionDep, api: ApiDep,
                       fragment: bool = False) -> Response:
    receipt = await api.get(f"/v1/receipts/{receipt_id}")
    return render.html(request, "_receipt.html" if fragment else "receipt.html", session, active="records",
                       receipt=receipt, names=await page_names(request, session.account_id))


@router.get("/console/health")
async def route_health(request: Request, session: KeySessionDep, api: ApiDep) -> Response:
    routes = (await api.get("/v1/routes/health"))["data"]
    return render.html(request, "health.html", session, active="health", routes=routes,
                       names=await page_names(request, session.account_id))


def _utc(value: str) -> str:
    """A datetime-local field ("2025-01-31T12:00") is read as UTC."""
    if len(value) == 16 and "T" in value:
        return value + ":00Z"
    if len(value) == 10:
        return value + "T00:00:00Z"
    return value
