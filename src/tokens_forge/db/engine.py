"""Engine and session factories, built once per process in the app's lifespan."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from tokens_forge.db.pooler import engine_connect_args
from tokens_forge.db.url import async_url


class _NoRowLogging(logging.Filter):
    """SQLAlchemy logs result rows at DEBUG; a routes row holds the write-only upstream key."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Row %r"


_NO_ROWS = _NoRowLogging()


def make_engine(url: str, *, pool_size: int = 20, max_overflow: int = 20, pooled: bool = False) -> AsyncEngine:
    """`pooled`: `url` is a transaction pooler (PgBouncer), see db/pooler.py."""
    logging.getLogger("sqlalchemy.engine.Engine").addFilter(_NO_ROWS)  # adding the same filter twice is a no-op
    return create_async_engine(
        async_url(url),
        hide_parameters=True,  # parameters may hold upstream keys: never in logs or error messages
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=engine_connect_args(pooled),
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
