"""The application's state: one typed object, built by the lifespan (main.create_app) and
reached by handlers as `request.app.state`. Everything stateful lives here, nothing at module
level; its attributes exist once the lifespan has started."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from tokens_forge.config import Settings
    from tokens_forge.keys.auth import KeyCache
    from tokens_forge.ledger.workers import Worker
    from tokens_forge.ledger.writer import LedgerWriter
    from tokens_forge.observability import Observability
    from tokens_forge.pipeline.background import Background
    from tokens_forge.routing.cache import RouteCache
    from tokens_forge.routing.health import RouteHealth
    from tokens_forge.runs.flights import FlightRegistry
    from tokens_forge.runs.profiles import ProfileBook
    from tokens_forge.upstream.transport import UpstreamClient


class AppState:
    settings: Settings
    database_url: str
    engine: AsyncEngine                      # SQLAlchemy: admin, records, runs (not the hot path)
    sessionmaker: async_sessionmaker[AsyncSession]
    pg: asyncpg.Pool                         # the hot path: auth, routes, reserve, settle
    ledger_writer: LedgerWriter              # this worker's group commit
    worker: Worker                           # this process, as the owner of its holds
    keys: KeyCache
    routes: RouteCache
    http: UpstreamClient                     # the one upstream client
    background: Background
    flights: FlightRegistry                  # this worker's requests in flight per run
    health: RouteHealth
    obs: Observability                       # metrics, traces and the request log (SPEC §11)
    profiles: ProfileBook | None = None      # made on first use (runs.profiles)
    jobs: set[asyncio.Task[Any]]                  # writes that outlive their request (kept while the database is away)

    def __getattr__(self, name: str) -> Any:
        # an attribute the lifespan has not set yet: say so, instead of a bare AttributeError
        raise AttributeError(f"app state has no {name!r} (is the lifespan running?)")
