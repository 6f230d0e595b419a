"""The connection budget: how many PostgreSQL connections the gateway may open, and how each
worker's pools share its part.

Each worker opens, at most: its hot asyncpg pool (TF_HOT_POOL_SIZE; the ledger writer keeps one of
them), its SQLAlchemy pool (TF_DB_POOL_SIZE + TF_DB_MAX_OVERFLOW) and one LISTEN connection. With
the defaults that is 32, so four workers could open 128 against a server's default
max_connections of 100, and a burst would meet "too many clients" (a 503 for the client). So the
budget is measured once, before the workers start: the server's max_connections, less the slots
reserved for superusers (and for pg_use_reserved_connections), less the connections other clients
hold at that moment, less a safety margin for the clients that come later (psql, migrations,
monitoring). Each worker gets an equal share, and its pools are shrunk to fit it: the defaults
first, settings the operator gave only when they must be (with a warning naming the numbers).
When even the smallest pools do not fit, the gateway refuses to start and says why."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from tokens_forge.config import Settings
from tokens_forge.errors import ForgeError

LISTEN = 1      # the run-control listener's own connection (pipeline.background)
MIN_HOT = 2     # the ledger writer keeps one connection; auth, routes and receipts need another
MIN_ENGINE = 2  # the sweeper, route health and the run poll, and the admin API, records, idempotency
MIN_PER_WORKER = LISTEN + MIN_HOT + MIN_ENGINE

_ROOM_SQL = """
    SELECT current_setting('max_connections')::int,
           current_setting('superuser_reserved_connections')::int
             + coalesce(current_setting('reserved_connections', true)::int, 0),
           (SELECT count(*) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::int"""


class ConnectionBudgetError(ForgeError):
    """The database cannot take the connections the gateway needs: it does not start."""

    status_code = 503
    code = "connection_budget"


@dataclass(frozen=True)
class ServerRoom:
    """What the server has room for, as measured before the workers start."""

    max_connections: int
    reserved: int  # superuser_reserved_connections + reserved_connections
    in_use: int    # client connections of others at that moment

    @property
    def margin(self) -> int:
        return max(2, self.max_connections // 10)

    @property
    def available(self) -> int:
        return max(0, self.max_connections - self.reserved - self.in_use - self.margin)

    def describe(self) -> str:
        return (f"the server's max_connections={self.max_connections}, less {self.reserved} reserved, "
                f"{self.in_use} in use by other clients and a margin of {self.margin}, leaves {self.available}")


@dataclass(frozen=True)
class PoolSizes:
    hot: int
    engine_size: int
    engine_overflow: int

    @property
    def total(self) -> int:
        return LISTEN + self.hot + self.engine_size + self.engine_overflow

    def describe(self) -> str:
        return (f"hot pool {self.hot}, SQLAlchemy pool {self.engine_size} + {self.engine_overflow} overflow, "
                f"{LISTEN} listener: {self.total} connections")


async def measure(url: str) -> ServerRoom:
    """One short connection: the server's limits and the connections others hold."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(_ROOM_SQL)
    finally:
        await conn.close()
    assert row is not None  # one row of aggregates, always
    return ServerRoom(max_connections=row[0], reserved=row[1], in_use=row[2])


def gateway_budget(room: ServerRoom | None, given: int | None) -> tuple[int, list[str]]:
    """Connections all workers together may open: the operator's TF_DB_CONNECTION_BUDGET when it
    fits what the server has room for (else clipped, with a warning), or that room."""
    if room is None:
        assert given is not None
        return given, []
    if given is None or given <= room.available:
        return (room.available if given is None else given), []
    return room.available, [f"TF_DB_CONNECTION_BUDGET={given} does not fit: {room.describe()}; "
                            f"using {room.available}"]


def _workers(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


def _split(avail: int, hot: int, engine: int, *, hot_given: bool, engine_given: bool) -> tuple[int, int]:
    """Share `avail` between the hot pool and the SQLAlchemy pool: a side the operator set keeps
    its size where it can; otherwise both shrink in proportion."""
    if hot_given and not engine_given:
        hot = min(hot, avail - MIN_ENGINE)
        return hot, min(engine, avail - hot)
    if engine_given and not hot_given:
        engine = min(engine, avail - MIN_HOT)
        return min(hot, avail - engine), engine
    hot = max(MIN_HOT, min(hot, avail * hot // (hot + engine), avail - MIN_ENGINE))
    return hot, min(engine, avail - hot)


def plan_pools(settings: Settings, per_worker: int, workers: int, why: str) -> tuple[PoolSizes, list[str]]:
    """A worker's pools within `per_worker` connections, and a warning per operator setting that
    had to shrink. `why` says where the budget comes from (for the messages)."""
    if per_worker < MIN_PER_WORKER:
        raise ConnectionBudgetError(
            f"{_workers(workers)} need at least {workers * MIN_PER_WORKER} PostgreSQL connections "
            f"({MIN_PER_WORKER} each), but {why}: lower --workers, raise the server's max_connections "
            f"or close other clients")
    want = PoolSizes(settings.hot_pool_size, settings.db_pool_size, settings.db_max_overflow)
    if want.total <= per_worker:
        return want, []
    given = settings.model_fields_set
    hot, engine = _split(per_worker - LISTEN, want.hot, want.engine_size + want.engine_overflow,
                         hot_given="hot_pool_size" in given,
                         engine_given=bool({"db_pool_size", "db_max_overflow"} & given))
    size = min(want.engine_size, engine)
    got = PoolSizes(hot, size, min(want.engine_overflow, engine - size))
    share = f"{per_worker} connections per worker ({why}, for {_workers(workers)})"
    warnings = [f"TF_{name.upper()}={old} does not fit in {share}: using {new}"
                for name, old, new in (("hot_pool_size", want.hot, got.hot),
                                       ("db_pool_size", want.engine_size, got.engine_size),
                                       ("db_max_overflow", want.engine_overflow, got.engine_overflow))
                if name in given and new != old]
    return got, warnings


def serve_plan(settings: Settings, room: ServerRoom, workers: int) -> tuple[int, PoolSizes, list[str]]:
    """`serve`, before it starts the workers: the gateway's budget, each worker's pools, and the
    warnings to show once (raises ConnectionBudgetError when even the smallest pools do not fit)."""
    total, notes = gateway_budget(room, settings.db_connection_budget)
    sizes, warnings = plan_pools(settings, total // workers, workers, room.describe())
    return total, sizes, notes + warnings


async def worker_pools(settings: Settings, url: str) -> tuple[PoolSizes, list[str]]:
    """The pools of one worker: within the budget `serve` measured and passed on
    (TF_DB_CONNECTION_BUDGET, TF_WORKERS; serve showed the warnings already), or, for a process
    not started by `serve`, within what the server has room for now (with its warnings)."""
    if settings.db_connection_budget is not None:
        total = settings.db_connection_budget
        sizes, _ = plan_pools(settings, total // settings.workers, settings.workers,
                              f"TF_DB_CONNECTION_BUDGET={total}")
        return sizes, []
    _, sizes, warnings = serve_plan(settings, await measure(url), settings.workers)
    return sizes, warnings
