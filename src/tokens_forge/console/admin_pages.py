"""Admin views (signed in with the admin token): accounts with balances, key spend and money forms,
projects and keys, every account's runs (with Stop), route health, routes and price snapshots, the
audit log with each change's before/after diff. Reads go through /admin/v1 (balances always from
`GET /admin/v1/accounts/{id}`, spend from the usage summaries); lists the admin API has no
endpoint for come from `directory`. Every change is made by the page's script through the same
API (console proxy)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokens_forge.console import directory, render
from tokens_forge.console.api import ConsoleApi
from tokens_forge.console.charts import breakdown
from tokens_forge.console.deps import AdminSessionDep, ApiDep, ConsoleRoute, page_names
from tokens_forge.console.diff import audit_diff
from tokens_forge.console.run_pages import actions, next_url

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

ACCOUNTS_PER_PAGE = 20
STOPPABLE = ("ready", "running", "paused", "budget_exhausted")


async def key_spend(api: ConsoleApi, account_id: str) -> dict[str, dict]:
    """Per key id: {"today": {credit, routed, total}, "total": {...}} from the usage summaries."""
    midnight = datetime.now(UTC).date().isoformat() + "T00:00:00Z"
    spans = {"today": {"since": midnight}, "total": {}}
    out: dict[str, dict] = {}
    for span, params in spans.items():
        rows = (await api.get("/admin/v1/usage/summary", by="key", account_id=account_id, **params))["data"]
        for line in breakdown(rows):
            out.setdefault(line["group"], {})[span] = line
    return out


@router.get("/console/admin")
async def accounts(request: Request, session: AdminSessionDep, api: ApiDep, q: str | None = None,
                   page: int = 1) -> Response:
    page = max(page, 1)
    async with request.app.state.sessionmaker() as db:
        listed, more = await directory.list_accounts(db, limit=ACCOUNTS_PER_PAGE, offset=(page - 1) * ACCOUNTS_PER_PAGE,
                                                      q=(q or "").strip() or None)
        total = await directory.count_accounts(db)
    rows = [await api.get(f"/admin/v1/accounts/{a['id']}") for a in listed]
    query = {"q": q} if q else {}
    return render.html(request, "admin/accounts.html", session, active="accounts", accounts=rows, q=q or "",
                       total=total, page=page,
                       next_url=f"?{urlencode({**query, 'page': page + 1})}" if more else None,
                       prev_url=f"?{urlencode({**query, 'page': page - 1})}" if page > 1 else None)


@router.get("/console/admin/accounts/{account_id}")
async def account(request: Request, account_id: str, session: AdminSessionDep, api: ApiDep) -> Response:
    acct = await api.get(f"/admin/v1/accounts/{account_id}")
    async with request.app.state.sessionmaker() as db:
        projects = await directory.list_projects(db, account_id)
        keys = await directory.list_keys(db, account_id)
    usage = (await api.get("/admin/v1/usage", account_id=account_id, limit=20))["data"]
    runs = (await api.get("/admin/v1/runs", account_id=account_id, limit=10))["data"]
    return render.html(request, "admin/account.html", session, active="accounts", account=acct, projects=projects,
                       keys=keys, usage=usage, runs=runs, spend=await key_spend(api, account_id),
                       names=await page_names(request, account_id))


@router.get("/console/admin/keys/{key_id}")
async def key(request: Request, key_id: str, session: AdminSessionDep, api: ApiDep) -> Response:
    k = await api.get(f"/admin/v1/keys/{key_id}")
    audit = _with_diffs((await api.get("/admin/v1/audit", target_id=key_id, limit=20))["data"])
    spend = (await key_spend(api, k["account_id"])).get(key_id, {})
    return render.html(request, "admin/key.html", session, active="accounts", key=k, audit=audit, spend=spend,
                       names=await page_names(request, k["account_id"]))


@router.get("/console/admin/runs")
async def all_runs(request: Request, session: AdminSessionDep, api: ApiDep, account_id: str | None = None,
                   status: str | None = None, cursor: str | None = None) -> Response:
    """Every account's runs, newest first, each open one with a Stop button (POST
    /admin/v1/runs/{id}/cancel, audited)."""
    listing = await api.get("/admin/v1/runs", account_id=account_id, status=status, cursor=cursor, limit=50)
    return render.html(request, "admin/runs.html", session, active="admin-runs", runs=listing["data"],
                       account_id=account_id or "", status=status or "", stoppable=STOPPABLE,
                       next_url=next_url(request, listing), names=await page_names(request, account_id))


@router.get("/console/admin/runs/{run_id}")
async def admin_run(request: Request, run_id: str, session: AdminSessionDep, api: ApiDep) -> Response:
    run = await api.get(f"/admin/v1/runs/{run_id}")
    return render.html(request, "admin/run.html", session, active="admin-runs", run=run,
                       actions=actions(run["status"]), stoppable=STOPPABLE,
                       names=await page_names(request, run["account_id"]))


@router.get("/console/admin/health")
async def health(request: Request, session: AdminSessionDep, api: ApiDep) -> Response:
    routes = (await api.get("/admin/v1/route-health"))["data"]
    return render.html(request, "admin/health.html", session, active="admin-health", routes=routes,
                       names=await page_names(request, None))


@router.get("/console/admin/routes")
async def routes(request: Request, session: AdminSessionDep, api: ApiDep) -> Response:
    listed = (await api.get("/admin/v1/routes"))["data"]
    return render.html(request, "admin/routes.html", session, active="routes", routes=listed,
                       names=await page_names(request, None))


@router.get("/console/admin/routes/{route_id}")
async def route(request: Request, route_id: str, session: AdminSessionDep, api: ApiDep) -> Response:
    r = await api.get(f"/admin/v1/routes/{route_id}")
    snapshots = (await api.get("/admin/v1/price-snapshots", route_id=route_id, limit=50))["data"]
    return render.html(request, "admin/route.html", session, active="routes", route=r, snapshots=snapshots)


@router.get("/console/admin/audit")
async def audit(request: Request, session: AdminSessionDep, api: ApiDep, target_id: str | None = None,
                action: str | None = None, cursor: str | None = None) -> Response:
    listing = await api.get("/admin/v1/audit", target_id=target_id, action=action, cursor=cursor, limit=50)
    params = {k: v for k, v in {"target_id": target_id, "action": action}.items() if v}
    next_page = f"?{urlencode({**params, 'cursor': listing['next_cursor']})}" if listing["next_cursor"] else None
    return render.html(request, "admin/audit.html", session, active="audit", entries=_with_diffs(listing["data"]),
                       target_id=target_id or "", action=action or "", next_url=next_page,
                       names=await page_names(request, None))


def _with_diffs(entries: list[dict]) -> list[dict]:
    return [{**e, "diff": audit_diff(e["before"], e["after"])} for e in entries]
