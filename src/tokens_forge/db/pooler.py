"""The gateway's database: PostgreSQL itself, or a transaction pooler (PgBouncer in
`pool_mode = transaction`) in front of it, plus a direct URL for what needs a session.

Through a transaction pooler each transaction may run on another server connection, so nothing
may outlive a transaction on a pooled connection:

- prepared statements: asyncpg's statement cache and SQLAlchemy's are off, so every statement is
  parsed unnamed in the same exchange that executes it (PgBouncer 1.18 does not track named
  ones: a cached statement would be missing, or taken, on the next server connection);
- settings: only per transaction (`SET LOCAL`, `set_config(…, true)`, a function's own `SET`);
  the startup parameters PgBouncer tracks (application_name, TimeZone) are the same on every
  pool, so that it never re-SETs them when it hands a server connection to another pool;
- LISTEN, session advisory locks, migrations and the CLI's one-off jobs: on `direct_url`.

Which one TF_DATABASE_URL is: TF_DATABASE_POOLER says (`pgbouncer` or `none`); `auto`, the
default, takes a TF_DATABASE_DIRECT_URL that differs from TF_DATABASE_URL as the sign of a pooler
(a direct URL is only needed when the main one cannot hold a session). PgBouncer cannot be
detected reliably from a client connection: it forwards SHOW and the server's parameters."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tokens_forge.config import Settings
from tokens_forge.db.budget import PoolSizes, worker_pools
from tokens_forge.db.url import plain_url

log = logging.getLogger("tokens_forge.db")

# What every connection of the gateway sends at start-up when pooled: one set for all pools.
POOLED_STARTUP = {"application_name": "tokens-forge", "timezone": "UTC"}


@dataclass(frozen=True)
class Database:
    url: str           # every transaction of the gateway (pooled or direct)
    direct_url: str    # PostgreSQL itself: sessions (LISTEN), migrations, CLI tools
    pooled: bool       # `url` is a transaction pooler: no prepared statement outlives its exchange

    @property
    def listen_url(self) -> str | None:
        """Where LISTEN can run: never through a transaction pooler (a notification would arrive on
        whichever client holds the server connection then). None: no session to be had, run
        control falls back to its poll."""
        if self.pooled and self.direct_url == self.url:
            return None
        return self.direct_url


def database_for(settings: Settings, url: str) -> Database:
    """`url` is what the gateway connects to (TF_DATABASE_URL, or the embedded server's)."""
    if settings.database_url is None:  # the embedded server: nothing in front of it
        return Database(url, url, pooled=False)
    direct = settings.database_direct_url or url
    pooled = settings.database_pooler == "pgbouncer" or (settings.database_pooler == "auto" and direct != url)
    db = Database(url, direct, pooled)
    if db.pooled and db.listen_url is None:
        log.warning("TF_DATABASE_URL is a transaction pooler and TF_DATABASE_DIRECT_URL is not set: run "
                    "cancels reach other processes by their 1 s poll only, and migrations go through the pooler")
    return db


async def worker_pools_for(db: Database, settings: Settings) -> tuple[PoolSizes, list[str]]:
    """A worker's pool sizes. On PostgreSQL itself, within the connection budget (db/budget.py).
    Through a pooler the pools are PgBouncer's clients, and PgBouncer's own server pool is what
    bounds PostgreSQL's connections: the pools keep their settings, and only the LISTEN
    connection goes to PostgreSQL directly."""
    if db.pooled:
        return PoolSizes(settings.hot_pool_size, settings.db_pool_size, settings.db_max_overflow), []
    return await worker_pools(settings, plain_url(db.url))


def hot_pool_options(pooled: bool) -> dict[str, Any]:
    """asyncpg.create_pool keyword arguments of the hot pool (auth, routes, reserve, settle)."""
    if pooled:
        return {"statement_cache_size": 0, "server_settings": dict(POOLED_STARTUP)}
    return {"server_settings": {"application_name": "tokens-forge-hot"}}


def engine_connect_args(pooled: bool) -> dict[str, Any]:
    """SQLAlchemy asyncpg connect_args: without a pooler, both caches of prepared statements."""
    args: dict[str, Any] = {"server_settings": dict(POOLED_STARTUP)}
    if pooled:
        args.update(statement_cache_size=0, prepared_statement_cache_size=0)
    return args


def asyncpg_options(pooled: bool) -> dict[str, Any]:
    """asyncpg.connect / create_pool keyword arguments of any other plain connection."""
    return {"statement_cache_size": 0} if pooled else {}
