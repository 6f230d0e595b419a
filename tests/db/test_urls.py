"""Database URLs as users give them, turned into what SQLAlchemy (asyncpg) and asyncpg need."""

import pytest
from sqlalchemy.engine import make_url

from tokens_forge.config import Settings
from tokens_forge.db.resolve import database_url
from tokens_forge.db.url import async_url, plain_url, redact


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://user:pw@/db?host=/socket/dir", "postgresql+asyncpg://user:pw@/db?host=%2Fsocket%2Fdir"),
    ("postgresql://postgres:@/tokens_forge?host=/tmp/tmpx", "postgresql+asyncpg://postgres:@/tokens_forge?host=%2Ftmp%2Ftmpx"),
    ("postgresql://postgres@127.0.0.1:5432/test", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    ("postgres://u:p%40ss@db.example:6543/app", "postgresql+asyncpg://u:p%40ss@db.example:6543/app"),
    ("postgresql+psycopg://u:pw@h/d", "postgresql+asyncpg://u:pw@h/d"),
    ("postgresql+asyncpg://u:pw@h/d", "postgresql+asyncpg://u:pw@h/d"),
])
def test_async_url(given, expected):
    out = async_url(given)
    assert make_url(out) == make_url(expected)
    u = make_url(out)
    assert u.drivername == "postgresql+asyncpg" and u.password == make_url(given).password


def test_socket_url_keeps_its_socket_directory():
    u = make_url(async_url("postgresql://user:pw@/db?host=/socket/dir"))
    assert (u.host, u.database, u.username, u.password) == (None, "db", "user", "pw")
    assert u.query["host"] == "/socket/dir"


def test_plain_url_and_redact():
    assert make_url(plain_url("postgresql+asyncpg://u:secret@h:1/d")) == make_url("postgresql://u:secret@h:1/d")
    assert "secret" not in redact("postgresql://u:secret@h:1/d") and "***" in redact("postgresql://u:secret@h:1/d")


def test_explicit_database_url_wins_over_embedded(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_DATABASE_URL", "postgresql://app@db.example:5432/forge")
    monkeypatch.setenv("TF_DATA_DIR", str(tmp_path / "never-used"))
    settings = Settings()
    assert database_url(settings) == "postgresql://app@db.example:5432/forge"
    assert not (tmp_path / "never-used").exists()


def test_settings_defaults(monkeypatch):
    for name in ("TF_DATABASE_URL", "TF_DATA_DIR", "TF_ADMIN_TOKEN", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(_env_file=None)
    assert s.database_url is None and str(s.data_dir) == ".tokens-forge" and s.admin_token is None
