"""BENCHMARKS.md from the raw results of bench/run.sh (bench/results/, git-ignored).

  python bench/report.py --machine results/machine.json     record the machine (start of a run)
  python bench/report.py --results results --out BENCHMARKS.md [--elapsed S]

Every number in BENCHMARKS.md comes from a file under results/; the prose that interprets them
lives in bench/analysis.md and is appended as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from pyspy_summary import summarize
from report_scale import section_pgbouncer

BENCH = Path(__file__).resolve().parent
TARGETS = ("direct", "gateway", "gateway2", "portkey", "litellm")
TARGET_NAMES = {"direct": "nginx direct", "gateway": "Tokens Forge (1 worker)",
                "gateway2": "Tokens Forge (2 workers)", "portkey": "Portkey", "litellm": "LiteLLM"}
PEERS = {"litellm": "LiteLLM", "portkey": "Portkey"}
GATEWAYS = ("gateway", "gateway2")
MODES = {"json": "non-streaming", "sse": "streaming"}
# Issue 8: what the gateway must reach against LiteLLM on the same machine.
TARGET_RPS_RATIO = 5.0
TARGET_ADDED_LATENCY_RATIO = 5.0
TARGET_P99_RATIO = 10.0
# Issue 17: against Portkey's gateway (a proxy with no ledger), in every cell, and LiteLLM still.
TARGET_PORTKEY_RATIO = 1.2
TARGET_LITELLM_RATIO = 5.0
TARGET_ADDED_P50_MS = 1.0
ISSUE17_GATEWAY = "gateway2"  # the issue's configuration: 2 workers, durable holds


# -- the machine ------------------------------------------------------------------------------

def _cmd(*args: str) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def _src_changed() -> bool:
    """Whether the gateway measured differs from its commit (uncommitted changes in src/ or migrations/)."""
    try:
        out = subprocess.run(["git", "-C", str(BENCH.parent), "status", "--porcelain", "--", "src", "migrations"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(out.stdout.strip())


def _cpu_busy(seconds: float) -> float:
    """How busy the CPUs are before the bench starts (other work on a shared machine skews results)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)
    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return round(100 * (busy1 - busy0) / max(total1 - total0, 1), 1)


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    mem_kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "nginx": _cmd("nginx", "-v"), "wrk": _cmd("wrk", "-v").split(" Copyright")[0],
        "commit": _cmd("git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"),
        "dirty": _src_changed(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[0],
        "cpu_busy_before_pct": _cpu_busy(3.0),
    }


DB_SETTINGS = ("server_version", "autovacuum", "synchronous_commit", "fsync", "shared_buffers", "max_connections")


def database(url: str) -> dict:
    """The settings of the PostgreSQL server that change these numbers most."""
    import asyncio

    import asyncpg

    async def read() -> dict:
        conn = await asyncpg.connect(url)
        try:
            return {name: await conn.fetchval(f"SHOW {name}") for name in DB_SETTINGS}
        finally:
            await conn.close()

    return asyncio.run(read())


# -- loading results --------------------------------------------------------------------------

def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_wrk(results: Path) -> dict[tuple[str, str, int], dict]:
    cells = {}
    for f in (results / "wrk").glob("*-c*[0-9].json"):
        target, mode, conns = f.stem.rsplit("-", 2)
        data = load_json(f)
        if data is None:
            continue
        cpu = load_json(f.with_suffix(".cpu.json"))
        if cpu and data["requests"]:
            data["cpu_ms_per_request"] = cpu["cpu_s"] * 1000 / data["requests"]
            data["target_cores"] = cpu["cpu_s"] / data["duration_s"]
            data["machine_busy_pct"] = cpu["machine_busy_pct"]
        cells[(target, mode, int(conns[1:]))] = data
    return cells


def conn_levels(cells: dict) -> list[int]:
    return sorted({c for (_, _, c) in cells})


# -- formatting -------------------------------------------------------------------------------

def ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "–"
    return f"{a / b:.1f}×"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def bad(cell: dict) -> str:
    sock = sum(cell["socket_errors"].values())
    text = str(cell["non2xx"]) + (f" (+{sock} socket)" if sock else "")
    return f"**{text}**" if cell["non2xx"] or sock else text


# -- sections ---------------------------------------------------------------------------------

def section_machine(m: dict, db: dict | None, elapsed: str | None) -> list[str]:
    lines = ["## Machine and run", ""]
    db_line = (f"{db['server_version']}; autovacuum {db['autovacuum']}, synchronous_commit "
               f"{db['synchronous_commit']}, fsync {db['fsync']}, shared_buffers {db['shared_buffers']}") if db else "?"
    lines += table(["", ""], [
        ["date", m["date"]], ["CPU", f"{m['nproc']} × {m['cpu_model']}"], ["memory", f"{m['memory_gib']} GiB"],
        ["kernel", m["kernel"]], ["Python", m["python"]], ["PostgreSQL server", db_line],
        ["nginx / wrk", f"{m['nginx']} / {m['wrk']}"],
        ["gateway commit", m["commit"] + (" (+ uncommitted changes in src/)" if m.get("dirty") else "")],
        ["CPU busy before the run", f"{m['cpu_busy_before_pct']} % (load average {m['loadavg_at_start']})"],
        *([["bench wall time", f"{elapsed} s"]] if elapsed else []),
    ])
    return lines


def section_targets(cells: dict, litellm_ok: bool) -> list[str]:
    lines = ["## Issue 8 targets (Tokens Forge against LiteLLM, same machine, same run)", ""]
    if not litellm_ok:
        return [*lines, "LiteLLM was not measured in this run (see below), so there is nothing to compare.", ""]
    rows = []
    for gw in (g for g in GATEWAYS if any(k[0] == g for k in cells)):
        workers = TARGET_NAMES[gw].split("(")[1].rstrip(")")
        for mode in MODES:
            gw_peak = max((c["rps"] for (t, m, _), c in cells.items() if t == gw and m == mode), default=None)
            ll_peak = max((c["rps"] for (t, m, _), c in cells.items() if t == "litellm" and m == mode), default=None)
            rows.append(_target_row(f"peak RPS, {MODES[mode]}", workers, gw_peak, ll_peak, TARGET_RPS_RATIO,
                                    higher=True))
            gw_add, ll_add = added_latency(cells, gw, mode), added_latency(cells, "litellm", mode)
            rows.append(_target_row(f"added p50 latency at 1 connection, {MODES[mode]} (ms)", workers, gw_add,
                                    ll_add, TARGET_ADDED_LATENCY_RATIO, higher=False))
            gw_p99 = cells.get((gw, mode, 16), {}).get("p99_ms")
            ll_p99 = cells.get(("litellm", mode, 16), {}).get("p99_ms")
            rows.append(_target_row(f"p99 at 16 connections, {MODES[mode]} (ms)", workers, gw_p99, ll_p99,
                                    TARGET_P99_RATIO, higher=False))
    lines += ["*advantage*: Tokens Forge's RPS over LiteLLM's, or LiteLLM's latency over Tokens Forge's "
              "(above 1 when Tokens Forge is ahead). LiteLLM runs with 2 workers; Tokens Forge is measured "
              "with 1 and with 2, in the same run.", ""]
    return lines + table(["measure", "workers", "Tokens Forge", "LiteLLM", "advantage", "target", "met"], rows)


def section_issue17(cells: dict, peers_ok: dict[str, bool]) -> list[str]:
    gw = ISSUE17_GATEWAY
    lines = ["## Issue 17 targets (Tokens Forge against Portkey and LiteLLM, same machine, same run)", ""]
    if not any(k[0] == gw for k in cells):
        return [*lines, f"{TARGET_NAMES[gw]} was not measured in this run.", ""]
    missing = [PEERS[p] for p, ok in peers_ok.items() if not ok]
    lines += [f"Per cell: {TARGET_NAMES[gw]}, durable holds, against Portkey's gateway 1.15.2 (a 2-worker Node "
              "cluster, no ledger) and LiteLLM (2 workers, no database); *ratio* is Tokens Forge's RPS over "
              f"the peer's. Targets: ≥ {TARGET_PORTKEY_RATIO:g}× Portkey and ≥ {TARGET_LITELLM_RATIO:g}× "
              f"LiteLLM in every cell, added p50 at 1 connection ≤ {TARGET_ADDED_P50_MS:g} ms."
              + (f" Not measured in this run: {', '.join(missing)} (see below)." if missing else ""), ""]

    def rps(target: str, mode: str, conns: int) -> float | None:
        cell = cells.get((target, mode, conns))
        return cell["rps"] if cell else None

    def versus(a: float | None, b: float | None, want: float) -> list[str]:
        if not a or not b:
            return [f"{b:.0f}" if b else "–", "–", "–"]
        r = a / b
        return [f"{b:.0f}", f"{r:.2f}×", "yes" if r >= want else "**no**"]

    rows = []
    for mode, mode_name in MODES.items():
        for c in conn_levels(cells):
            tf = rps(gw, mode, c)
            rows.append([mode_name, str(c), f"{tf:.0f}" if tf else "–",
                         *versus(tf, rps("portkey", mode, c), TARGET_PORTKEY_RATIO),
                         *versus(tf, rps("litellm", mode, c), TARGET_LITELLM_RATIO)])
    lines += table(["mode", "connections", "Tokens Forge RPS", "Portkey RPS", "ratio (≥ 1.2×)", "met",
                    "LiteLLM RPS", "ratio (≥ 5×)", "met"], rows)
    rows = []
    for mode, mode_name in MODES.items():
        add = added_latency(cells, gw, mode)
        pk = added_latency(cells, "portkey", mode)
        rows.append([mode_name, ms(add), ms(pk), f"≤ {TARGET_ADDED_P50_MS:g} ms",
                     "–" if add is None else "yes" if add <= TARGET_ADDED_P50_MS else "**no**"])
    lines += ["Added p50 at 1 connection (p50 through the proxy − p50 of nginx direct):", ""]
    return lines + table(["mode", "Tokens Forge (ms)", "Portkey (ms)", "target", "met"], rows)


def _target_row(name: str, workers: str, gw: float | None, ll: float | None, want: float, *,
                higher: bool) -> list[str]:
    if gw is None or ll is None or gw <= 0 or ll <= 0:
        return [name, workers, ms(gw), ms(ll), "–", "–", "–"]
    fmt = (lambda v: f"{v:.0f}") if higher else ms  # RPS as whole numbers, latencies in ms
    r = gw / ll if higher else ll / gw  # > 1 when Tokens Forge is ahead
    return [name, workers, fmt(gw), fmt(ll), f"{r:.1f}×", f"≥ {want:g}×", "yes" if r >= want else "**no**"]


def added_latency(cells: dict, target: str, mode: str) -> float | None:
    a, d = cells.get((target, mode, 1)), cells.get(("direct", mode, 1))
    return a["p50_ms"] - d["p50_ms"] if a and d else None


def section_wrk(cells: dict, duration: str) -> list[str]:
    lines = ["## Throughput and latency (wrk)", "",
             f"Closed loop, {duration} s per cell after a 3 s warm-up, `max_tokens` 16; latency in ms. "
             "*errors* counts every answer that is not 2xx (and socket errors, if any): it must be 0.", ""]
    targets = [t for t in TARGETS if any(k[0] == t for k in cells)]
    for mode, mode_name in MODES.items():
        lines += [f"### {mode_name.capitalize()}", ""]
        header = ["connections"]
        for t in targets:
            header += [f"{TARGET_NAMES[t]} RPS", "p50", "p99", "errors"]
        rows = []
        for c in conn_levels(cells):
            row = [str(c)]
            for t in targets:
                cell = cells.get((t, mode, c))
                row += [f"{cell['rps']:.0f}", ms(cell["p50_ms"]), ms(cell["p99_ms"]), bad(cell)] if cell else ["–"] * 4
            rows.append(row)
        lines += table(header, rows)
    lines += ["### CPU per request", "",
              "CPU time (user + system, from /proc) of the target's processes during the cell, per request "
              "served: the cost of a request, whatever else the machine was doing (PostgreSQL's share is not "
              "included). *cores* is what the target used of the machine's "
              f"{os.cpu_count()}; *machine busy* counts everything (the target, wrk, PostgreSQL and any other "
              "work): when it is near 100 % while the target uses little, the target was starved of CPU.", ""]
    rows = []
    for t in targets:
        for m, mode_name in MODES.items():
            for c in conn_levels(cells):
                cell = cells.get((t, m, c), {})
                v = cell.get("cpu_ms_per_request")
                if v is None:
                    continue
                rows.append([TARGET_NAMES[t], mode_name, str(c), f"{v:.3f}" if v < 1 else f"{v:.2f}",
                             f"{cell['target_cores']:.2f}", f"{cell['machine_busy_pct']:.0f} %"])
    lines += table(["target", "mode", "connections", "CPU ms / request", "cores", "machine busy"], rows)
    lines += ["### Added latency at 1 connection (p50 through the proxy − p50 direct)", ""]
    rows = []
    for mode, mode_name in MODES.items():
        ll = added_latency(cells, "litellm", mode)
        for gw_target in GATEWAYS:
            gw = added_latency(cells, gw_target, mode)
            if gw is not None:
                rows.append([mode_name, TARGET_NAMES[gw_target], ms(gw), ms(ll), ratio(ll, gw) if gw and ll else "–"])
    return lines + table(["mode", "target", "added (ms)", "LiteLLM (ms)", "LiteLLM / Tokens Forge"], rows)


def section_ledger(ledger: dict | None) -> list[str]:
    lines = ["## Reserve + settle (the spend guard and the ledger, no HTTP)", ""]
    if ledger is None:
        return [*lines, "Not measured in this run.", ""]
    lines += ["`bench/ledger_bench.py`: each of *connections* concurrent loops runs what the gateway runs "
              "per request: `ledger.attempts.open_attempt` (receipt + reservation + attempt row) then "
              "`ledger.attempts.finish_attempt` (settle + outcome + receipt totals), through one group commit "
              "(`LedgerWriter`, as in one gateway worker), for 4 s. *100 keys* are 100 keys "
              "in 100 accounts, no two loops on one key at a time. Latency in ms, per pair.", ""]
    rows = [[c["keys"], str(c["conc"]), f"{c['pairs_per_s']:.0f}", ms(c["p50_ms"]), ms(c["p99_ms"]),
             str(sum(c["errors"].values()))] for c in ledger["cells"] if c.get("through", "direct") == "direct"]
    lines += table(["keys", "connections", "pairs/s", "p50", "p99", "errors"], rows)
    v = ledger["verify"]
    failed = [c["name"] for c in v["checks"] if not c["ok"]]
    lines += [f"Ledger verifier after the whole run (gateway traffic included): "
              f"**{'all ' + str(len(v['checks'])) + ' checks pass' if v['ok'] else 'FAILED: ' + ', '.join(failed)}**.",
              ""]
    return lines


def section_streams(s: dict | None) -> list[str]:
    lines = ["## Memory for concurrent slow streams", ""]
    if s is None:
        return [*lines, "Not measured in this run.", ""]
    def mib(kb: int) -> str:
        return f"{kb / 1024:.0f} MiB"

    lines += [f"{s['streams']} streaming requests opened at once through the gateway (2 workers) to the mock "
              f"upstream's `{s['model'].split(':')[0] if ':' in s['model'] else s['model']}` route (200 words, "
              "one every 200 ms), RSS summed over the gateway's processes from /proc every 0.25 s.", ""]
    lines += table(["measure", "value"], [
        ["streams open at once (max)", str(s["max_open"])],
        ["time until all were open", f"{s['ramp_s']} s" if s["ramp_s"] is not None else "not all opened"],
        ["outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(s["outcomes"].items()))],
        ["RSS before (after the wrk runs)", mib(s["baseline_rss_kb"])],
        ["RSS at peak", f"{mib(s['peak_rss_kb'])} with {s['open_at_peak']} streams open"],
        ["per process at peak", ", ".join(f"{k}: {mib(v)}" for k, v in s["peak_per_pid_kb"].items())],
        ["growth per stream (peak − before) / most open at once",
         f"{(s['peak_rss_kb'] - s['baseline_rss_kb']) / max(s['max_open'], 1):.0f} KiB"],
    ])
    return lines


def section_upstream_clients(u: dict | None) -> list[str]:
    lines = ["## Upstream client: CPU per call", ""]
    if u is None:
        return [*lines, "Not measured in this run.", ""]
    lines += ["`bench/upstream_clients.py`: the bench's non-streaming request posted to the nginx fake upstream "
              "by each HTTP client, one process, uvloop, pooled keep-alive connections, sequentially and from "
              "16 concurrent tasks; CPU is the process's own (getrusage). The gateway calls upstreams with "
              "aiohttp (`upstream/transport.py`) for this difference.", ""]
    rows = [[r["client"], str(r["concurrency"]), f"{r['calls']:,}", f"{r['cpu_ms_per_call']:.3f}",
             f"{r['calls_per_s']:,}"] for r in u["clients"]]
    return lines + table(["client", "concurrency", "calls", "CPU ms / call", "calls/s"], rows) + [""]


OBS_VARIANTS = {"metrics": "metrics (request log off: TF_LOG_LEVEL=warning)",
                "logged": "metrics + JSON request log (TF_LOG_LEVEL=info, the default)",
                "traced": "metrics + request log + tracing (OTLP/HTTP to a local sink)"}


def section_observability(results: Path) -> list[str]:
    lines = ["## What observing costs: metrics, the request log, tracing", ""]
    micro = load_json(results / "observability.json")
    if micro is None:
        return [*lines, "Not measured in this run.", ""]
    lines += ["`bench/observability_cost.py`: the observability middleware around an ASGI app that answers at "
              "once, no HTTP and no database, each configuration in a fresh process; CPU of that process (the "
              "span exporter's thread included, after a flush) per request, the least of "
              f"{micro.get('repeats', 1)} runs. *The pipeline's reports* are what the request story reports of a "
              "request of one attempt (observability/story.py: the reservation, the attempt and its settle: "
              "their metrics and the log line's facts and, with tracing on, their three child spans), around "
              f"ledger writes that answer at once. Load average {micro['load_average_1m']:.2f} on {micro['cpus']} cores "
              "while it ran.", ""]
    rows = [[r["config"], f"{r['cpu_us_per_request']:.1f}", f"{r['added_cpu_us']:+.1f}"] for r in micro["results"]]
    lines += table(["configuration", "CPU µs / request", "added"], rows)
    cells = {}
    for variant in OBS_VARIANTS:
        data = load_json(results / "wrk-obs" / f"{variant}.json")
        cpu = load_json(results / "wrk-obs" / f"{variant}.cpu.json")
        if data and cpu and data["requests"]:
            cells[variant] = (data, cpu["cpu_s"] * 1000 / data["requests"], cpu.get("machine_busy_pct", 0))
    if cells:
        lines += ["wrk against the gateway with 1 worker, non-streaming, 16 connections, one cell each, in this "
                  "order (the same database and upstream). One short cell each: when *machine busy* is near "
                  "100 % the RPS mostly say what else ran; CPU per request is the measure to compare.", ""]
        rows = [[OBS_VARIANTS[v], f"{d['rps']:.0f}", ms(d["p50_ms"]), ms(d["p99_ms"]), bad(d), f"{cpu:.3f}",
                 f"{busy:.0f} %"] for v, (d, cpu, busy) in cells.items()]
        lines += [*table(["gateway", "RPS", "p50", "p99", "errors", "CPU ms / request", "machine busy"], rows), ""]
    return lines


def section_export(e: dict | None) -> list[str]:
    title = f"## Export of {e['rows']:,} usage rows: constant memory" if e else "## Usage export: memory"
    lines = [title, ""]
    if e is None:
        return [*lines, "Not measured in this run.", ""]

    def mib(kb: int) -> str:
        return f"{kb / 1024:.0f} MiB"

    def growth(kb: int) -> str:
        return f"{kb / 1024:+.1f} MiB"

    lines += [f"`bench/export_memory.py`: {e['rows']:,} succeeded receipts of one account bulk-inserted into a "
              f"fresh database ({e['database']['table_bytes'] / 2**20:.0f} MiB with indexes), then "
              "`GET /v1/usage?format=csv` and `?format=jsonl` downloaded with its key from the gateway "
              f"({e['workers']} worker), the client counting rows and bytes without keeping them; the gateway's "
              f"RSS from /proc every {e['sample_s']} s. *first tenth*: the growth while the first 10 % of the rows "
              "went out; memory that grew with the rows would end about ten times higher.", ""]
    rows = []
    for fmt in ("csv", "jsonl"):
        r = e.get(fmt)
        if r is None:
            continue
        check = "yes" if r["rows_match"] and r["sum_matches"] else "**no**"
        rows.append([fmt, f"{r['rows']:,}", f"{r['bytes'] / 2**20:.0f} MiB", f"{r['seconds']:.1f}",
                     f"{r['rows_per_s']:,}", mib(r["rss_before_kb"]), mib(r["peak_rss_kb"]),
                     growth(r["peak_growth_kb"]), growth(r["growth_first_tenth_kb"]), check])
    lines += table(["format", "rows", "size", "seconds", "rows/s", "RSS before", "peak RSS", "peak − before",
                    "first tenth", "every row, sum of charged_micros = DB"], rows)
    return lines


def section_profiles(results: Path) -> list[str]:
    lines = ["## Where the gateway's CPU goes (py-spy)", ""]
    found = False
    for mode, mode_name in MODES.items():
        raw = results / f"profile-{mode}.txt"
        if not raw.exists():
            continue
        found = True
        wrk = load_json(results / f"profile-{mode}-wrk.json") or {}
        s = summarize(raw.read_text())
        lines += [f"### {mode_name.capitalize()}, 16 connections "
                  f"({wrk.get('rps', 0):.0f} RPS while sampled; {s['samples']} samples of busy threads, "
                  "the 1-worker gateway)", ""]
        lines += ["What the gateway was doing (each sample counted once, by the first stage its stack is in):", ""]
        lines += table(["stage", "share"], [[k, f"{v:.1f} %"] for k, v in s["stages"]])
        lines += ["By package of the innermost frame (self time):", ""]
        lines += table(["package", "share"], [[k, f"{v:.1f} %"] for k, v in s["by_package"][:12]])
        lines += ["Gateway functions, inclusive (time spent in them and in what they call):", ""]
        lines += table(["function", "share"], [[f"`{k}`", f"{v:.1f} %"] for k, v in s["gateway_inclusive"][:18]])
        lines += ["Hottest frames, self time:", ""]
        lines += table(["frame", "share"], [[f"`{k}`", f"{v:.1f} %"] for k, v in s["self"][:15]])
    if not found:
        lines += ["No profile in this run (py-spy missing or not permitted).", ""]
    return lines


def section_peer(name: str, info: dict | None) -> list[str]:
    if info is None or info.get("ok"):
        return []
    return [f"## {name}", "", f"{name} {info.get('version')} is not in the tables of this run: {info['reason']}", ""]


def render(results: Path, elapsed: str | None) -> str:
    m = load_json(results / "machine.json") or {}
    cells = load_wrk(results)
    peers = {p: load_json(results / f"{p}.json") for p in PEERS}
    peers_ok = {p: bool(info and info.get("ok")) for p, info in peers.items()}
    litellm_ok = peers_ok["litellm"]
    duration = f"{next(iter(cells.values()))['duration_s']:.0f}" if cells else "?"
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (`bench/run.sh`, then `bench/report.py` from the raw results in "
             "`bench/results/`). Do not edit by hand: edit `bench/analysis.md` for the prose.", "",
             "Reproduce: `make bench` (10–16 minutes, plus up to 3 waiting for a busy machine to calm down; "
             "`BENCH_SKIP_LITELLM=1` / `BENCH_SKIP_PORTKEY=1` leave a peer out, `BENCH_WRK_ONLY=1` runs the wrk "
             "matrix alone, `BENCH_DURATION=5` shortens every wrk cell; "
             "the knobs are listed at the top of `bench/run.sh`).", ""]
    lines += section_machine(m, load_json(results / "database.json"), elapsed) if m else []
    lines += section_issue17(cells, peers_ok)
    lines += section_targets(cells, litellm_ok)
    lines += section_wrk(cells, duration)
    for p, name in PEERS.items():
        lines += section_peer(name, peers[p])
    lines += section_ledger(load_json(results / "ledger.json"))
    lines += section_pgbouncer(load_json(results / "ledger.json"), load_json(results / "pooler_cost.json"))
    lines += section_upstream_clients(load_json(results / "upstream_clients.json"))
    lines += section_streams(load_json(results / "streams.json"))
    lines += section_export(load_json(results / "export.json"))
    lines += section_observability(results)
    lines += section_profiles(results)
    analysis = BENCH / "analysis.md"
    if analysis.exists():
        lines += [analysis.read_text().rstrip(), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", type=Path, help="write the machine description here and stop")
    parser.add_argument("--database", nargs=2, metavar=("URL", "OUT"), help="record the database's settings and stop")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--out", type=Path, default=BENCH.parent / "BENCHMARKS.md")
    parser.add_argument("--elapsed")
    parser.add_argument("--section", choices=["observability"], help="print this section alone and stop")
    args = parser.parse_args()
    if args.section:
        print("\n".join(section_observability(args.results)))
        return
    if args.machine:
        args.machine.write_text(json.dumps(machine(), indent=2))
        return
    if args.database:
        Path(args.database[1]).write_text(json.dumps(database(args.database[0]), indent=2))
        return
    args.out.write_text(render(args.results, args.elapsed))


if __name__ == "__main__":
    main()
