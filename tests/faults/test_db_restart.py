"""PostgreSQL restarted under load: a PostgreSQL of our own (pgserver in a tmp dir: the shared test
database is never touched), a `tokens-forge serve --workers 2` of our own against it, client threads
sending plain and streamed requests the whole time, and `pg_ctl stop -m fast` / start in the middle.

Requests during the outage fail cleanly (503, never a 500, never a hang past a bound), a stream
already answering ends with an SSE error event or completes (never a dropped connection), the
gateway recovers by itself once the database is back (no restart of the gateway), and afterwards no
hold is left, no receipt stays pending, the wallet lost exactly what the receipts say, and the
ledger verifies."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, PRICE, free_port, ok, wait_http
from tests.faults.conftest import LONG, sse_data

REQUEST_BOUND_S = 25.0  # no request may take longer than this, outage or not
RECOVERY_S = 15.0       # after the database is back, requests succeed again within this


class OwnPostgres:
    def __init__(self):
        import pgserver

        self.dir = Path(tempfile.mkdtemp(prefix="tf-pgr-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.server = pgserver.get_server(str(self.dir / "pgdata"), cleanup_mode="stop")
        self.url = self.server.get_uri("postgres")

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()
        with contextlib.suppress(Exception):
            self._pg_ctl("-w", "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_stack(fault_upstream):
    """Our own PostgreSQL, migrated, and a 2-worker gateway against it; a funded tenant whose
    routes go to the fault upstream: `slow:150` (plain and streamed) and `drip_tail:300` (a 4 s stream
    that keeps extending its hold while it lasts)."""
    from tokens_forge.db.migrate import upgrade_head

    pg = OwnPostgres()
    procs: list[subprocess.Popen] = []
    try:
        upgrade_head(pg.url)
        env = {**os.environ, "TF_DATABASE_URL": pg.url, "TF_ADMIN_TOKEN": ADMIN, "TF_DATA_DIR": str(pg.dir),
               "TF_HOLD_TTL_S": "3", "TF_SWEEP_INTERVAL_S": "0.5", "TF_KEY_CACHE_TTL_S": "0.2"}
        bases, logs = [], []
        for i in range(2 if LONG else 1):  # long: two gateway processes of two workers each
            port = free_port()
            log = pg.dir / f"gateway-{i}.log"
            procs.append(subprocess.Popen([str(Path(sys.executable).parent / "tokens-forge"), "serve", "--port",
                                           str(port), "--workers", "2"], cwd=pg.dir, env=env,
                                          stdout=open(log, "w"), stderr=subprocess.STDOUT))
            bases.append(f"http://127.0.0.1:{port}")
            logs.append(log)
            wait_http(bases[-1] + "/healthz", 90, procs[-1], log)
        base = bases[0]
        admin = httpx.Client(base_url=base + "/admin/v1", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        acct = ok(admin.post("/accounts", json={"name": "restart"}))
        ok(admin.post(f"/accounts/{acct['id']}/topups",
                      json={"bucket": "credit", "amount_micros": 100_000_000, "reference": "restart-credit"}))
        proj = ok(admin.post("/projects", json={"account_id": acct["id"], "name": "p"}))
        for model, up in (("restart-m", "slow:150"), ("restart-drip", "drip_tail:300")):
            ok(admin.post("/routes", json={"model": model, "kind": "official", "base_url": fault_upstream,
                                           "upstream_model": up, "upstream_api_key": "sk-upstream-restart",
                                           "price": PRICE, "failed_request_charge": {"mode": "none"},
                                           "timeout_s": 10, "priority": 1}))
        key = ok(admin.post("/keys", json={"project_id": proj["id"], "name": "k",
                                           "retry_policy": {"max_attempts": 1, "retry_on": [], "backoff_ms": 0},
                                           "fallback_policy": "none"}))
        yield Stack(pg, base, bases, admin, {"Authorization": f"Bearer {key['secret']}"}, logs)
        admin.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg.close()


@dataclass
class Stack:
    pg: OwnPostgres
    base: str           # the first gateway (admin and checks)
    bases: list[str]    # every gateway process (the load is spread over them)
    admin: httpx.Client
    auth: dict
    logs: list[Path]


@dataclass
class Outcome:
    started: float
    ended: float
    kind: str            # json | stream | drip
    status: int | None   # None: the client saw a transport error
    clean: bool          # a JSON answer, or a stream that ended with [DONE] or an SSE error event
    detail: str


def one_request(c: httpx.Client, base: str, auth: dict, kind: str) -> Outcome:
    body = {"model": "restart-drip" if kind == "drip" else "restart-m",
            "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 3}
    if kind != "json":
        body["stream"] = True
    t0 = time.monotonic()
    try:
        with c.stream("POST", base + "/v1/chat/completions", json=body, headers=auth) as r:
            raw = r.read()
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            events = sse_data(raw)
            last = events[-1] if events else b""
            clean = last.strip() == b"[DONE]" or last.startswith(b'{"error"')
        else:
            clean = raw.startswith(b"{")
        return Outcome(t0, time.monotonic(), kind, r.status_code, clean, raw[-300:].decode("utf-8", "replace"))
    except httpx.HTTPError as exc:
        return Outcome(t0, time.monotonic(), kind, None, False, f"{type(exc).__name__}: {exc}")


def load(stack: Stack, stop: threading.Event, out: list[Outcome], kinds: list[str], base: str) -> None:
    with httpx.Client(timeout=httpx.Timeout(REQUEST_BOUND_S + 5)) as c:
        i = 0
        while not stop.is_set():
            out.append(one_request(c, base, stack.auth, kinds[i % len(kinds)]))
            i += 1
            time.sleep(0.02)


def test_postgres_restart_under_load(own_stack):
    stack = own_stack
    outcomes: list[Outcome] = []
    stop = threading.Event()
    mixes = [["json"], ["stream"], ["json", "stream"], ["drip"]] * (2 if LONG else 1)
    threads = [threading.Thread(target=load, args=(stack, stop, outcomes, m, stack.bases[i % len(stack.bases)]),
                                daemon=True) for i, m in enumerate(mixes)]
    for th in threads:
        th.start()
    outages: list[tuple[float, float]] = []
    try:
        time.sleep(3)
        for _ in range(3 if LONG else 1):
            down = time.monotonic()
            stack.pg.stop()
            time.sleep(4)
            stack.pg.start()
            up = time.monotonic()
            outages.append((down, up))
            time.sleep(RECOVERY_S if LONG else 1)
        # the last stretch: the gateway must be serving again by now
        time.sleep(RECOVERY_S + 3 - (RECOVERY_S if LONG else 1))
    finally:
        stop.set()
        for th in threads:
            th.join(REQUEST_BOUND_S + 10)
    assert not any(th.is_alive() for th in threads), "a client thread hung"
    log = "\n".join(p.read_text(errors="replace") for p in stack.logs)
    if os.environ.get("TF_KEEP_FAULT_LOGS"):
        Path(os.environ["TF_KEEP_FAULT_LOGS"]).write_text(log)

    problems = []
    for o in outcomes:
        took = o.ended - o.started
        if took > REQUEST_BOUND_S:
            problems.append(f"{o.kind} took {took:.1f}s: {o.status} {o.detail[:120]}")
        if o.status not in (200, 503):
            problems.append(f"{o.kind} answered {o.status}: {o.detail[:200]}")
        elif not o.clean:
            problems.append(f"{o.kind} {o.status} ended uncleanly (no [DONE], no SSE error event): {o.detail[-160:]}")
    during = [o for o in outcomes if any(d <= o.started <= u for d, u in outages)]
    assert during and any(o.status == 503 for o in during), "the outage was not seen by any request"
    last_up = outages[-1][1]
    late = [o for o in outcomes if o.started > last_up + RECOVERY_S]
    assert late, "no request was sent after the recovery window"
    not_ok = [(o.kind, o.status, o.detail[:160]) for o in late if o.status != 200 or not o.clean]
    first_ok = min((o.started - last_up for o in outcomes if o.started > last_up and o.status == 200), default=None)
    assert not not_ok, (f"the gateway did not recover by itself within {RECOVERY_S}s (first success "
                        f"{first_ok}s after the restart): {not_ok[:5]}")

    # money: no hold outlives the outage (the sweeper releases what a lost settle left), no
    # receipt stays pending, the wallet lost what the receipts say, and the ledger verifies.
    deadline = time.monotonic() + 40
    while True:
        w = ok(httpx.get(stack.base + "/v1/wallet", headers=stack.auth, timeout=30))
        rows, cursor = [], None
        while True:
            page = ok(httpx.get(stack.base + "/v1/usage", headers=stack.auth, timeout=30,
                                params={"limit": 500, **({"cursor": cursor} if cursor else {})}))
            rows += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        pending = [r for r in rows if r["status"] == "pending"]
        if (w["buckets"]["credit"]["held_micros"] == 0 and not pending) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert w["buckets"]["credit"]["held_micros"] == 0, w
    assert not pending, pending[:3]
    assert 100_000_000 - w["buckets"]["credit"]["posted_micros"] == sum(r["charged_micros"] for r in rows)
    v = ok(stack.admin.get("/ledger/verify"))
    assert v["ok"] is True, v
    assert sum(o.status == 200 for o in outcomes) > 10
    assert "sk-upstream-restart" not in log and stack.auth["Authorization"][7:] not in log, "a secret in the log"
    assert not problems, f"{len(problems)} unclean answer(s) of {len(outcomes)}: {problems[:8]}"
    if "Exception in ASGI application" in log:
        start = log.find("Exception in ASGI application")
        tb = log[start:start + 20000]
        raise AssertionError("an exception escaped the app (the client saw a dropped connection or a bare "
                             "500): " + tb[:600] + " ... " + tb[tb.find("\n\n") - 1500 if "\n\n" in tb else -1500:][:1500])


def test_streams_that_end_while_postgres_is_down_are_charged_when_it_is_back(own_stack):
    """A survivable outage gives nothing away: the settles (and the idempotent answers) of streams
    that end while the database is down are kept and retried until it is back."""
    stack = own_stack
    results: list[tuple[str, httpx.Response | None, bytes]] = []
    body = {"model": "restart-drip", "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 3,
            "stream": True}

    def stream(key: str) -> None:
        with httpx.Client(timeout=60) as c, c.stream("POST", stack.base + "/v1/chat/completions", json=body,
                                                     headers={**stack.auth, "Idempotency-Key": key}) as r:
            results.append((key, r, r.read()))

    keys = [f"outage-{i}-{time.monotonic_ns()}" for i in range(4)]
    threads = [threading.Thread(target=stream, args=(k,)) for k in keys]
    for th in threads:
        th.start()
    time.sleep(1.0)
    stack.pg.stop()  # the streams end about 3 s later, while the database is down
    time.sleep(7)
    stack.pg.start()
    for th in threads:
        th.join(60)
    assert len(results) == 4 and all(r.status_code == 200 and b"[DONE]" in raw for _, r, raw in results)
    deadline = time.monotonic() + 60
    for key, r, _ in results:
        rid = r.headers["x-tf-receipt-id"]
        while True:
            got = httpx.get(stack.base + f"/v1/receipts/{rid}", headers=stack.auth, timeout=30)
            rc = got.json() if got.status_code == 200 else {}
            if rc.get("status") not in (None, "pending") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert rc["status"] == "succeeded", rc
        assert rc["total_charged_micros"] == 3 * PRICE["input_per_mtok"] // 10**6 + 3 * PRICE["output_per_mtok"] // 10**6
        while True:  # the idempotent answer was kept too: a retry replays it
            again = httpx.post(stack.base + "/v1/chat/completions", headers={**stack.auth, "Idempotency-Key": key},
                               timeout=60, json=body)
            if again.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
        assert again.headers["x-tf-receipt-id"] == rid
    v = ok(stack.admin.get("/ledger/verify"))
    assert v["ok"] is True, v
