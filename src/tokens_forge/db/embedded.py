"""The embedded default: a real PostgreSQL from the `pgserver` package, kept under TF_DATA_DIR.

Started once by the parent process (serve, demo, migrate); workers receive its URL. The server
keeps running after the process exits (pgserver reuses it on the next start)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)
DB_NAME = "tokens_forge"


MAX_CONNECTIONS = 500  # pools of several worker processes (and test suites) share one server


def embedded_server(pgdata: Path):
    """Start (or find running) the pgserver instance at pgdata, with room for enough connections."""
    import pgserver  # imported lazily: only the embedded path needs it
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made at import, per binary

    server = pgserver.get_server(str(pgdata), cleanup_mode=None)
    current = server.psql("SHOW max_connections;")
    if str(MAX_CONNECTIONS) not in current:
        server.psql(f"ALTER SYSTEM SET max_connections = '{MAX_CONNECTIONS}';")
        # pg_ctl restart keeps the socket options pgserver started the server with
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    return server


def start_embedded(data_dir: Path) -> str:
    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_server(pgdata)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {DB_NAME};")
    url = server.get_uri(DB_NAME)
    log.info("embedded PostgreSQL at %s", pgdata)
    return url
