"""What a transaction pooler costs the hot path, per call at one connection (no concurrency, so
the figure is the latency a request pays, not throughput).

Two calls the gateway makes per request: a one-row lookup by key (as key authentication and
route lookups do on a cache miss) and the reserve + settle pair (`bench/ledger_bench.py`'s, via
the group commit). Each is timed on one connection in three set-ups:

- `direct, cached`: PostgreSQL, asyncpg's prepared statements cached (the gateway without a pooler);
- `direct, uncached`: PostgreSQL, statement cache off: what turning prepared statements off costs;
- `pgbouncer, uncached`: through PgBouncer 1.18 in transaction pooling mode (the gateway with
  TF_DATABASE_URL at PgBouncer): the above plus the pooler's own hop.

Usage: python bench/pooler_cost.py DATABASE_URL OUT_JSON [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from ledger_bench import make_route, make_tenants, pair, start_pgbouncer

from tokens_forge.db.engine import make_engine, make_sessionmaker
from tokens_forge.db.pooler import hot_pool_options
from tokens_forge.db.url import plain_url
from tokens_forge.ledger.writer import LedgerWriter

LOOKUP = "SELECT id, account_id, project_id, name, status FROM api_keys WHERE id = $1"


ROUNDS = 10  # the set-ups take turns, so that a neighbour's load on a shared machine hits all of them


def summary(took: list[float]) -> dict:
    took = sorted(took)
    return {"calls": len(took), "median_us": round(statistics.median(took), 1),
            "mean_us": round(statistics.fmean(took), 1), "p99_us": round(took[int(0.99 * (len(took) - 1))], 1)}


async def timed(fn: Callable[[], Awaitable[object]], calls: int, into: list[float]) -> None:
    for _ in range(calls):
        start = time.perf_counter()
        await fn()
        into.append((time.perf_counter() - start) * 1e6)


class Setup:
    def __init__(self, label: str, url: str, cached: bool, pooled: bool):
        self.label, self.url, self.cached, self.pooled = label, url, cached, pooled
        self.lookup: list[float] = []
        self.pair: list[float] = []

    async def open(self) -> None:
        options = hot_pool_options(self.pooled)
        if not self.cached:
            options["statement_cache_size"] = 0
        # two connections: the group commit keeps one of its own, the lookups use the other
        self.pg = await asyncpg.create_pool(self.url, min_size=2, max_size=2, **options)
        self.writer = LedgerWriter(durable_settle=False)

    async def round(self, route, tenant, calls: int, keep: bool) -> None:
        lookup, pairs = (self.lookup, self.pair) if keep else ([], [])
        await timed(lambda: self.pg.fetchrow(LOOKUP, tenant.key_id), calls, lookup)
        await timed(lambda: pair(self.pg, self.writer, route, tenant), calls, pairs)

    async def close(self) -> dict:
        await self.writer.close()
        await self.pg.close()
        row = {"setup": self.label, "lookup": summary(self.lookup), "reserve_settle": summary(self.pair)}
        print(f"pooler cost: {self.label:20} lookup {row['lookup']['median_us']:7.1f} µs   reserve+settle "
              f"{row['reserve_settle']['median_us']:7.1f} µs (medians of {len(self.pair)})", flush=True)
        return row


async def run(args: argparse.Namespace) -> dict:
    direct = plain_url(args.database_url)
    engine = make_engine(args.database_url, pool_size=2, max_overflow=0)
    pg = await asyncpg.create_pool(direct, min_size=1, max_size=2)
    [tenant] = await make_tenants(make_sessionmaker(engine), 1, "pooler-cost")
    route = await make_route(make_sessionmaker(engine), pg)
    await pg.close()
    await engine.dispose()
    with tempfile.TemporaryDirectory(prefix="tf-bench-pgbouncer-") as tmp:
        bouncer = start_pgbouncer(args.database_url, Path(tmp))
        setups = [Setup("direct, cached", direct, True, False), Setup("direct, uncached", direct, False, False),
                  Setup("pgbouncer, uncached", plain_url(bouncer.url_for(args.database_url)), False, True)]
        try:
            for s in setups:
                await s.open()
                await s.round(route, tenant, 100, keep=False)  # warm: connections, plans, type codecs
            for _ in range(ROUNDS):
                for s in setups:
                    await s.round(route, tenant, max(1, args.calls // ROUNDS), keep=True)
            rows = [await s.close() for s in setups]
        finally:
            bouncer.stop()
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("out")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
