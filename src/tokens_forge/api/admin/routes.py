"""Routes and price snapshots. The upstream key is accepted, never returned."""

from fastapi import APIRouter

from tokens_forge.api.deps import AdminDep, SessionDep
from tokens_forge.api.paging import (
    CursorQ,
    LimitQ,
    decode_cursor,
    page_of,
)
from tokens_forge.routing import service
from tokens_forge.routing.schemas import RouteCreate, RouteUpdate

router = APIRouter(tags=["admin: routes"])


@router.post("/routes", status_code=201)
async def create_route(body: RouteCreate, session: SessionDep, actor: AdminDep) -> dict:
    """A route serving a public model name from an upstream; its first price snapshot is made."""
    async with session.begin():
        route = await service.create_route(session, body, actor)
        return await service.route_view(session, route)


@router.get("/routes")
async def list_routes(session: SessionDep, model: str | None = None, limit: LimitQ = 50,
                      cursor: CursorQ = None) -> dict:
    """Every route (by model, then priority); the upstream key is never included."""
    after = decode_cursor(cursor, 1, (str,))
    async with session.begin():
        rows = await service.list_routes(session, model, limit=limit + 1, after_id=after[0] if after else None)
    return page_of(rows, limit, lambda r: (r["id"],))


@router.get("/routes/{route_id}")
async def get_route(route_id: str, session: SessionDep) -> dict:
    async with session.begin():
        return await service.route_view(session, await service.get_route(session, route_id))


@router.patch("/routes/{route_id}")
async def update_route(route_id: str, body: RouteUpdate, session: SessionDep, actor: AdminDep) -> dict:
    """Change a route; a new price makes a new snapshot (old ones never change)."""
    async with session.begin():
        route = await service.update_route(session, route_id, body, actor)
        return await service.route_view(session, route)


@router.get("/price-snapshots")
async def list_price_snapshots(session: SessionDep, route_id: str | None = None, limit: LimitQ = 50,
                               cursor: CursorQ = None) -> dict:
    """Every price a route has had, newest first."""
    before = decode_cursor(cursor, 1, (str,))
    async with session.begin():
        rows = await service.list_snapshots(session, route_id, limit + 1, before[0] if before else None)
    return page_of(rows, limit, lambda r: (r["id"],))
