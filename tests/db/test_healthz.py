"""`GET /healthz` of a real `serve` follows its database: 200 {"status": "ok"} while PostgreSQL
answers, a quick 503 in the JSON error shape (never a 500, never a hang) while it is stopped, and
200 again once it is back, without a restart of the gateway. A database that accepts the
connection and then says nothing is a 503 within the health check's own bound too."""

from __future__ import annotations

import socket
import time

import httpx

from tests.conftest import make_settings, wait_http
from tests.db.own_postgres import OwnPostgres
from tests.db.test_connection_budget import start_serve, stop
from tokens_forge.api.health import HEALTH_TIMEOUT_S
from tokens_forge.db.engine import make_engine
from tokens_forge.main import create_app


def test_healthz_is_503_json_while_the_database_is_down_and_200_after():
    pg = OwnPostgres(max_connections=100)
    proc = None
    try:
        proc, log, port = start_serve(pg, 2)
        url = f"http://127.0.0.1:{port}/healthz"
        wait_http(url, 90, proc, log)
        assert httpx.get(url, timeout=10).json() == {"status": "ok"}
        pg.stop()
        for _ in range(4):  # each worker, whatever its pool held
            started = time.monotonic()
            r = httpx.get(url, timeout=30)
            took = time.monotonic() - started
            assert r.status_code == 503, (r.status_code, r.text[:300])
            err = r.json()["error"]
            assert err["code"] == "service_unavailable" and err["type"] == "server_error", err
            assert took < 6, f"/healthz took {took:.1f}s with the database down"
        pg.start()
        end = time.monotonic() + 20
        while (r := httpx.get(url, timeout=10)).status_code != 200 and time.monotonic() < end:
            time.sleep(0.2)
        assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    finally:
        if proc is not None:
            stop(proc)
        pg.close()


async def test_healthz_is_503_in_bounded_time_when_the_database_never_answers(database_url):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts the connection; nobody ever answers the startup message
    app = create_app(make_settings(database_url=database_url), db_url=database_url)
    try:
        async with app.router.lifespan_context(app):
            real = app.state.engine
            app.state.engine = make_engine(f"postgresql://nobody@127.0.0.1:{silent.getsockname()[1]}/x")
            try:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
                    started = time.monotonic()
                    r = await c.get("/healthz", timeout=120)
                    took = time.monotonic() - started
            finally:
                await app.state.engine.dispose()
                app.state.engine = real
        assert r.status_code == 503 and r.json()["error"]["code"] == "service_unavailable", r.text
        assert took < HEALTH_TIMEOUT_S + 2, f"/healthz took {took:.1f}s against a silent database"
    finally:
        silent.close()
