"""Shared fixtures: one fresh PostgreSQL database per test session (the embedded pgserver, or the
server named by TF_TEST_DATABASE_URL), migrated with Alembic; with TF_TEST_PGBOUNCER=1 the
gateway reaches it through a real PgBouncer in transaction pooling mode (migrations and LISTEN
on the direct URL, as in production); the app over ASGI, calling the mock upstream over real
sockets with its own upstream client (the mock served by uvicorn in a thread, pinned to
http://mock.test); a factory of funded tenants. The ledger is verified after every test that
touched the app."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy.engine import make_url

from tokens_forge.config import Settings
from tokens_forge.db.migrate import upgrade_head
from tokens_forge.db.url import plain_url
from tokens_forge.main import create_app
from tokens_forge.mock.upstream import create_mock_app
from tokens_forge.observability.logs import JsonFormatter
from tokens_forge.upstream.transport import UpstreamClient

ADMIN = "adm-test-" + secrets.token_hex(6)
MOCK_BASE = "http://mock.test/v1"
PRICE = {"input_per_mtok": 1_000_000, "output_per_mtok": 2_000_000}  # 1 micro per input token, 2 per output


# The fast tier (`make test-fast`, `pytest -m "not slow"`): every test runs in it but those marked
# `slow`: the tests that start processes of their own (a live `serve`, a browser, nginx, PgBouncer,
# a PostgreSQL of their own, the fault upstream) and the fuzzers of tests/hostile. They are marked
# here by the fixtures that start them (so a new test that uses one is slow with no marker to
# remember) or by their directory; a test that starts a process inline carries @pytest.mark.slow
# itself, or its module is named in SLOW_MODULES. What is slow was found with
# `pytest --durations`.
SLOW_FIXTURES = frozenset({
    "live_gateway",   # tokens-forge serve --workers 2 and the mock upstream, as processes
    "ops_gateway",    # a serve process with metrics and tracing on (observability)
    "cluster",        # three serve processes behind nginx (tests/scale)
    "fault_upstream", # the fault-injecting upstream process (tests/faults, hostile)
    "gateway",        # tests/hostile/test_slow_headers.py: a serve process with short deadlines
    "chromium",       # headless Chromium (tests/console)
    "bouncer",        # a PgBouncer of its own (tests/db/test_pgbouncer.py)
})
SLOW_MODULES = frozenset({  # start servers inline, without a fixture: subprocesses, their own PostgreSQL
    "tests/db/test_cli.py", "tests/db/test_connection_budget.py", "tests/db/test_healthz.py",
    "tests/db/test_servers.py", "tests/test_deploy.py",
})
SLOW_DIRS = (  # whole directories of slow tests
    "tests/hostile/",  # hostile inputs: schemathesis and hypothesis over every operation and field
    "tests/faults/", "tests/scale/", "tests/e2e/",  # live gateways, the fault upstream, nginx
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts processes of its own (live gateways, browsers, nginx, "
                                       "PgBouncer, PostgreSQL) or fuzzes (tests/hostile); left out of "
                                       "`make test-fast`")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """`-m "not slow"` does not even import the slow directories (schemathesis alone takes seconds)."""
    if config.getoption("markexpr", "") != "not slow":
        return None
    root = Path(str(config.rootpath))
    path = Path(str(collection_path))
    rel = path.relative_to(root).as_posix() + ("/" if path.is_dir() else "") if path.is_relative_to(root) else ""
    return True if rel.startswith(SLOW_DIRS) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        module = Path(str(item.path)).relative_to(root).as_posix() if Path(str(item.path)).is_relative_to(root) else ""
        if (SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())) or module in SLOW_MODULES
                or module.startswith(SLOW_DIRS)):
            item.add_marker(pytest.mark.slow)


# Every key secret a test was given: no log line may hold one (or its hash).
SECRETS_SEEN: set[str] = set()


def _server_url() -> str:
    explicit = os.environ.get("TF_TEST_DATABASE_URL")
    if explicit:
        return explicit
    from tokens_forge.db.embedded import embedded_server

    pgdata = Path(os.environ.get("TF_TEST_PGDATA", "/tmp/tokens-forge-test-pg"))
    return embedded_server(pgdata).get_uri("postgres")


@dataclass(frozen=True)
class SuiteDatabase:
    url: str          # what the gateway connects to: PostgreSQL, or PgBouncer in front of it
    direct_url: str   # PostgreSQL itself (migrations, LISTEN)
    pooled: bool      # `url` is PgBouncer in transaction pooling mode

    def env(self) -> dict[str, str]:
        """The environment of a gateway process on this database."""
        return {"TF_DATABASE_URL": self.url, "TF_DATABASE_DIRECT_URL": self.direct_url}


THROUGH_PGBOUNCER = os.environ.get("TF_TEST_PGBOUNCER") == "1"


@pytest.fixture(scope="session")
def database(tmp_path_factory):
    server = _server_url()
    name = "tf_test_" + uuid.uuid4().hex[:12]
    admin_url = plain_url(server)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    direct = make_url(server).set(database=name).render_as_string(hide_password=False)
    upgrade_head(direct)
    bouncer = None
    if THROUGH_PGBOUNCER:
        from tests.pgbouncer import PgBouncer

        bouncer = PgBouncer(server, tmp_path_factory.mktemp("pgbouncer")).start()
    try:
        yield (SuiteDatabase(bouncer.url_for(direct), direct, True) if bouncer else SuiteDatabase(direct, direct, False))
    finally:
        if bouncer is not None:
            bouncer.stop()
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def database_url(database) -> str:
    """The URL the gateway uses (PgBouncer's with TF_TEST_PGBOUNCER=1)."""
    return database.url


def make_settings(**over) -> Settings:
    base = dict(admin_token=ADMIN, key_cache_ttl_s=0.2, sweep_interval_s=0.5, db_pool_size=5, db_max_overflow=20,
                hot_pool_size=20)
    base.update(over)
    return Settings(**base)


@pytest.fixture(scope="session")
def mock_upstream_port():
    """The mock upstream on a real socket (uvicorn in a daemon thread): what the gateway sends and
    receives goes through its production upstream client."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_mock_app(), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the mock upstream did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = server.force_exit = True  # `hang` requests would hold a graceful exit forever
    thread.join(5)


@pytest.fixture(scope="session")
async def app(database, mock_upstream_port):
    application = create_app(make_settings(database_url=database.url, database_direct_url=database.direct_url),
                             db_url=database.url)
    async with application.router.lifespan_context(application):
        await application.state.http.aclose()
        application.state.http = UpstreamClient(100, hosts={"mock.test": ("127.0.0.1", mock_upstream_port)})
        yield application


@pytest.fixture(scope="session")
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test",
                                 timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
async def admin(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test/admin/v1",
                                 headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as c:
        yield c


class LogCapture(logging.Handler):
    """Every log record of the in-process suite, as the gateway's JSON formatter writes it."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


# What must never be in a log line: secrets (admin token, upstream keys, key secrets and their
# hashes) and what clients and upstreams said (the tests' prompts, the mock's answers, a body).
LEAK_PATTERNS = (re.escape(ADMIN), r"sk-upstream-secret", r"sk-rotated-", r"\btf-[A-Za-z0-9_-]{40,}",
                 r"hello world", r"w0 w1 w2", r'\\?"role\\?": ?\\?"user')


def leaks_in(text: str, secrets: set[str] = frozenset()) -> list[str]:
    found = [p for p in LEAK_PATTERNS if re.search(p, text)]
    found += [f"key secret {s[:6]}…" for s in secrets if s in text]
    found += [f"hash of key secret {s[:6]}…" for s in secrets if hashlib.sha256(s.encode()).hexdigest() in text]
    return found


@pytest.fixture(scope="session", autouse=True)
def suite_logs():
    """The whole in-process suite's logs: at the end, none may hold a secret, a prompt or an answer."""
    handler = LogCapture()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)
    leaks = leaks_in("\n".join(handler.lines), SECRETS_SEEN)
    assert not leaks, f"the suite's logs hold {leaks}"


def ok(r: httpx.Response, *codes: int) -> dict:
    codes = codes or (200, 201)
    assert r.status_code in codes, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:800]}"
    return r.json()


@pytest.fixture(autouse=True)
async def _verify_ledger_after(request):
    yield
    if "app" in request.fixturenames:
        app = request.getfixturevalue("app")
        from tokens_forge.ledger.verify import verify

        async with app.state.engine.connect() as conn:
            good, checks = await verify(conn, sweep_interval_s=60)
        assert good, [c.as_dict() for c in checks if not c.ok]


@pytest.fixture
def tenant(admin):
    """Factory: a fresh account funded in both buckets, a project, a key and two routes
    (official at priority 1, routed at 2) for a model of its own, served by the mock upstream."""

    async def make(official="ok", routed="ok", credit=10_000_000, routed_balance=10_000_000, key=None,
                   project_limits=None, official_charge=None, routed_charge=None, timeout_s=30.0):
        model = "m-" + uuid.uuid4().hex[:10]
        acct = ok(await admin.post("/accounts", json={"name": model}))
        for bucket, amount in (("credit", credit), ("routed", routed_balance)):
            if amount:
                ok(await admin.post(f"/accounts/{acct['id']}/topups",
                                    json={"bucket": bucket, "amount_micros": amount, "reference": f"{model}-{bucket}"}))
        proj = ok(await admin.post("/projects", json={"account_id": acct["id"], "name": "p",
                                                      "limits": project_limits or {}}))
        routes = {}
        for kind, up, prio, charge in (("official", official, 1, official_charge), ("routed", routed, 2, routed_charge)):
            if up is None:
                continue
            routes[kind] = ok(await admin.post("/routes", json={
                "model": model, "kind": kind, "base_url": MOCK_BASE, "upstream_model": up,
                "upstream_api_key": f"sk-upstream-secret-{kind}-{model}", "price": PRICE,
                "failed_request_charge": charge or {"mode": "none"}, "timeout_s": timeout_s,
                "priority": prio, "enabled": True}))
        body = {"project_id": proj["id"], "name": "k",
                "retry_policy": {"max_attempts": 1, "retry_on": [], "backoff_ms": 0}, "fallback_policy": "none"}
        body.update(key or {})
        k = ok(await admin.post("/keys", json=body))
        return Tenant(model, acct, proj, routes, k)

    return make


class Tenant:
    def __init__(self, model, account, project, routes, key):
        self.model, self.account, self.project, self.routes, self.key = model, account, project, routes, key
        self.secret = key["secret"]
        SECRETS_SEEN.add(self.secret)
        self.auth = {"Authorization": f"Bearer {self.secret}"}

    def chat(self, **over) -> dict:
        body = {"model": self.model, "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 5}
        body.update(over)
        return body


# -- a real server process: `tokens-forge serve --workers 2` and the mock upstream ---------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float, proc, log: Path) -> None:
    import time

    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {seconds}s: {log.read_text()[-3000:]}")


class LiveGateway:
    def __init__(self, base: str, mock_base: str, log: Path, proc):
        self.base, self.mock_base, self.log, self.proc = base, mock_base, log, proc
        self.admin = httpx.Client(base_url=base + "/admin/v1", headers={"Authorization": f"Bearer {ADMIN}"},
                                  timeout=30)

    def tenant(self, **kw) -> Tenant:
        """A tenant like the `tenant` fixture's, made over real HTTP, routes to the real mock upstream."""
        model = "m-" + uuid.uuid4().hex[:10]
        a = self.admin
        acct = ok(a.post("/accounts", json={"name": model}))
        for bucket in ("credit", "routed"):
            amount = kw.get(bucket, 10_000_000)
            if amount:
                ok(a.post(f"/accounts/{acct['id']}/topups",
                          json={"bucket": bucket, "amount_micros": amount, "reference": f"{model}-{bucket}"}))
        proj = ok(a.post("/projects", json={"account_id": acct["id"], "name": "p",
                                            "limits": kw.get("project_limits", {})}))
        routes = {}
        for kind, prio in (("official", 1), ("routed", 2)):
            up = kw.get(kind, "ok")
            if up is None:
                continue
            routes[kind] = ok(a.post("/routes", json={
                "model": model, "kind": kind, "base_url": self.mock_base, "upstream_model": up,
                "upstream_api_key": f"sk-upstream-secret-{kind}-{model}", "price": PRICE,
                "failed_request_charge": kw.get(f"{kind}_charge", {"mode": "none"}),
                "timeout_s": kw.get("timeout_s", 30.0), "priority": prio}))
        body = {"project_id": proj["id"], "name": "k",
                "retry_policy": {"max_attempts": 1, "retry_on": [], "backoff_ms": 0}, "fallback_policy": "none"}
        body.update(kw.get("key", {}))
        return Tenant(model, acct, proj, routes, ok(a.post("/keys", json=body)))

    def verify(self) -> dict:
        v = ok(self.admin.get("/ledger/verify"))
        assert v["ok"] is True, v
        return v


@contextlib.contextmanager
def serve_with_mock(d: Path, env: dict[str, str], gateway_class: type[LiveGateway] | None = None):
    """`tokens-forge serve --workers 2` in `d` with `env`, and the built-in mock upstream beside it,
    both as real processes on free ports; stopped on exit."""
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    mock_port, port = free_port(), free_port()
    mock_log, log = d / "mock.log", d / "gateway.log"
    mock = subprocess.Popen([str(bin_dir / "tokens-forge"), "mock-upstream", "--port", str(mock_port)],
                            stdout=open(mock_log, "w"), stderr=subprocess.STDOUT)
    gw = subprocess.Popen([str(bin_dir / "tokens-forge"), "serve", "--port", str(port), "--workers", "2"],
                          cwd=d, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/_stats", 30, mock, mock_log)
        wait_http(f"http://127.0.0.1:{port}/healthz", 90, gw, log)
        live = (gateway_class or LiveGateway)(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mock_port}/v1", log, gw)
        yield live
        live.admin.close()
    finally:
        for p in (gw, mock):
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def live_gateway(database, tmp_path_factory):
    """`tokens-forge serve --workers 2` against the test database, and the built-in mock upstream,
    both as real processes on free ports."""
    d = tmp_path_factory.mktemp("live")
    env = {**os.environ, **database.env(), "TF_ADMIN_TOKEN": ADMIN, "TF_DATA_DIR": str(d),
           "TF_SWEEP_INTERVAL_S": "1"}
    with serve_with_mock(d, env) as live:
        yield live
