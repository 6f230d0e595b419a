"""The production shape (docker-compose.yml, deploy/): no Docker engine runs here, so the compose
file is checked as data (PostgreSQL, PgBouncer, two gateway replicas behind nginx, wired as
SPEC §10 says, every file it refers to present), and the nginx and PgBouncer configurations it
mounts are run through the real Debian binaries (nginx -t; a PgBouncer that starts on them)."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from tests.nginx import BINARIES as NGINX
from tests.pgbouncer import BINARIES as PGBOUNCER
from tests.pgbouncer import free_port, require_binary, wait_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
GATEWAYS = sorted(name for name in SERVICES if name.startswith("gateway"))


def test_the_shape_postgres_pgbouncer_two_gateways_nginx():
    assert {"postgres", "pgbouncer", "nginx"} <= set(SERVICES) and len(GATEWAYS) >= 2
    for name in GATEWAYS:
        env = SERVICES[name]["environment"]
        pooled, direct = make_url(env["TF_DATABASE_URL"]), make_url(env["TF_DATABASE_DIRECT_URL"])
        assert (pooled.host, pooled.port, direct.host, direct.port) == ("pgbouncer", 6432, "postgres", 5432)
        assert pooled.database == direct.database == SERVICES["postgres"]["environment"]["POSTGRES_DB"]
        assert SERVICES[name]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    assert SERVICES["pgbouncer"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(SERVICES["nginx"]["depends_on"]) == set(GATEWAYS)
    assert SERVICES["nginx"]["ports"] == ["8000:8080"]
    assert all("ports" not in SERVICES[name] for name in GATEWAYS)  # clients come in through nginx


def test_every_file_the_compose_file_refers_to_exists():
    for name, service in SERVICES.items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build["context"])
            assert (context / "Dockerfile").is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_nginx_balances_every_gateway_and_streams_unbuffered(tmp_path):
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    upstream = re.search(r"upstream gateways \{(.*?)\}", conf, re.S).group(1)
    assert re.findall(r"server ([\w-]+):8000;", upstream) == GATEWAYS
    assert "proxy_buffering off;" in conf and "listen 8080;" in conf
    # the same file through the real nginx, the compose network's names pointed at this host
    local = re.sub(r"server ([\w-]+):8000;", "server 127.0.0.1:8000;", conf)
    (tmp_path / "nginx.conf").write_text(local)
    done = subprocess.run([require_binary(NGINX, "nginx"), "-t", "-p", str(tmp_path), "-c",
                           str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_pgbouncer_pools_transactions_in_front_of_postgres(database, tmp_path):
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "deploy/pgbouncer/pgbouncer.ini")
    bouncer = ini["pgbouncer"]
    assert bouncer["pool_mode"] == "transaction" and bouncer["listen_port"] == "6432"
    assert ini["databases"]["forge"] == "host=postgres port=5432 dbname=forge"
    assert (ROOT / "deploy/pgbouncer/userlist.txt").read_text().startswith('"forge" ')
    # the same settings, started by the real PgBouncer in front of the test server
    server = make_url(database.direct_url)
    host = server.host or server.query.get("host")
    ini["databases"] = {"forge": f"host={host} port={server.port or 5432} dbname={server.database}"}
    port = free_port()
    bouncer.update(listen_addr="127.0.0.1", listen_port=str(port), auth_file=str(tmp_path / "userlist.txt"))
    if os.geteuid() == 0:
        bouncer["user"] = "nobody"
    (tmp_path / "userlist.txt").write_text((ROOT / "deploy/pgbouncer/userlist.txt").read_text())
    with open(tmp_path / "pgbouncer.ini", "w") as f:
        ini.write(f)
    tmp_path.chmod(0o755)
    log = tmp_path / "pgbouncer.log"
    proc = subprocess.Popen([require_binary(PGBOUNCER, "pgbouncer"), str(tmp_path / "pgbouncer.ini")],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_port(port, 20, proc, log)
        assert "WARNING" not in log.read_text() and "ERROR" not in log.read_text(), log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)
