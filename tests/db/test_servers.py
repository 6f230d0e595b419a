"""Where the database lives: the embedded pgserver (the default), or a server named by URL
(CI: TF_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test)."""

from __future__ import annotations

import asyncio
import os
import socket

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.conftest import _server_url
from tokens_forge.config import Settings
from tokens_forge.db.embedded import DB_NAME, start_embedded
from tokens_forge.db.engine import make_engine
from tokens_forge.db.resolve import database_url
from tokens_forge.db.url import plain_url

CI_URL = "postgresql://postgres@127.0.0.1:5432/test"


async def select_one(url: str) -> tuple[int, str]:
    """SELECT 1 through the project's own engine."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            return tuple((await conn.execute(text("SELECT 1, current_database()"))).one())
    finally:
        await engine.dispose()


@pytest.fixture
def embedded_dir(tmp_path):
    """A data dir for an embedded server, stopped afterwards."""
    yield tmp_path
    import pgserver

    pgdata = (tmp_path / "pgdata").resolve()
    if pgdata in pgserver.PostgresServer._instances:
        server = pgserver.get_server(str(pgdata))
        server.cleanup_mode = "stop"
        server.cleanup()


async def test_embedded_server_starts_and_accepts_connections(embedded_dir):
    url = await asyncio.to_thread(start_embedded, embedded_dir)
    u = make_url(url)
    assert u.database == DB_NAME and u.query.get("host")  # a socket-style URL: no TCP port needed
    assert await select_one(url) == (1, DB_NAME)
    conn = await asyncpg.connect(plain_url(url))
    try:
        assert await conn.fetchval("SELECT current_setting('server_version_num')::int") >= 140000
    finally:
        await conn.close()
    again = await asyncio.to_thread(database_url, Settings(database_url=None, data_dir=embedded_dir))
    assert again == url  # the same server and database are reused, not re-created


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


async def test_explicit_server_url_answers():
    url = os.environ.get("TF_TEST_DATABASE_URL") or CI_URL
    u = make_url(url)
    if not port_open(u.host or "127.0.0.1", u.port or 5432):
        pytest.skip(f"no PostgreSQL listening at {u.host}:{u.port}")
    one, db = await select_one(url)
    assert (one, db) == (1, u.database)


def test_suite_follows_tf_test_database_url(monkeypatch):
    monkeypatch.setenv("TF_TEST_DATABASE_URL", CI_URL)
    assert _server_url() == CI_URL
