"""The embedded default: a real PostgreSQL from the `pgserver` package, kept under TF_DATA_DIR.

Started once by the parent process (serve, demo, migrate); workers receive its URL. The server
keeps running after the process exits (pgserver reuses it on the next start)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)
DB_NAME = "tokens_forge"


def start_embedded(data_dir: Path) -> str:
    import pgserver  # imported lazily: only the embedded path needs it

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(pgdata), cleanup_mode=None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {DB_NAME};")
    url = server.get_uri(DB_NAME)
    log.info("embedded PostgreSQL at %s", pgdata)
    return url
