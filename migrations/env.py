"""Alembic environment: runs migrations over the async engine built from Settings.

The URL comes from `config.attributes["url"]` when the application runs the migrations itself
(tokens-forge serve / migrate), else from Settings (the plain `alembic` command).
"""
import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from tokens_forge.db.models import metadata
from tokens_forge.db.url import async_url

config = context.config
target_metadata = metadata  # every model imported: autogenerate compares the whole schema


def _url() -> str:
    url = config.attributes.get("url")
    if url is None:
        from tokens_forge.config import Settings

        settings = Settings()  # migrations want PostgreSQL itself, not a transaction pooler
        url = settings.database_direct_url or settings.database_url
    if not url:
        raise SystemExit("set TF_DATABASE_URL (or use `tokens-forge migrate`, which starts the embedded database)")
    return async_url(url)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      compare_server_default=True, transaction_per_migration=False)
    with context.begin_transaction():
        # One migrator at a time: processes starting together must not race the DDL.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7239001)")
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")
asyncio.run(_run_async()) if config.attributes.get("connection") is None else _run(config.attributes["connection"])
