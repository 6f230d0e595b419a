"""A real PgBouncer (Debian's `pgbouncer` package, 1.18) for the tests, like the embedded
PostgreSQL: `pool_mode = transaction` in front of the test server, on a free port, its config,
user list and log in a directory of its own. Started by the `database` fixture when
TF_TEST_PGBOUNCER=1 (the second pass of `make test`) and by the tests of several gateway hosts."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

BINARIES = ("pgbouncer", "/usr/sbin/pgbouncer")


def require_binary(names: tuple[str, ...], package: str) -> str:
    """The path of a Debian tool the test needs: missing, the test fails in CI (`.ci/run` installs
    it) and is skipped elsewhere, as the browser tests do with Chromium."""
    for name in names:
        path = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
        if path:
            return path
    message = f"{names[0]} is missing: apt-get install -y {package} (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, seconds: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {seconds}s: {log.read_text()[-3000:]}")


def _unprivileged_user(socket_dir: str | None) -> str:
    """PgBouncer refuses to run as root: it switches to the owner of the server's socket directory
    (who may connect to the socket), or to nobody for a TCP server."""
    if socket_dir:
        owner = pwd.getpwuid(os.stat(socket_dir).st_uid).pw_name
        if owner != "root":
            return owner
    return "nobody"


class PgBouncer:
    def __init__(self, server_url: str, workdir: Path, *, pool_size: int = 40):
        self.server = make_url(server_url)
        self.dir = workdir
        self.pool_size = pool_size
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> PgBouncer:
        binary = require_binary(BINARIES, "pgbouncer")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        host = self.server.host or self.server.query.get("host") or "127.0.0.1"
        socket_dir = host if str(host).startswith("/") else None
        user = self.server.username or "postgres"
        users = self.dir / "userlist.txt"
        users.write_text(f'"{user}" "{self.server.password or ""}"\n')
        ini = self.dir / "pgbouncer.ini"
        lines = [
            "[databases]",
            # every database of the test server, by the name the client asks for
            f"* = host={host} port={self.server.port or 5432}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {users}",
            "pool_mode = transaction",
            "max_client_conn = 2000",
            f"default_pool_size = {self.pool_size}",
            "ignore_startup_parameters = extra_float_digits",
            f"admin_users = {user}",
            "log_connections = 0",
            "log_disconnections = 0",
        ]
        if os.geteuid() == 0:
            lines.append(f"user = {_unprivileged_user(socket_dir)}")
        ini.write_text("\n".join(lines) + "\n")
        for path in (self.dir, ini, users):  # readable after PgBouncer has dropped root
            path.chmod(0o755 if path.is_dir() else 0o644)
        log = self.dir / "pgbouncer.log"
        self.proc = subprocess.Popen([binary, str(ini)], stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait_port(self.port, 20, self.proc, log)
        return self

    def url_for(self, database_url: str) -> str:
        """The same user and database as `database_url`, through this PgBouncer."""
        u = make_url(database_url)
        query = {k: v for k, v in u.query.items() if k != "host"}
        return u.set(host="127.0.0.1", port=self.port, query=query).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
