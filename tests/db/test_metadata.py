"""The ORM metadata is the migrated schema: Alembic's autogenerate, run against a freshly migrated
database, proposes nothing (no table, column, type, nullability, server default, index, unique key
or foreign key differs). Alembic does not compare CHECK constraints, triggers or functions: the
CHECKs live in the migrations, the functions in ledger/sql/ (tests/db/test_sqlfiles.py)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import _server_url
from tokens_forge.db.migrate import migrations_dir, upgrade_head
from tokens_forge.db.models import metadata
from tokens_forge.db.url import async_url, plain_url


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["url"] = url
    return cfg


def test_every_table_of_the_schema_has_a_model():
    assert {"accounts", "api_keys", "console_sessions", "gateway_workers", "holds", "idempotency_keys",
            "key_rate_limits", "transfers"} <= set(metadata.tables)


def test_autogenerate_finds_no_difference_between_the_models_and_the_migrations():
    server = _server_url()
    name = "tf_meta_" + uuid.uuid4().hex[:12]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(plain_url(server))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def compare(url: str) -> list:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.connect() as conn:
                def diff(sync_conn) -> list:
                    context = MigrationContext.configure(
                        sync_conn, opts={"compare_type": True, "compare_server_default": True})
                    return compare_metadata(context, metadata)
                return await conn.run_sync(diff)
        finally:
            await engine.dispose()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        upgrade_head(url)
        differences = asyncio.run(compare(url))
        # The same through migrations/env.py, as `alembic check` (and `alembic revision --autogenerate`) see it.
        command.check(alembic_config(url))
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    assert differences == [], "models and migrations disagree:\n" + "\n".join(map(repr, differences))
