"""Enabled routes per model with their current price snapshot, cached per process for at most
`ttl_s` (a disabled route or a new price applies within that time in every worker)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import asyncpg

from tokens_forge.config import upstream_secret
from tokens_forge.guard.money import FailurePolicy, MediaBounds, Price, Terms
from tokens_forge.routing.schemas import BUCKET_OF


@dataclass(frozen=True)
class RouteInfo:
    id: str
    model: str
    kind: str
    base_url: str
    upstream_model: str
    api_key: str | None
    price: Price
    price_snapshot_id: str
    failed_charge_mode: str
    failed_charge_flat_micros: int
    timeout_s: float
    priority: int
    media: MediaBounds = field(default_factory=MediaBounds)
    apis: tuple[str, ...] = ("chat_completions",)    # the upstream APIs it speaks
    output_cap_param: str = "max_completion_tokens"  # the field of a cap the gateway sets itself

    def speaks(self, api: str) -> bool:
        return api in self.apis

    @property
    def bucket(self) -> str:
        return BUCKET_OF[self.kind]

    @property
    def terms(self) -> Terms:
        """What the money decisions of an attempt on this route depend on (guard.money)."""
        return Terms(self.price, self.media, FailurePolicy(self.failed_charge_mode, self.failed_charge_flat_micros))

    def __repr__(self) -> str:  # never print the upstream key
        return f"RouteInfo({self.id}, {self.model}, {self.kind})"


_SQL = """
    SELECT r.id, r.model, r.kind, r.base_url, r.upstream_model, r.upstream_api_key, r.upstream_api_key_env,
           r.failed_charge_mode, r.failed_charge_flat_micros, r.timeout_s, r.priority,
           r.image_low_tokens, r.image_high_tokens, r.file_tokens,
           r.apis, r.output_cap_param,
           p.id AS snapshot_id, p.input_per_mtok, p.output_per_mtok
      FROM routes r JOIN price_snapshots p ON p.id = r.price_snapshot_id
     WHERE r.enabled AND ($1::text IS NULL OR r.model = $1)
     ORDER BY r.priority, r.created_at"""


def _info(row) -> RouteInfo:
    env = row["upstream_api_key_env"]
    key = row["upstream_api_key"] or (upstream_secret(env) if env else None)
    return RouteInfo(id=row["id"], model=row["model"], kind=row["kind"], base_url=row["base_url"],
                     upstream_model=row["upstream_model"], api_key=key,
                     price=Price(row["input_per_mtok"], row["output_per_mtok"]), price_snapshot_id=row["snapshot_id"],
                     failed_charge_mode=row["failed_charge_mode"],
                     failed_charge_flat_micros=row["failed_charge_flat_micros"], timeout_s=row["timeout_s"],
                     priority=row["priority"],
                     media=MediaBounds(row["image_low_tokens"], row["image_high_tokens"], row["file_tokens"]),
                     apis=tuple(row["apis"]), output_cap_param=row["output_cap_param"])


class RouteCache:
    def __init__(self, pg: asyncpg.Pool, ttl_s: float = 1.0):
        self._pg = pg
        self._ttl = ttl_s
        self._entries: dict[str, tuple[list[RouteInfo], float]] = {}

    async def for_model(self, model: str) -> list[RouteInfo]:
        now = time.monotonic()
        hit = self._entries.get(model)
        if hit is not None and hit[1] > now:
            return hit[0]
        routes = [_info(r) for r in await self._pg.fetch(_SQL, model)]
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[model] = (routes, now + self._ttl)
        return routes

    async def all_routes(self) -> list[RouteInfo]:
        return [_info(r) for r in await self._pg.fetch(_SQL, None)]
