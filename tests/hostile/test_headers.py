"""Header injection against the real server (httpx refuses to send these, so raw sockets): CR/LF,
bare CR, bare LF, NUL, DEL, obs-text and very long values in Idempotency-Key, X-TF-Run-Id and
X-TF-Route-Preference. Whatever the HTTP parser or the gateway makes of them, the answer is a
clean 4xx (or the request served once, when the parser split the line into two harmless
headers), nothing the client injected comes back as a response header, and the wallet lost
exactly what the receipts say."""

from __future__ import annotations

import json
import random
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ok
from tests.hostile.conftest import LONG

HEADERS = [b"Idempotency-Key", b"X-TF-Run-Id", b"X-TF-Route-Preference"]
PAYLOADS = {
    "crlf": b"auto\r\nX-Injected: yes",
    "crlf_response_split": b"auto\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: yes",
    "bare_cr": b"auto\rX-Injected: yes",
    "bare_lf": b"auto\nX-Injected: yes",
    "nul": b"au\x00to",
    "del": b"au\x7fto",
    "obs_text": b"\xff\xfe\xc3\xa9",
    "utf8": "🦄".encode(),
    "long": b"a" * 20_000,
    "empty": b"",
    "spaces": b"   ",
}


def raw_request(base: str, head_lines: list[bytes], body: bytes, timeout: float = 30) -> tuple[int | None, dict, bytes]:
    u = urlsplit(base)
    req = b"\r\n".join([b"POST /v1/chat/completions HTTP/1.1", f"Host: {u.netloc}".encode(),
                        b"Content-Type: application/json", f"Content-Length: {len(body)}".encode(),
                        b"Connection: close", *head_lines]) + b"\r\n\r\n" + body
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(req)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                part = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not part:
                break
            data += part
    if not data:
        return None, {}, b""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for ln in lines[1:]:
        k, _, v = ln.decode("latin-1").partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, headers, rest


def random_payloads(n: int, seed: int) -> dict[str, bytes]:
    """Random bytes (every byte value, CR/LF and NUL among them) of random length."""
    rnd = random.Random(seed)
    alphabet = [bytes([b]) for b in range(256)] + [b"\r\n", b"\r", b"\n", b": ", b"X-Injected"] * 8
    return {f"random{i}": b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 300))) for i in range(n)}


@pytest.mark.parametrize("payloads", ["chosen", "random"])
def test_header_injection_is_harmless(live_gateway, payloads):
    live = live_gateway
    t = live.tenant()
    cases = PAYLOADS if payloads == "chosen" else random_payloads(300 if LONG else 20, seed=7 + LONG)
    body = json.dumps({"model": t.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    auth = f"Authorization: Bearer {t.secret}".encode()
    problems = []
    served = 0
    for name in HEADERS:
        for label, payload in cases.items():
            status, headers, rest = raw_request(live.base, [auth, name + b": " + payload], body)
            where = f"{name.decode()} {label}"
            if status is None:
                continue  # the parser dropped the connection: no answer is a clean refusal too
            if status >= 500:
                problems.append((where, status, rest[:200]))
            if "x-injected" in headers:
                problems.append((where, "injected header echoed", headers["x-injected"]))
            if b"X-Injected" in rest.split(b"\r\n\r\n")[0] and status == 200 and b"HTTP/1.1 200" in rest[:20]:
                problems.append((where, "response split", rest[:200]))
            if status == 200:
                served += 1
            elif status >= 400 and headers.get("content-type", [""])[0].startswith("application/json"):
                try:
                    shaped = "error" in json.loads(rest)
                except ValueError:
                    shaped = False
                if not shaped:
                    problems.append((where, status, "error body not OpenAI-shaped", rest[:120]))
    time.sleep(0.5)
    w = ok(httpx.get(live.base + "/v1/wallet", headers=t.auth))
    usage = ok(httpx.get(live.base + "/v1/usage", params={"limit": 500}, headers=t.auth))["data"]
    assert w["buckets"]["credit"]["held_micros"] == 0
    assert 10_000_000 - w["buckets"]["credit"]["posted_micros"] == sum(u["charged_micros"] for u in usage)
    assert len([u for u in usage if u["status"] == "succeeded"]) <= served
    live.verify()
    assert not problems, problems
