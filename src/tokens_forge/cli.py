"""The `tokens-forge` command: serve, migrate, demo, mock-upstream, ledger verify."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tokens_forge.config import (
    Settings,
    export_for_workers,
    exported,
    load_env_file,
    prepare_worker_metrics_dir,
)

if TYPE_CHECKING:
    from tokens_forge.db.pooler import Database

app = typer.Typer(help="Tokens Forge: an OpenAI-compatible LLM gateway with a spend guard.", no_args_is_help=True,
                  callback=load_env_file)
ledger_app = typer.Typer(help="Ledger tools.")
app.add_typer(ledger_app, name="ledger")
console = Console()


def _prepare(config: Path | None) -> tuple[Settings, Database]:
    """Resolve the database (starting the embedded one if needed), migrate, apply the config.
    The CLI's own jobs use its direct URL (PostgreSQL itself, never a pooler)."""
    from tokens_forge.db.migrate import upgrade_head
    from tokens_forge.db.pooler import database_for
    from tokens_forge.db.resolve import database_url

    if config is not None:
        export_for_workers(config=config.resolve())
    settings = Settings()
    db = database_for(settings, database_url(settings))
    export_for_workers(database_url=db.url)  # workers inherit the same database
    url = db.direct_url  # DDL and one-off jobs: a session of their own, not a pooled connection
    upgrade_head(url)
    if settings.config is not None:
        from tokens_forge.configfile import ConfigError

        try:
            for line in asyncio.run(_apply_config(url, settings.config)):
                console.print(f"config: {line}")
        except ConfigError as exc:
            console.print(f"[red]config error:[/red] {exc}")
            raise typer.Exit(2) from exc
    return settings, db


async def _apply_config(url: str, path: Path) -> list[str]:
    from tokens_forge.configfile import apply_config, parse_config
    from tokens_forge.db.engine import make_engine, make_sessionmaker

    cfg = parse_config(path)
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await apply_config(session, cfg)
    finally:
        await engine.dispose()


def _check_port(host: str, port: int) -> None:
    """Refuse a taken port before anything else happens (migrations, the demo's banner): a banner
    with a key for a gateway that then fails to bind tells a newcomer the wrong story."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        console.print(f"[red]cannot serve on {host}: {exc.strerror}[/red]")
        raise typer.Exit(2) from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as exc:
            console.print(f"[red]port {port} on {host} is not free ({exc.strerror}): another program is "
                          f"listening there. Choose another port: `make run PORT={port + 1}` or "
                          f"`tokens-forge demo --port {port + 1}`.[/red]")
            raise typer.Exit(2) from exc


def _serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Replace this process with uvicorn's own: the process that supervises the workers then holds
    uvicorn alone, not the CLI, the migrations and the config loader (tens of MiB less resident
    memory; the PID and the environment, TF_DATABASE_URL included, stay the same)."""
    # Before any worker imports prometheus-client: the directory where all of them keep their
    # metrics, so that a scrape of any worker adds up every worker's series.
    prepare_worker_metrics_dir()
    sys.stdout.flush()
    sys.stderr.flush()
    args = [sys.executable, "-m", "uvicorn", "tokens_forge.main:app_factory", "--factory", "--host", host,
            "--port", str(port), "--workers", str(workers), "--loop", "uvloop",
            "--http", "tokens_forge.http_protocol:HeaderTimeoutProtocol",
            "--log-level", log_level, "--no-access-log", "--timeout-graceful-shutdown", "10"]
    os.execv(sys.executable, args)


def _connection_budget(settings: Settings, db: Database, workers: int) -> None:
    """Measure the server once, before any worker opens a pool (each worker would count the
    others' connections as someone else's), and hand the budget and the worker count to the
    workers; refuse to start (exit 2) when even the smallest pools do not fit. Behind a pooler
    there is nothing to measure: the pools are PgBouncer's clients (db/pooler.py)."""
    from tokens_forge.db.budget import ConnectionBudgetError, measure, serve_plan
    from tokens_forge.db.url import plain_url

    if db.pooled:
        console.print(f"PostgreSQL connections: through a pooler (PgBouncer's pool), {workers} worker(s) "
                      "with one direct connection each for LISTEN", soft_wrap=True)
        return
    try:
        total, sizes, warnings = serve_plan(settings, asyncio.run(measure(plain_url(db.url))), workers)
    except ConnectionBudgetError as exc:
        console.print(f"[red]connection budget:[/red] {exc.message}", soft_wrap=True)
        raise typer.Exit(2) from exc
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
    console.print(f"PostgreSQL connections: {total} for {workers} worker(s), each: {sizes.describe()}",
                  soft_wrap=True)
    export_for_workers(db_connection_budget=total, workers=workers)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000,
          workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
          config: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None) -> None:
    """Apply pending migrations, then serve the gateway."""
    _check_port(host, port)
    settings, db = _prepare(config)
    _connection_budget(settings, db, workers)
    _serve(host, port, workers, settings.log_level)


@app.command()
def migrate() -> None:
    """Apply pending migrations to TF_DATABASE_URL (or the embedded database)."""
    from tokens_forge.db.url import redact

    _, db = _prepare(None)
    console.print(f"migrated {redact(db.direct_url)}")


@app.command("mock-upstream")
def mock_upstream(host: str = "127.0.0.1", port: int = 8001) -> None:
    """Run the built-in OpenAI-compatible mock upstream alone."""
    import uvicorn

    from tokens_forge.mock.upstream import create_mock_app

    uvicorn.run(create_mock_app(), host=host, port=port, log_level="warning")


@app.command()
def demo(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Everything a newcomer needs: embedded database, a funded demo account, a key, and routes to
    the built-in mock upstream (served by the gateway itself under /mock)."""
    _check_port(host, port)
    export_for_workers(mock_upstream=1)
    if not exported("admin_token"):
        export_for_workers(admin_token="adm-" + secrets.token_urlsafe(18))
    settings, db = _prepare(None)
    base = f"http://{host}:{port}"
    secret = asyncio.run(_seed_demo(db.direct_url, base + "/mock/v1"))
    _connection_budget(settings, db, 1)
    _print_demo(base, secret, exported("admin_token") or "")
    _serve(host, port, 1, settings.log_level)


async def _seed_demo(url: str, mock_base: str) -> str:
    from tokens_forge.demo import seed_demo

    return await seed_demo(url, mock_base)


def _print_demo(base: str, secret: str, admin: str) -> None:
    console.rule("[bold]Tokens Forge demo")
    console.print(f"Base URL:    {base}/v1")
    console.print(f"API key:     {secret}")
    console.print(f"Admin token: {admin}")
    console.print("\n[bold]curl[/bold]")
    console.print(f"""curl -s {base}/v1/chat/completions -H 'Authorization: Bearer {secret}' \\
  -H 'Content-Type: application/json' \\
  -d '{{"model": "demo-mini", "messages": [{{"role": "user", "content": "hello"}}], "max_tokens": 8}}' -i""",
                  soft_wrap=True)
    console.print(f"curl -s {base}/v1/wallet -H 'Authorization: Bearer {secret}'", soft_wrap=True)
    console.print("\n[bold]OpenAI SDK[/bold]")
    console.print(f"""from openai import OpenAI
client = OpenAI(base_url="{base}/v1", api_key="{secret}")
print(client.chat.completions.create(model="demo-mini", max_tokens=8,
      messages=[{{"role": "user", "content": "hello"}}]).choices[0].message.content)
print(client.responses.create(model="demo-mini", input="hello", max_output_tokens=8).output_text)""",
                  soft_wrap=True)
    console.print("\n[bold]Agents[/bold] (from the repository root)")
    console.print(f".venv/bin/python examples/agent_sdk.py --base-url {base}/v1 --api-key {secret}", soft_wrap=True)
    console.rule()
    sys.stdout.flush()


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute every balance from the transfers and check every invariant (exit 1 if any fails)."""
    _, db = _prepare(None)
    ok, checks = asyncio.run(_verify(db.direct_url))
    table = Table("check", "ok", "detail")
    for c in checks:
        table.add_row(c.name, "[green]yes[/green]" if c.ok else "[red]NO[/red]", c.detail)
    console.print(table)
    console.print("[green]ledger OK[/green]" if ok else "[red]ledger FAILED[/red]")
    raise typer.Exit(0 if ok else 1)


async def _verify(url: str):
    from tokens_forge.db.engine import make_engine
    from tokens_forge.ledger.verify import verify

    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            s = Settings()
            return await verify(conn, sweep_interval_s=s.sweep_interval_s, dead_after_s=s.worker_dead_after_s)
    finally:
        await engine.dispose()
