"""Admin views (signed in with the admin token): accounts with balances and money forms, projects
and keys, routes and price snapshots, the audit log. Reads go through /admin/v1 (balances always
from `GET /admin/v1/accounts/{id}`); lists the admin API has no endpoint for come from
`directory`. Every change is made by the page's script through the same API (console proxy)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokens_forge.console import directory, render
from tokens_forge.console.deps import AdminSessionDep, ApiDep, ConsoleRoute

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

ACCOUNTS_PER_PAGE = 20


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
    return render.html(request, "admin/account.html", session, active="accounts", account=acct, projects=projects,
                       keys=keys, usage=usage)


@router.get("/console/admin/keys/{key_id}")
async def key(request: Request, key_id: str, session: AdminSessionDep, api: ApiDep) -> Response:
    k = await api.get(f"/admin/v1/keys/{key_id}")
    audit = (await api.get("/admin/v1/audit", target_id=key_id, limit=20))["data"]
    return render.html(request, "admin/key.html", session, active="accounts", key=k, audit=audit)


@router.get("/console/admin/routes")
async def routes(request: Request, session: AdminSessionDep, api: ApiDep) -> Response:
    listed = (await api.get("/admin/v1/routes"))["data"]
    return render.html(request, "admin/routes.html", session, active="routes", routes=listed)


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
    next_url = f"?{urlencode({**params, 'cursor': listing['next_cursor']})}" if listing["next_cursor"] else None
    return render.html(request, "admin/audit.html", session, active="audit", entries=listing["data"],
                       target_id=target_id or "", action=action or "", next_url=next_url)
