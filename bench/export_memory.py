"""Memory for a large usage export: GET /v1/usage?format=csv and ?format=jsonl over N receipts
must stream from the server-side cursor in bounded memory (issue 6).

On a fresh database (created here, dropped at the end): migrate, start `tokens-forge serve
--workers 1` on a free port, make an account, project and key over the admin API, bulk-insert N
succeeded receipts for that account with one INSERT … SELECT FROM generate_series, then download
both exports with the key, counting rows and bytes without keeping them, while a thread samples
the resident memory of the gateway's processes (from /proc, see proctree.py) every 0.1 s. The
CSV must hold exactly N rows whose charged_micros add up to what the database holds; so must
the JSON Lines.

Usage: python bench/export_memory.py DATABASE_URL OUT_JSON [--rows 1000000] [--database NAME]
  DATABASE_URL names the database to create (postgresql://postgres@127.0.0.1:5432/tf_export);
  --database NAME replaces the database name of DATABASE_URL (to reuse another database's server).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg
import httpx
import orjson
from proctree import tree_rss_kb
from sqlalchemy.engine import make_url

from tokens_forge.db.migrate import upgrade_head
from tokens_forge.db.url import plain_url, redact

TF = Path(sys.executable).parent / "tokens-forge"
SAMPLE_S = 0.1

INSERT_SQL = """
INSERT INTO receipts (id, account_id, project_id, key_id, model, status, route_kind, bucket,
                      prompt_tokens, completion_tokens, total_charged_micros, created_at, completed_at)
SELECT 'rcpt_' || lpad(g::text, 20, '0'), $1, $2, $3,
       CASE WHEN g % 3 = 0 THEN 'export-bench-large' ELSE 'export-bench-small' END,
       'succeeded',
       CASE WHEN g % 4 = 0 THEN 'routed' ELSE 'official' END,
       CASE WHEN g % 4 = 0 THEN 'routed' ELSE 'credit' END,
       g % 2000, g % 500, g % 1000,
       now() - (g * interval '30 days') / $4::bigint,
       now() - (g * interval '30 days') / $4::bigint + interval '1.5 seconds'
  FROM generate_series(1, $4::bigint) g
"""

# Usage takes what was charged from the ledger's own rows (a settle transfer out of the account's
# hold account), so every charged receipt gets a settled hold and its settle transfer. The
# accounts' cached balances are not updated: this database only serves the export.
HOLDS_SQL = """
INSERT INTO holds (account_id, bucket, amount, status, charged, counter_ids, receipt_id, attempt_no,
                   expires_at, created_at, resolved_at)
SELECT r.account_id, r.bucket, r.total_charged_micros, 'settled', r.total_charged_micros, '{}', r.id, 1,
       r.created_at + interval '15 minutes', r.created_at, r.completed_at
  FROM receipts r WHERE r.account_id = $1 AND r.total_charged_micros > 0
"""
TRANSFERS_SQL = """
INSERT INTO transfers (debit_account_id, credit_account_id, amount, kind, account_id, bucket, hold_id, receipt_id,
                       attempt_no, debit_balance_after, credit_balance_after, created_at)
SELECT ha.id, rev.id, h.charged, 'settle', h.account_id, h.bucket, h.id, h.receipt_id, 1, 0, 0, h.resolved_at
  FROM holds h
  JOIN ledger_accounts ha ON ha.code = 'hold:' || h.account_id || ':' || h.bucket
 CROSS JOIN (SELECT id FROM ledger_accounts WHERE kind = 'revenue' ORDER BY id LIMIT 1) rev
 WHERE h.account_id = $1
"""


# -- the database -----------------------------------------------------------------------------

def _names(url: str, database: str | None) -> tuple[str, str, str]:
    """(URL of the database to create, URL of the server's `postgres` database, the name)."""
    u = make_url(plain_url(url))
    if database:
        u = u.set(database=database)
    name = u.database or ""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        sys.exit(f"export_memory: {name!r} is not a plain database name")
    return (u.render_as_string(hide_password=False), u.set(database="postgres").render_as_string(hide_password=False),
            name)


async def _admin_sql(server_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def _fill(url: str, tenant: dict, rows: int) -> dict:
    conn = await asyncpg.connect(url)
    try:
        began = time.perf_counter()
        await conn.execute(INSERT_SQL, tenant["account_id"], tenant["project_id"], tenant["key_id"], rows)
        await conn.execute(HOLDS_SQL, tenant["account_id"])
        await conn.execute(TRANSFERS_SQL, tenant["account_id"])
        insert_s = time.perf_counter() - began
        await conn.execute("VACUUM ANALYZE receipts, holds, transfers")
        count, total = await conn.fetchrow(
            "SELECT count(*), COALESCE(sum(total_charged_micros), 0) FROM receipts WHERE account_id = $1",
            tenant["account_id"])
        size = await conn.fetchval("SELECT pg_total_relation_size('receipts')")
        return {"rows": count, "sum_charged_micros": int(total), "insert_s": round(insert_s, 2),
                "table_bytes": size}
    finally:
        await conn.close()


# -- the gateway ------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_gateway(url: str, port: int, admin: str, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_DATABASE_URL": url, "TF_ADMIN_TOKEN": admin, "TF_LOG_LEVEL": "warning",
           "TF_DATA_DIR": str(workdir)}
    return subprocess.Popen([str(TF), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            cwd=workdir, env=env, stdout=open(workdir / "gateway.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop_gateway(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def _wait_ready(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"export_memory: the gateway exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit(f"export_memory: the gateway did not become ready:\n{log.read_text()[-2000:]}")


def _tenant(base: str, admin: str) -> dict:
    with httpx.Client(base_url=base + "/admin/v1", headers={"Authorization": f"Bearer {admin}"}, timeout=30) as a:
        def post(path: str, body: dict) -> dict:
            resp = a.post(path, json=body)
            if resp.status_code >= 300:
                sys.exit(f"export_memory: POST {path} answered {resp.status_code}: {resp.text[:300]}")
            return resp.json()

        account = post("/accounts", {"name": "export-bench"})
        project = post("/projects", {"account_id": account["id"], "name": "export-bench"})
        key = post("/keys", {"project_id": project["id"], "name": "export-bench"})
    return {"account_id": account["id"], "project_id": project["id"], "key_id": key["id"], "secret": key["secret"]}


# -- measuring --------------------------------------------------------------------------------

class Sampler(threading.Thread):
    """RSS of the gateway's process tree every SAMPLE_S, with how many rows the client had read."""

    def __init__(self, pid: int, progress: list[int]):
        super().__init__(daemon=True)
        self.pid, self.progress = pid, progress
        self.samples: list[dict] = []
        self.began = time.perf_counter()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            per_pid = tree_rss_kb(self.pid)
            self.samples.append({"t": round(time.perf_counter() - self.began, 2), "rows": self.progress[0],
                                 "rss_kb": sum(per_pid.values()), "per_pid_kb": per_pid})
            self.halt.wait(SAMPLE_S)


def _baseline_kb(pid: int) -> int:
    vals = []
    for _ in range(5):
        vals.append(sum(tree_rss_kb(pid).values()))
        time.sleep(SAMPLE_S)
    return sorted(vals)[len(vals) // 2]


def _csv_consumer():
    """Counts data rows and adds up charged_micros, line by line; nothing is kept."""
    state = {"rows": 0, "sum": 0, "header": None, "col": None, "tail": b""}

    def line(raw: bytes) -> None:
        raw = raw.rstrip(b"\r")
        if not raw:
            return
        fields = next(csv.reader([raw.decode()])) if b'"' in raw else raw.decode().split(",")
        if state["header"] is None:
            state["header"] = fields
            state["col"] = fields.index("charged_micros")
            return
        state["rows"] += 1
        state["sum"] += int(fields[state["col"]])

    def feed(chunk: bytes) -> int:
        lines = (state["tail"] + chunk).split(b"\n")
        state["tail"] = lines.pop()
        for raw in lines:
            line(raw)
        return state["rows"]

    def finish() -> dict:
        line(state["tail"])
        return {"rows": state["rows"], "sum_charged_micros": state["sum"], "header": state["header"]}

    return feed, finish


def _jsonl_consumer():
    state = {"rows": 0, "sum": 0, "tail": b""}

    def line(raw: bytes) -> None:
        if raw.strip():
            state["rows"] += 1
            state["sum"] += orjson.loads(raw)["charged_micros"]

    def feed(chunk: bytes) -> int:
        lines = (state["tail"] + chunk).split(b"\n")
        state["tail"] = lines.pop()
        for raw in lines:
            line(raw)
        return state["rows"]

    def finish() -> dict:
        line(state["tail"])
        return {"rows": state["rows"], "sum_charged_micros": state["sum"]}

    return feed, finish


def export(base: str, secret: str, fmt: str, pid: int) -> dict:
    feed, finish = _csv_consumer() if fmt == "csv" else _jsonl_consumer()
    before = _baseline_kb(pid)
    progress = [0]
    sampler = Sampler(pid, progress)
    nbytes = 0
    headers = {"Authorization": f"Bearer {secret}"}
    timeout = httpx.Timeout(120.0, connect=10.0)
    sampler.start()
    began = time.perf_counter()
    first_byte_s = None
    with httpx.stream("GET", f"{base}/v1/usage", params={"format": fmt}, headers=headers, timeout=timeout) as resp:
        if resp.status_code != 200:
            sampler.halt.set()
            sys.exit(f"export_memory: {fmt} export answered {resp.status_code}: {resp.read()[:300]!r}")
        content_type = resp.headers.get("content-type")
        for chunk in resp.iter_raw():
            if first_byte_s is None:
                first_byte_s = time.perf_counter() - began
            nbytes += len(chunk)
            progress[0] = feed(chunk)
    seconds = time.perf_counter() - began
    got = finish()
    progress[0] = got["rows"]
    time.sleep(1.0)  # what the worker keeps once the export is over
    sampler.halt.set()
    sampler.join()
    samples = sampler.samples
    during = [s for s in samples if s["t"] <= seconds + SAMPLE_S] or samples
    peak = max(during, key=lambda s: s["rss_kb"])
    tenth = [s for s in during if s["rows"] <= got["rows"] // 10] or during[:1]
    return {
        "format": fmt, "content_type": content_type, **got, "bytes": nbytes,
        "seconds": round(seconds, 2), "first_byte_s": round(first_byte_s or 0, 3),
        "rows_per_s": round(got["rows"] / seconds), "mib_per_s": round(nbytes / seconds / 2**20, 1),
        "rss_before_kb": before, "peak_rss_kb": peak["rss_kb"], "peak_growth_kb": peak["rss_kb"] - before,
        "peak_at_rows": peak["rows"], "peak_per_pid_kb": peak["per_pid_kb"],
        "growth_first_tenth_kb": max(s["rss_kb"] for s in tenth) - before,
        "rss_after_kb": samples[-1]["rss_kb"],
        "samples": [{k: s[k] for k in ("t", "rows", "rss_kb")} for s in samples],
    }


# -- main -------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict:
    url, server_url, name = _names(args.database_url, args.database)
    admin = "adm-export-" + secrets.token_hex(12)
    quoted = f'"{name}"'
    asyncio.run(_admin_sql(server_url, f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)", f"CREATE DATABASE {quoted}"))
    proc = None
    try:
        with tempfile.TemporaryDirectory(prefix="tf-export-") as tmp:
            upgrade_head(url)
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            proc = _start_gateway(url, port, admin, Path(tmp))
            _wait_ready(base, proc, Path(tmp) / "gateway.log")
            tenant = _tenant(base, admin)
            print(f"export: inserting {args.rows:,} receipts into {redact(url)}", flush=True)
            db = asyncio.run(_fill(url, tenant, args.rows))
            print(f"export: {db['rows']:,} receipts in {db['insert_s']} s "
                  f"({db['table_bytes'] / 2**20:.0f} MiB with indexes)", flush=True)
            # Warm the worker (first request on the key, the record query's plan) before measuring.
            httpx.get(f"{base}/v1/usage", params={"limit": 1},
                      headers={"Authorization": f"Bearer {tenant['secret']}"}, timeout=30).raise_for_status()
            results = {}
            for fmt in ("csv", "jsonl"):
                r = export(base, tenant["secret"], fmt, proc.pid)
                r["rows_match"] = r["rows"] == db["rows"] == args.rows
                r["sum_matches"] = r["sum_charged_micros"] == db["sum_charged_micros"]
                results[fmt] = r
                print(f"export {fmt}: {r['rows']:,} rows, {r['bytes'] / 2**20:.0f} MiB in {r['seconds']} s "
                      f"({r['rows_per_s']:,} rows/s); RSS {r['rss_before_kb'] / 1024:.0f} MiB before, "
                      f"peak {r['peak_rss_kb'] / 1024:.0f} MiB (+{r['peak_growth_kb'] / 1024:.1f} MiB; "
                      f"+{r['growth_first_tenth_kb'] / 1024:.1f} MiB over the first tenth); "
                      f"rows match: {r['rows_match']}, charged sum matches: {r['sum_matches']}", flush=True)
            _stop_gateway(proc)
            return {"rows": args.rows, "workers": 1, "sample_s": SAMPLE_S, "database": db,
                    "ok": all(r["rows_match"] and r["sum_matches"] for r in results.values()), **results}
    finally:
        if proc is not None:
            _stop_gateway(proc)
        asyncio.run(_admin_sql(server_url, f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", help="the database to create on DATABASE_URL's server (replaces its name)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the gateway and drop the database
    result = run(args)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    if not result["ok"]:
        sys.exit("export_memory: an export did not hold every row (see the JSON)")


if __name__ == "__main__":
    main()
