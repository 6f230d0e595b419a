"""`tokens-forge migrate` and `tokens-forge ledger verify` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tokens_forge.db.url import plain_url

CLI = str(Path(sys.executable).parent / "tokens-forge")


def cli(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_DATABASE_URL=url, COLUMNS="200")
    return subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


async def sql(url: str, statement: str):
    conn = await asyncpg.connect(plain_url(url))
    try:
        return await conn.fetch(statement)
    finally:
        await conn.close()


@pytest.fixture
def fresh_database(database_url):
    """An empty database next to the test database, dropped afterwards."""
    name = "tf_cli_" + uuid.uuid4().hex[:10]
    asyncio.run(sql(database_url, f"CREATE DATABASE {name}"))
    yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(sql(database_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_migrate_then_verify_a_fresh_database(fresh_database, tmp_path):
    done = cli(["migrate"], fresh_database, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migrated" in done.stdout
    tables = {r["tablename"] for r in asyncio.run(sql(fresh_database, "SELECT tablename FROM pg_tables"))}
    assert {"accounts", "transfers", "holds", "receipts", "audit_log", "alembic_version"} <= tables
    again = cli(["migrate"], fresh_database, tmp_path)  # nothing pending: still fine
    assert again.returncode == 0, again.stdout + again.stderr
    verified = cli(["ledger", "verify"], fresh_database, tmp_path)
    assert verified.returncode == 0 and "ledger OK" in verified.stdout, verified.stdout + verified.stderr
    asyncio.run(sql(fresh_database, "UPDATE ledger_accounts SET credits_posted = 5 WHERE code = 'funding'"))
    broken = cli(["ledger", "verify"], fresh_database, tmp_path)
    assert broken.returncode == 1 and "ledger FAILED" in broken.stdout and "accounts_match_transfers" in broken.stdout


def test_verify_the_test_database(database_url, tmp_path):
    done = cli(["ledger", "verify"], database_url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ledger OK" in done.stdout


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_a_taken_port_is_refused_before_anything_is_printed(tmp_path, command):
    """`make run PORT=…` (`tokens-forge demo --port`): a port in use is named, with the fix, before
    migrations or the demo's banner (no key is printed for a gateway that cannot start)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
        env.update(COLUMNS="200", TF_DATA_DIR=str(tmp_path))
        out = subprocess.run([CLI, command, "--port", str(port)], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"port {port} on 127.0.0.1 is not free" in out.stdout and f"--port {port + 1}" in out.stdout
    assert "API key" not in out.stdout and not (tmp_path / "pgdata").exists()
