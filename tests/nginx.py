"""A real nginx (Debian's `nginx` package) as the load balancer of several gateway hosts: round
robin over their ports, streams passed through unbuffered, every path (config, pid, logs, temp
files) in a directory of its own, so that it runs as any user. The access log names the host
that served each request."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from tests.pgbouncer import free_port, require_binary, wait_port

BINARIES = ("nginx", "/usr/sbin/nginx")

CONFIG = """daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format hosts '$upstream_addr $status $request_method $request_uri';
    access_log {dir}/access.log hosts;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream gateways {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16m;
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;            # SSE events pass through as the gateway writes them
            proxy_request_buffering off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, upstream_ports: list[int], workdir: Path):
        self.upstreams = upstream_ports
        self.dir = workdir
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        binary = require_binary(BINARIES, "nginx")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)  # nginx's workers may run as another user (as root: Debian's default)
        self.port = free_port()
        servers = "\n".join(f"        server 127.0.0.1:{p};" for p in self.upstreams)
        conf = self.dir / "nginx.conf"
        conf.write_text(CONFIG.format(dir=self.dir, servers=servers, port=self.port))
        log = self.dir / "nginx.out"
        self.proc = subprocess.Popen([binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait_port(self.port, 20, self.proc, log)
        return self

    def served(self, path_prefix: str = "") -> Counter[str]:
        """Requests per upstream host (its port), from the access log, for paths under the prefix."""
        counts: Counter[str] = Counter()
        log = self.dir / "access.log"
        for line in log.read_text().splitlines() if log.exists() else []:
            addr, _status, _method, uri = line.split(" ", 3)
            if uri.startswith(path_prefix):
                counts[addr.rsplit(":", 1)[-1]] += 1
        return counts

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
