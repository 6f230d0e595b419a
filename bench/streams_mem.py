"""Memory for many concurrent slow streams: open N streaming requests through the gateway to the
mock upstream's `drip:<ms>` model (200 words, one every <ms>), keep them all open, and sample the
resident memory of the gateway's processes (the server process and its workers, from /proc)
until every stream has ended.

Usage: python bench/streams_mem.py GATEWAY_URL SECRET MODEL GATEWAY_PID OUT_JSON [--streams 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import httpx
from proctree import tree_rss_kb


class Streams:
    def __init__(self, url: str, secret: str, model: str):
        self.url, self.model = url, model
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.open = 0          # streams that have delivered their first event and not ended
        self.opened = 0        # streams that ever delivered their first event
        self.outcomes: Counter[str] = Counter()
        self.all_open = asyncio.Event()

    async def one(self, client: httpx.AsyncClient, total: int) -> None:
        body = {"model": self.model, "stream": True, "max_tokens": 256,
                "messages": [{"role": "user", "content": "drip slowly"}]}
        started = False
        try:
            async with client.stream("POST", self.url, json=body, headers=self.headers) as resp:
                if resp.status_code != 200:
                    self.outcomes[f"http_{resp.status_code}"] += 1
                    return
                async for chunk in resp.aiter_raw():
                    if not started and chunk:
                        started = True
                        self.open += 1
                        self.opened += 1
                        if self.opened == total:
                            self.all_open.set()
                    if b"[DONE]" in chunk:
                        break
                self.outcomes["done"] += 1
        except httpx.HTTPError as exc:
            self.outcomes[type(exc).__name__] += 1
        finally:
            if started:
                self.open -= 1


async def run(args: argparse.Namespace) -> dict:
    baseline = tree_rss_kb(args.gateway_pid)
    streams = Streams(args.url, args.secret, args.model)
    samples: list[dict] = []
    limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0, connect=30.0)) as client:
        began = time.perf_counter()
        tasks = [asyncio.create_task(streams.one(client, args.streams)) for _ in range(args.streams)]
        ramp_s = None
        while not all(t.done() for t in tasks) and time.perf_counter() - began < args.timeout:
            per_pid = tree_rss_kb(args.gateway_pid)
            samples.append({"t": round(time.perf_counter() - began, 2), "open": streams.open,
                            "rss_kb": sum(per_pid.values()), "per_pid_kb": per_pid})
            if ramp_s is None and streams.all_open.is_set():
                ramp_s = round(time.perf_counter() - began, 2)
            await asyncio.sleep(0.25)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    peak = max(samples, key=lambda s: s["rss_kb"])
    base_total = sum(baseline.values())
    return {
        "streams": args.streams, "model": args.model, "ramp_s": ramp_s,
        "max_open": max(s["open"] for s in samples), "outcomes": dict(streams.outcomes),
        "baseline_rss_kb": base_total, "baseline_per_pid_kb": baseline,
        "peak_rss_kb": peak["rss_kb"], "peak_per_pid_kb": peak["per_pid_kb"], "open_at_peak": peak["open"],
        "samples": [{k: s[k] for k in ("t", "open", "rss_kb")} for s in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gateway")
    parser.add_argument("secret")
    parser.add_argument("model")
    parser.add_argument("gateway_pid", type=int)
    parser.add_argument("out")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=150.0)
    args = parser.parse_args()
    args.url = args.gateway.rstrip("/") + "/v1/chat/completions"
    result = asyncio.run(run(args))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"streams: {result['max_open']} open at most, peak RSS {result['peak_rss_kb'] / 1024:.0f} MiB "
          f"(baseline {result['baseline_rss_kb'] / 1024:.0f} MiB), outcomes {result['outcomes']}")


if __name__ == "__main__":
    main()
