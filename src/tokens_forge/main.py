"""create_app(): the lifespan builds the engine, sessionmaker, the one shared upstream client, the
key and route caches and the background workers (hold sweeper, run-control listener)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException

from tokens_forge import __version__
from tokens_forge.api import errors
from tokens_forge.api.admin import router as admin_router
from tokens_forge.api.errors import FastJSONResponse
from tokens_forge.api.health import router as health_router
from tokens_forge.api.metrics import router as metrics_router
from tokens_forge.api.openai import router as openai_router
from tokens_forge.api.openai.fastpath import ChatFastPath
from tokens_forge.config import Settings
from tokens_forge.console import router as console_router
from tokens_forge.db.engine import make_engine, make_sessionmaker
from tokens_forge.db.pooler import database_for, hot_pool_options, worker_pools_for
from tokens_forge.db.resolve import database_url
from tokens_forge.db.url import plain_url
from tokens_forge.errors import RequestTooLarge
from tokens_forge.keys.auth import KeyCache
from tokens_forge.ledger.workers import Worker
from tokens_forge.ledger.writer import LedgerWriter
from tokens_forge.observability import Observability
from tokens_forge.observability.middleware import ObservedRequests
from tokens_forge.pipeline.background import Background
from tokens_forge.routing.cache import RouteCache
from tokens_forge.state import AppState
from tokens_forge.upstream.transport import UpstreamClient

log = logging.getLogger("tokens_forge")
# FastAPI's own OpenTelemetry spans, metrics and logs stay off: the gateway reports its requests
# itself (observability/), the chat fast path included, and FastAPI's logs could hold request
# bodies. Off, FastAPI's per-request check of its providers short-circuits too.
NO_FRAMEWORK_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                          "auto_configure": False}


class BodyLimit:
    """Every request body, on every endpoint, is bounded by TF_MAX_BODY_BYTES: 413 request_too_large
    before it is parsed (declared Content-Length) or as soon as the streamed body passes it. The
    request-story endpoints bound their bodies themselves, after authentication, so that a valid
    key's body too large gets its `rejected` receipt (api/openai/chat.py read_client_body)."""

    SELF_BOUNDED = frozenset({"/v1/responses", "/v1/embeddings"})

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.SELF_BOUNDED:
            return await self.app(scope, receive, send)
        message = f"the request body is larger than {self.limit} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                return await errors.render(RequestTooLarge(message))(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited, send)


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """The hot pool never changes session state (LISTEN has its own connection), so asyncpg's
    per-release reset query would be a wasted round trip; an open transaction is still rolled back."""


def create_app(settings: Settings | None = None, db_url: str | None = None) -> FastAPI:
    settings = settings or Settings()
    obs = Observability(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database_for(settings, db_url or database_url(settings))
        pools, warnings = await worker_pools_for(db, settings)
        for warning in warnings:
            log.warning("connection budget: %s", warning)
        log.info("connection budget: %s", pools.describe())
        engine = make_engine(db.url, pool_size=pools.engine_size, max_overflow=pools.engine_overflow,
                             pooled=db.pooled)
        app.state.settings = settings
        app.state.obs = obs
        app.state.database = db
        app.state.database_url = db.url
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        # The hot path (auth, routes, reserve, settle) runs on a plain asyncpg pool: one round
        # trip per phase with server-side prepared statements (two through a pooler, which keeps
        # none), no ORM in the way.
        app.state.pg = await asyncpg.create_pool(plain_url(db.url), min_size=1, max_size=pools.hot,
                                                 max_inactive_connection_lifetime=30, reset=_no_reset,
                                                 **hot_pool_options(db.pooled))
        app.state.ledger_writer = LedgerWriter(durable_settle=settings.durable_settle,
                                               settle_retry_s=settings.settle_retry_s,
                                               on_retry=obs.metrics.ledger_write_retried)
        app.state.jobs = set()
        app.state.worker = Worker()
        await app.state.worker.beat(app.state.pg)  # alive before it owns any hold
        app.state.keys = KeyCache(app.state.pg, settings.key_cache_ttl_s)
        app.state.routes = RouteCache(app.state.pg, ttl_s=1.0)
        app.state.http = UpstreamClient(settings.upstream_max_connections)
        app.state.background = Background(cast(AppState, app.state), db.listen_url)
        await app.state.background.start()
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # collector's way, so that a full collection walks the requests' objects only (a full
        # walk of the imported frameworks stalls every request in flight for milliseconds).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if app.state.jobs:  # outcomes still being kept: a little time to finish
                await asyncio.wait(list(app.state.jobs), timeout=5)
            await app.state.background.stop()
            await app.state.ledger_writer.close()
            try:
                await app.state.worker.leave(app.state.pg)
            except Exception as exc:  # the database is away: the heartbeat stops, and the row ages out
                log.warning("could not deregister worker %s: %s", app.state.worker.id, type(exc).__name__)
            await app.state.http.aclose()
            await app.state.pg.close()
            await engine.dispose()
            obs.close()

    app = FastAPI(title="Tokens Forge", version=__version__, lifespan=lifespan,
                  default_response_class=FastJSONResponse, telemetry=NO_FRAMEWORK_TELEMETRY,
                  description="An OpenAI-compatible LLM gateway with a spend guard and a double-entry ledger.")
    app.state = AppState()  # type: ignore[assignment]  # typed: see tokens_forge.state
    errors.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(ChatFastPath, owner=app)  # chat completions skip the rest
    app.add_middleware(ObservedRequests, obs=obs)  # outermost: every request is measured and logged
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(openai_router)
    app.include_router(admin_router)
    app.include_router(console_router)
    if settings.mock_upstream:
        from tokens_forge.mock.upstream import create_mock_app

        app.mount("/mock", create_mock_app())
    return app


def app_factory() -> FastAPI:
    """Entry point for uvicorn workers (`factory=True`): settings from the environment."""
    return create_app()
