"""The gateway through a real PgBouncer 1.18 in transaction pooling mode (SPEC §10): it passes
its health check every time, books a request exactly, and hears run cancels on its direct
connection; what would break without the pooler setting (named prepared statements) does break
through this PgBouncer, and it really moves a client's transactions between server connections.
The core, guard and runs suites run through PgBouncer too: `make test`'s second pass
(TF_TEST_PGBOUNCER=1)."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.conftest import make_settings, ok
from tests.pgbouncer import PgBouncer
from tokens_forge.config import Settings
from tokens_forge.db.pooler import database_for
from tokens_forge.db.url import plain_url
from tokens_forge.main import create_app
from tokens_forge.upstream.transport import UpstreamClient

PG = "postgresql://u@db:5432/forge"
BOUNCER = "postgresql://u@bouncer:6432/forge"


@pytest.mark.parametrize(("url", "direct", "pooler", "pooled", "listen"), [
    (PG, None, "auto", False, PG),                # PostgreSQL alone
    (BOUNCER, PG, "auto", True, PG),              # a direct URL of its own: the main one is a pooler
    (PG, PG, "auto", False, PG),                  # the same URL twice: no pooler
    (BOUNCER, None, "pgbouncer", True, None),     # said so, without a direct URL: no LISTEN (poll only)
    (BOUNCER, PG, "none", False, PG),             # said otherwise
])
def test_which_database_is_a_pooler(url, direct, pooler, pooled, listen):
    db = database_for(Settings(database_url=url, database_direct_url=direct, database_pooler=pooler), url)
    assert (db.url, db.direct_url, db.pooled, db.listen_url) == (url, direct or url, pooled, listen)


def test_the_embedded_server_is_never_pooled():
    db = database_for(Settings(database_url=None, database_direct_url=PG), "postgresql://x@/y?host=/tmp")
    assert not db.pooled and db.direct_url == db.url


@pytest.fixture(scope="module")
def bouncer(database, tmp_path_factory):
    pgb = PgBouncer(database.direct_url, tmp_path_factory.mktemp("own-pgbouncer"), pool_size=10).start()
    yield pgb
    pgb.stop()


async def test_transactions_of_one_client_move_between_server_connections(bouncer, database):
    """Proof that this is transaction pooling: c1's second transaction runs on another backend
    once its first backend is taken by c3 (PgBouncer hands an idle server to whoever asks first)."""
    url = plain_url(bouncer.url_for(database.direct_url))
    c1, c2, c3 = [await asyncpg.connect(url, statement_cache_size=0) for _ in range(3)]
    try:
        t1 = c1.transaction()
        await t1.start()
        first = await c1.fetchval("SELECT pg_backend_pid()")
        t2 = c2.transaction()
        await t2.start()
        assert await c2.fetchval("SELECT pg_backend_pid()") != first
        await t1.commit()                       # c1's backend goes back to the pool ...
        t3 = c3.transaction()
        await t3.start()
        assert await c3.fetchval("SELECT pg_backend_pid()") == first   # ... c3 takes it
        assert await c1.fetchval("SELECT pg_backend_pid()") != first   # c1 runs on another one
        await t2.rollback()
        await t3.rollback()
    finally:
        for c in (c1, c2, c3):
            await c.close()


async def test_named_prepared_statements_break_through_it(bouncer, database):
    """Why the pooler setting exists: asyncpg's statement cache keeps a statement prepared on the
    server connection of one transaction, and the next transaction may run on another one."""
    url = plain_url(bouncer.url_for(database.direct_url))
    c1, c2 = await asyncpg.connect(url), await asyncpg.connect(url, statement_cache_size=0)
    try:
        first = await c1.fetchval("SELECT pg_backend_pid()")   # prepared (and cached) there
        t2 = c2.transaction()
        await t2.start()
        assert await c2.fetchval("SELECT pg_backend_pid()") == first   # c2 now holds that backend
        with pytest.raises(asyncpg.exceptions.InvalidSQLStatementNameError):
            await c1.fetchval("SELECT pg_backend_pid()")   # the cached statement, on another backend
        await t2.rollback()
    finally:
        await c1.close()
        await c2.close()


@pytest.fixture
async def pooled_app(bouncer, database, mock_upstream_port):
    url = bouncer.url_for(database.direct_url)
    application = create_app(make_settings(database_url=url, database_direct_url=database.direct_url), db_url=url)
    async with application.router.lifespan_context(application):
        await application.state.http.aclose()
        application.state.http = UpstreamClient(100, hosts={"mock.test": ("127.0.0.1", mock_upstream_port)})
        yield application


async def test_health_check_and_a_request_through_pgbouncer(pooled_app, bouncer, tenant, admin):
    assert pooled_app.state.database.pooled and f":{bouncer.port}/" in pooled_app.state.database.url
    t = await tenant()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=pooled_app), base_url="http://gw.test") as c:
        answers = await asyncio.gather(*(c.get("/healthz") for _ in range(60)))
        assert [r.status_code for r in answers] == [200] * 60
        results = await asyncio.gather(*(c.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
                                         for _ in range(20)))
        for r in results:
            ok(r)
        charged = sum(int(r.headers["x-tf-charged-micros"]) for r in results)
        wallet = ok(await c.get("/v1/wallet", headers=t.auth))
    assert charged > 0
    assert wallet["buckets"]["credit"] == {"posted_micros": 10_000_000 - charged, "held_micros": 0,
                                           "available_micros": 10_000_000 - charged}
    assert ok(await admin.get("/ledger/verify"))["ok"] is True


async def test_run_cancels_are_heard_on_the_direct_connection(pooled_app, database):
    """A NOTIFY reaches the pooled gateway's listener: the run below exists in no table, so the
    1 s poll of cancelled runs can never be what cancels it."""
    assert pooled_app.state.background.url == database.direct_url
    flight = pooled_app.state.flights.register("run_notify_only")
    conn = await asyncpg.connect(plain_url(database.direct_url))
    try:
        for _ in range(50):  # the listener connects in the background, just after start-up
            await conn.execute("SELECT pg_notify('tf_run_control', 'cancel:run_notify_only')")
            await asyncio.sleep(0.1)
            if flight.cancelled:
                break
    finally:
        await conn.close()
        pooled_app.state.flights.unregister(flight)
    assert flight.cancelled
