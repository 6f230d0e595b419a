"""Reserve + settle microbenchmark: how many guarded requests per second can the database book?

Each worker loops over exactly what the gateway runs per request: `ledger.attempts.open_attempt`
(receipt + reservation + attempt row) then `ledger.attempts.finish_attempt` (settle + attempt
outcome + receipt totals), through one group commit (`ledger.writer.LedgerWriter`, as in
one gateway worker process), on one hot key and on many keys (one per account), at several
concurrencies. The tenants are made with the
project's own services, so their rows look like real ones; the ledger verifier runs at the end:
the benchmark must leave the books balanced.

`--through direct,pgbouncer` measures every cell twice: on PostgreSQL directly, and through a
PgBouncer 1.18 in transaction pooling mode that the script starts in front of the same server
(tests/pgbouncer.py), its pool set up as the gateway sets it up then (no prepared statements kept).

Usage: python bench/ledger_bench.py DATABASE_URL OUT_JSON [--seconds 4] [--conc 1,16,64] [--keys 100]
                                    [--through direct,pgbouncer]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tokens_forge.accounts import service as accounts
from tokens_forge.accounts.schemas import AccountCreate, ProjectCreate
from tokens_forge.db.engine import make_engine, make_sessionmaker
from tokens_forge.db.pooler import hot_pool_options
from tokens_forge.db.url import plain_url
from tokens_forge.guard.money import Charge
from tokens_forge.ids import new_id
from tokens_forge.keys import service as keys
from tokens_forge.keys.schemas import KeyCreate
from tokens_forge.ledger import attempts as store
from tokens_forge.ledger import service as ledger
from tokens_forge.ledger.verify import verify
from tokens_forge.ledger.writer import LedgerWriter
from tokens_forge.routing import service as routing
from tokens_forge.routing.cache import RouteCache, RouteInfo
from tokens_forge.routing.schemas import RouteCreate

FUNDS = 10**14
RESERVE = 100   # micros held per attempt
CHARGE = 44     # micros settled; the rest is released
TTL_S = 900.0
MODEL = "ledger-bench"


@dataclass(frozen=True)
class Tenant:
    account_id: str
    project_id: str
    key_id: str


# -- setup -----------------------------------------------------------------------------------

async def make_tenants(sessionmaker, n: int, tag: str) -> list[Tenant]:
    out = []
    async with sessionmaker() as session, session.begin():
        for i in range(n):
            account = await accounts.create_account(session, AccountCreate(name=f"{tag}-{i}"), "bench")
            await ledger.topup(session, account_id=account.id, bucket="credit", amount=FUNDS, reference=f"{tag}-{i}")
            project = await accounts.create_project(session, ProjectCreate(account_id=account.id, name=tag), "bench")
            key, _ = await keys.create_key(session, KeyCreate(project_id=project.id, name=tag), "bench")
            out.append(Tenant(account.id, project.id, key.id))
    return out


async def make_route(sessionmaker, pg: asyncpg.Pool) -> RouteInfo:
    async with sessionmaker() as session, session.begin():
        await routing.create_route(session, RouteCreate(
            model=MODEL, kind="official", base_url="http://127.0.0.1:9/v1", upstream_model="none",
            price={"input_per_mtok": 1_000_000, "output_per_mtok": 2_000_000}), "bench")
    return (await RouteCache(pg).for_model(MODEL))[0]


# -- one reserve + settle pair, as the gateway does it -----------------------------------------

async def pair(pg: asyncpg.Pool, writer: LedgerWriter, route: RouteInfo, t: Tenant) -> None:
    head = store.ReceiptHead(id=new_id("rcpt"), account_id=t.account_id, project_id=t.project_id, key_id=t.key_id,
                             run_id=None, model=MODEL, stream=False)
    res = await store.open_attempt(pg, head, route, 1, RESERVE, TTL_S, create=True, reject=True, writer=writer)
    if not res.ok:
        raise RuntimeError(f"refused: {res.refused_scope}")
    end = store.AttemptEnd("success", Charge(CHARGE, "usage", "usage × price", 12, 16), 200, 1)
    await store.finish_attempt(pg, head, route, 1, res.hold_id, end, store.ReceiptEnd("succeeded"), writer=writer)


# -- the timed loop ----------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def timed(workers: list[Callable[[], Awaitable[None]]], seconds: float) -> dict:
    """Run every worker in a loop until the deadline; each call is one pair."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def loop(fn) -> None:
        while (start := time.perf_counter()) < deadline:
            try:
                await fn()
            except Exception as exc:  # count, don't stop: a deadlock or refusal is a result
                errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                continue
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(loop(fn) for fn in workers))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"pairs": len(latencies), "seconds": round(elapsed, 3), "pairs_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 3), "errors": dict(errors)}


def tenant_for(tenants: list[Tenant], worker: int, conc: int) -> Callable[[], Tenant]:
    """Worker w cycles over tenants w, w+conc, …: no two workers share a key at the same time."""
    mine = tenants[worker::conc] or [tenants[worker % len(tenants)]]
    state = {"i": 0}

    def next_tenant() -> Tenant:
        state["i"] += 1
        return mine[state["i"] % len(mine)]

    return next_tenant


async def cell(url: str, route: RouteInfo, tenants: list[Tenant], conc: int, seconds: float,
               pooled: bool = False) -> dict:
    # One connection per worker, opened before the clock starts (the gateway's pool is warm too).
    pg = await asyncpg.create_pool(url, min_size=conc, max_size=conc, **hot_pool_options(pooled))
    writer = LedgerWriter(durable_settle=False)
    try:
        workers = []
        for w in range(conc):
            pick = tenant_for(tenants, w, conc)
            workers.append(lambda pick=pick: pair(pg, writer, route, pick()))
        return await timed(workers, seconds)
    finally:
        await writer.close()
        await pg.close()


# -- main --------------------------------------------------------------------------------------

def start_pgbouncer(database_url: str, workdir: Path, pool_size: int = 20):
    """A PgBouncer in transaction pooling mode in front of database_url's server (the tests' own
    launcher: this script runs from a checkout)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pgbouncer import PgBouncer

    return PgBouncer(database_url, workdir, pool_size=pool_size).start()


async def run(args: argparse.Namespace) -> dict:
    url = plain_url(args.database_url)
    engine = make_engine(args.database_url, pool_size=2, max_overflow=0)
    sessionmaker = make_sessionmaker(engine)
    pg = await asyncpg.create_pool(url, min_size=1, max_size=2)
    hot = await make_tenants(sessionmaker, 1, "ledger-hot")
    many = await make_tenants(sessionmaker, args.keys, "ledger-many")
    route = await make_route(sessionmaker, pg)
    await pg.close()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tf-bench-pgbouncer-") as tmp:
        bouncer = start_pgbouncer(args.database_url, Path(tmp)) if "pgbouncer" in args.through else None
        try:
            # direct and pgbouncer cells of one shape run back to back: a shared machine's load
            # then weighs on both alike
            for label, tenants in (("1 hot key", hot), (f"{args.keys} keys", many)):
                for conc in args.conc:
                    for through in args.through:
                        target = plain_url(bouncer.url_for(args.database_url)) if through == "pgbouncer" else url
                        row = {"through": through, "keys": label, "conc": conc,
                               **await cell(target, route, tenants, conc, args.seconds, through == "pgbouncer")}
                        print(f"ledger: {through:9} {label:9} conc={conc:3} {row['pairs_per_s']:8.1f} pairs/s "
                              f"p50={row['p50_ms']:.2f}ms p99={row['p99_ms']:.2f}ms "
                              f"errors={sum(row['errors'].values())}", flush=True)
                        rows.append(row)
        finally:
            if bouncer is not None:
                bouncer.stop()
    async with engine.connect() as conn:
        ok, checks = await verify(conn, sweep_interval_s=5.0)
    await engine.dispose()
    return {"cells": rows, "verify": {"ok": ok, "checks": [c.as_dict() for c in checks]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("out")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--conc", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--through", type=lambda s: s.split(","), default=["direct"],
                        help="direct, pgbouncer, or both: direct,pgbouncer")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"ledger: verify ok={result['verify']['ok']}")


if __name__ == "__main__":
    main()
