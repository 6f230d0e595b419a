"""CPU per upstream call of the HTTP clients the gateway could use, against the nginx fake upstream:
the measurement behind upstream/transport.py's choice of aiohttp over httpx for the hot path.

Each client posts the bench's non-streaming body N times (after a warm-up), sequentially and from
16 concurrent tasks on one uvloop event loop, over pooled keep-alive connections; CPU is this
process's user + system time (getrusage), so only the client's own cost is counted.

Usage: python bench/upstream_clients.py URL OUT_JSON [--calls 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import aiohttp
import httpx
import uvloop

BODY = b'{"model":"bench-upstream","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(call, calls: int, conc: int) -> dict:
    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    await worker(50)
    t0, c0 = time.perf_counter(), cpu_s()
    await asyncio.gather(*[worker(calls // conc) for _ in range(conc)])
    t1, c1 = time.perf_counter(), cpu_s()
    done = calls // conc * conc
    return {"concurrency": conc, "calls": done, "cpu_ms_per_call": round((c1 - c0) / done * 1000, 3),
            "calls_per_s": round(done / (t1 - t0))}


async def with_httpx(url: str, calls: int, conc: int) -> dict:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits) as client:
        async def call() -> None:
            await (await client.post(url, content=BODY, headers=HEADERS)).aread()

        return await measure(call, calls, conc)


async def with_aiohttp(url: str, calls: int, conc: int) -> dict:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        async def call() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as resp:
                await resp.read()

        return await measure(call, calls, conc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()
    rows = []
    for name, run in (("httpx", with_httpx), ("aiohttp", with_aiohttp)):
        for conc in (1, 16):
            row = {"client": name, **uvloop.run(run(args.url, args.calls, conc))}
            print(f"upstream client: {row}")
            rows.append(row)
    with open(args.out, "w") as f:
        json.dump({"clients": rows}, f, indent=2)


if __name__ == "__main__":
    main()
