"""Slow-header clients (slowloris) against a real `tokens-forge serve` with a short
TF_HEADER_TIMEOUT_S, over raw sockets: a connection that sends half its headers, drips them a
byte at a time, or sends nothing, is closed once the deadline passes (a 408 to one that started a
request); so is a keep-alive connection that starts its next request and stalls. What has
completed its headers is never touched: a request body slower than the deadline is served, and a
stream that lasts longer than the deadline ends with [DONE]."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ADMIN, LiveGateway, free_port, ok, wait_http
from tests.faults.conftest import chat, make_fault_tenant

TIMEOUT_S = 1.5
SLACK_S = 1.5  # the deadline's timer fires on the event loop: closed within TIMEOUT_S + SLACK_S


@pytest.fixture(scope="module")
def gateway(database_url, tmp_path_factory):
    """A one-worker `serve` of our own with TF_HEADER_TIMEOUT_S=1.5 (the shared live gateway keeps
    the 10 s default)."""
    d = tmp_path_factory.mktemp("slow-headers")
    port, log = free_port(), d / "gateway.log"
    env = {**os.environ, "TF_DATABASE_URL": database_url, "TF_ADMIN_TOKEN": ADMIN, "TF_DATA_DIR": str(d),
           "TF_HEADER_TIMEOUT_S": str(TIMEOUT_S)}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "tokens-forge"), "serve", "--port", str(port),
                             "--workers", "1"], cwd=d, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 90, proc, log)
        live = LiveGateway(f"http://127.0.0.1:{port}", "http://127.0.0.1:9/v1", log, proc)
        yield live
        live.admin.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def connect(live) -> socket.socket:
    port = int(live.base.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def until_closed(s: socket.socket, limit_s: float) -> tuple[float, bytes]:
    """Read until the server closes the connection (or limit_s passes): (seconds it took, bytes)."""
    started = time.monotonic()
    got = bytearray()
    s.settimeout(0.2)
    while time.monotonic() - started < limit_s:
        try:
            part = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not part:
            break
        got += part
    return time.monotonic() - started, bytes(got)


HALF = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: "


def test_half_headers_are_closed_with_a_408(gateway):
    with connect(gateway) as s:
        s.sendall(HALF)
        took, got = until_closed(s, TIMEOUT_S + 30)
    assert took < TIMEOUT_S + SLACK_S, f"half headers held open {took:.1f}s (deadline {TIMEOUT_S}s)"
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]


def test_no_bytes_at_all_is_closed(gateway):
    with connect(gateway) as s:
        took, got = until_closed(s, TIMEOUT_S + 30)
    assert took < TIMEOUT_S + SLACK_S, f"a silent connection held open {took:.1f}s"
    assert got == b""


def test_headers_dripped_a_byte_at_a_time_are_closed(gateway):
    """The deadline is for the whole header block: a byte every 0.2 s does not renew it."""
    with connect(gateway) as s:
        started = time.monotonic()
        closed = False
        for b in HALF + b"x" * 200:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > TIMEOUT_S + SLACK_S + 1:
                break
        if not closed:
            took, _ = until_closed(s, 0.5)
            closed = took < 0.5
        took = time.monotonic() - started
    assert closed and took < TIMEOUT_S + SLACK_S + 0.5, f"dripped headers held open {took:.1f}s"


def test_a_keep_alive_connection_that_stalls_in_its_next_headers_is_closed(gateway):
    with connect(gateway) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        s.settimeout(10)
        first = b""
        while b'{"status":"ok"}' not in first:
            part = s.recv(65536)
            assert part, first
            first += part
        assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'{"status":"ok"}'), first[:200]
        s.sendall(HALF)
        took, got = until_closed(s, TIMEOUT_S + 30)
    assert took < TIMEOUT_S + SLACK_S, f"the stalled second request held the connection {took:.1f}s"
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]


def test_a_body_slower_than_the_deadline_is_served(gateway):
    """Headers complete at once, the body trickles for twice the deadline: the request is served."""
    t = gateway.tenant()
    body = json.dumps({"model": t.model, "mode": "quick", "budget_micros": 1000, "name": "slow body"}).encode()
    head = (b"POST /v1/runs HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + t.secret.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    with connect(gateway) as s:
        s.sendall(head)
        step = 2 * TIMEOUT_S / 10
        for i in range(0, len(body), len(body) // 10 + 1):
            time.sleep(step)
            s.sendall(body[i : i + len(body) // 10 + 1])
        s.settimeout(10)
        answer = s.recv(65536)
        while b"\r\n\r\n" in answer and b'"run_' not in answer and (more := s.recv(65536)):
            answer += more  # the body may come in a later segment than the head
    assert answer.startswith(b"HTTP/1.1 201 ") or answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert b'"run_' in answer


def test_a_stream_longer_than_the_deadline_completes(gateway, fault_upstream):
    """A stream of about 3.5 s (the closing [DONE] dripped a byte every 250 ms) through the 1.5 s deadline."""
    t = make_fault_tenant(gateway, fault_upstream, "drip_tail:250")
    ans = chat(gateway, t, stream=True, max_tokens=5)
    assert ans.status == 200 and ans.ended_by_server, ans.body[-300:]
    assert ans.elapsed > 2 * TIMEOUT_S, f"the stream took {ans.elapsed:.1f}s: not longer than the deadline"
    assert ans.done and not ans.error_events, ans.body[-300:]
    rid = ans.headers["x-tf-receipt-id"]
    end = time.monotonic() + 20
    while (rc := ok(gateway.admin.get(f"/receipts/{rid}")))["status"] == "pending" and time.monotonic() < end:
        time.sleep(0.1)
    assert rc["status"] == "succeeded" and rc["total_charged_micros"] > 0, rc


def test_pipelined_requests_are_all_answered_then_the_idle_connection_is_closed(gateway):
    with connect(gateway) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n" * 3)
        took, got = until_closed(s, TIMEOUT_S + 30)
    assert got.count(b'{"status":"ok"}') == 3, got[:600]
    assert b" 408 " not in got and took < TIMEOUT_S + SLACK_S + 5
