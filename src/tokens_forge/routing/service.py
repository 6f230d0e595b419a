"""Routes and their price snapshots. A price change makes a new snapshot; old ones never change
(a trigger forbids it). The upstream key is write-only: `route_out` never includes it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from tokens_forge.audit.service import record
from tokens_forge.db.repository import get_or_404
from tokens_forge.ids import new_id
from tokens_forge.routing.models import PriceSnapshot, Route
from tokens_forge.routing.schemas import BUCKET_OF, PriceIn, RouteCreate, RouteUpdate


def route_out(r: Route, price: PriceSnapshot | None) -> dict:
    return {
        "id": r.id, "object": "route", "model": r.model, "kind": r.kind, "bucket": BUCKET_OF[r.kind],
        "base_url": r.base_url, "upstream_model": r.upstream_model,
        "upstream_api_key_set": bool(r.upstream_api_key or r.upstream_api_key_env),
        "upstream_api_key_env": r.upstream_api_key_env,
        "price": snapshot_out(price) if price else None,
        "failed_request_charge": {"mode": r.failed_charge_mode, "flat_micros": r.failed_charge_flat_micros},
        "timeout_s": r.timeout_s, "priority": r.priority, "enabled": r.enabled,
        "media_bounds": {"image_low_tokens": r.image_low_tokens, "image_high_tokens": r.image_high_tokens,
                         "file_tokens": r.file_tokens},
        "apis": list(r.apis), "output_cap_param": r.output_cap_param,
        "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat(),
    }


def snapshot_out(p: PriceSnapshot) -> dict:
    return {"id": p.id, "object": "price_snapshot", "route_id": p.route_id, "input_per_mtok": p.input_per_mtok,
            "output_per_mtok": p.output_per_mtok, "created_at": p.created_at.isoformat()}


async def get_route(session: AsyncSession, route_id: str, *, lock: bool = False) -> Route:
    return await get_or_404(session, Route, route_id, what="route", lock=lock)


async def _price(session: AsyncSession, route: Route) -> PriceSnapshot | None:
    return await session.get(PriceSnapshot, route.price_snapshot_id) if route.price_snapshot_id else None


async def route_view(session: AsyncSession, route: Route) -> dict:
    return route_out(route, await _price(session, route))


async def _new_snapshot(session: AsyncSession, route: Route, price: PriceIn) -> PriceSnapshot:
    snap = PriceSnapshot(id=new_id("price"), route_id=route.id, input_per_mtok=price.input_per_mtok,
                         output_per_mtok=price.output_per_mtok)
    session.add(snap)
    await session.flush()
    await session.refresh(snap)
    route.price_snapshot_id = snap.id
    return snap


async def create_route(session: AsyncSession, body: RouteCreate, actor: str, config_name: str | None = None) -> Route:
    route = Route(
        id=new_id("route"), model=body.model, kind=body.kind, base_url=body.base_url,
        upstream_model=body.upstream_model, upstream_api_key=body.upstream_api_key,
        upstream_api_key_env=body.upstream_api_key_env,
        failed_charge_mode=body.failed_request_charge.mode,
        failed_charge_flat_micros=body.failed_request_charge.flat_micros,
        timeout_s=body.timeout_s, priority=body.priority, enabled=body.enabled, config_name=config_name,
        image_low_tokens=body.media_bounds.image_low_tokens, image_high_tokens=body.media_bounds.image_high_tokens,
        file_tokens=body.media_bounds.file_tokens,
        apis=list(body.apis), output_cap_param=body.output_cap_param,
    )
    session.add(route)
    await session.flush()
    snap = await _new_snapshot(session, route, body.price)
    await session.flush()
    await session.refresh(route)
    await record(session, actor=actor, action="route.create", target_type="route", target_id=route.id,
                 before=None, after=route_out(route, snap))
    return route


async def update_route(session: AsyncSession, route_id: str, body: RouteUpdate, actor: str) -> Route:
    route = await get_route(session, route_id, lock=True)
    old_price = await _price(session, route)
    before = route_out(route, old_price)
    old_key = route.upstream_api_key
    sent = body.model_fields_set
    for field in ("base_url", "upstream_model", "timeout_s", "priority", "enabled", "apis", "output_cap_param"):
        if field in sent and getattr(body, field) is not None:
            setattr(route, field, getattr(body, field))
    if "upstream_api_key" in sent:
        route.upstream_api_key = body.upstream_api_key
    if "upstream_api_key_env" in sent:
        route.upstream_api_key_env = body.upstream_api_key_env
    if body.media_bounds is not None:
        route.image_low_tokens = body.media_bounds.image_low_tokens
        route.image_high_tokens = body.media_bounds.image_high_tokens
        route.file_tokens = body.media_bounds.file_tokens
    if body.failed_request_charge is not None:
        route.failed_charge_mode = body.failed_request_charge.mode
        route.failed_charge_flat_micros = body.failed_request_charge.flat_micros
    new_price = old_price
    if body.price is not None and (old_price is None or (old_price.input_per_mtok, old_price.output_per_mtok)
                                   != (body.price.input_per_mtok, body.price.output_per_mtok)):
        new_price = await _new_snapshot(session, route, body.price)
    after = route_out(route, new_price)
    secret_changed = route.upstream_api_key != old_key  # the env name is in route_out, the key is not
    if _changed(before, after) or secret_changed:
        route.updated_at = datetime.now(UTC)
        await session.flush()
        after = route_out(route, new_price)
        if secret_changed and not _changed(before, after):
            after = {**after, "upstream_api_key": "changed (write-only)"}
        await record(session, actor=actor, action="route.update", target_type="route", target_id=route.id,
                     before=before, after=after)
    return route


def _changed(before: dict, after: dict) -> bool:
    return {k: v for k, v in before.items() if k != "updated_at"} != {k: v for k, v in after.items() if k != "updated_at"}


async def list_routes(session: AsyncSession, model: str | None = None, *, limit: int = 500,
                      after_id: str | None = None) -> list[dict]:
    order = (Route.model, Route.priority, Route.created_at, Route.id)
    stmt = select(Route, PriceSnapshot).outerjoin(PriceSnapshot, PriceSnapshot.id == Route.price_snapshot_id)
    if model:
        stmt = stmt.where(Route.model == model)
    if after_id:
        anchor = await session.get(Route, after_id)
        if anchor is not None:
            stmt = stmt.where(tuple_(*order) > tuple_(anchor.model, anchor.priority, anchor.created_at, anchor.id))
    rows = (await session.execute(stmt.order_by(*order).limit(limit))).all()
    return [route_out(r, p) for r, p in rows]


async def list_snapshots(session: AsyncSession, route_id: str | None, limit: int, before_id: str | None) -> list[dict]:
    stmt = select(PriceSnapshot).order_by(PriceSnapshot.created_at.desc(), PriceSnapshot.id.desc())
    if route_id:
        stmt = stmt.where(PriceSnapshot.route_id == route_id)
    if before_id:
        anchor = await session.get(PriceSnapshot, before_id)
        if anchor is not None:
            stmt = stmt.where(PriceSnapshot.created_at < anchor.created_at)
    return [snapshot_out(s) for s in (await session.execute(stmt.limit(limit))).scalars()]
