"""Fixtures for fault tests: the fault-injecting upstream as its own process, tenants whose routes
point at it on the shared `live_gateway`, and helpers that read an answer the way a client does
(streams byte by byte, with bounds) and check the money afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import PRICE, Tenant, free_port, ok, wait_http

LONG = os.environ.get("TF_LONG_TESTS") == "1"
HERE = Path(__file__).parent
MSG = [{"role": "user", "content": "hello world"}]  # 11 chars: 3 prompt tokens by the mock's count and the estimate
PT = 3


@pytest.fixture(scope="session")
def fault_upstream(tmp_path_factory):
    """The fault-injecting upstream (tests/faults/fault_upstream.py) as a real process; its /v1 base URL."""
    d = tmp_path_factory.mktemp("fault-upstream")
    port = free_port()
    log = d / "fault.log"
    proc = subprocess.Popen([sys.executable, str(HERE / "fault_upstream.py"), "--port", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/_ready", 30, proc, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def make_fault_tenant(live, base_url: str, official: str | None, routed: str | None = None, *,
                      timeout_s: float = 5.0, official_charge: dict | None = None,
                      routed_charge: dict | None = None, key: dict | None = None,
                      credit: int = 10_000_000, routed_balance: int = 10_000_000) -> Tenant:
    """A funded tenant with its own model whose routes go to `base_url` (a new model name, so no
    gateway worker has it cached: no wait for route caches)."""
    a = live.admin
    model = "f-" + uuid.uuid4().hex[:10]
    acct = ok(a.post("/accounts", json={"name": model}))
    for bucket, amount in (("credit", credit), ("routed", routed_balance)):
        if amount:
            ok(a.post(f"/accounts/{acct['id']}/topups",
                      json={"bucket": bucket, "amount_micros": amount, "reference": f"{model}-{bucket}"}))
    proj = ok(a.post("/projects", json={"account_id": acct["id"], "name": "p", "limits": {}}))
    routes = {}
    for kind, up, prio, charge in (("official", official, 1, official_charge), ("routed", routed, 2, routed_charge)):
        if up is None:
            continue
        routes[kind] = ok(a.post("/routes", json={
            "model": model, "kind": kind, "base_url": base_url, "upstream_model": up,
            "upstream_api_key": f"sk-upstream-secret-{kind}-{model}", "price": PRICE,
            "failed_request_charge": charge or {"mode": "none"}, "timeout_s": timeout_s, "priority": prio}))
    body = {"project_id": proj["id"], "name": "k",
            "retry_policy": {"max_attempts": 1, "retry_on": [], "backoff_ms": 0}, "fallback_policy": "none"}
    body.update(key or {})
    return Tenant(model, acct, proj, routes, ok(a.post("/keys", json=body)))


@pytest.fixture
def fault_tenant(live_gateway, fault_upstream):
    def make(official, routed=None, **kw) -> Tenant:
        return make_fault_tenant(live_gateway, fault_upstream, official, routed, **kw)

    return make


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    elapsed: float
    ended_by_server: bool = True
    events: list = field(default_factory=list)  # SSE data payloads (bytes) in order

    @property
    def receipt_id(self) -> str:
        return self.headers["x-tf-receipt-id"]

    def json(self) -> dict:
        return orjson.loads(self.body)

    @property
    def error_events(self) -> list[dict]:
        out = []
        for d in self.events:
            try:
                obj = orjson.loads(d)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
                out.append(obj["error"])
        return out

    @property
    def done(self) -> bool:
        return any(d.strip() == b"[DONE]" for d in self.events)


def sse_data(body: bytes) -> list[bytes]:
    out = []
    for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [ln[5:].lstrip(b" ") for ln in event.split(b"\n") if ln.startswith(b"data:")]
        if lines:
            out.append(b"\n".join(lines))
    return out


def chat(live, t: Tenant, *, stream: bool = False, max_tokens: int | None = 5, timeout: float = 90,
         max_bytes: int = 64 << 20, max_seconds: float = 90, headers: dict | None = None, **extra) -> Answer:
    """One chat completion as a client sees it. A stream is read until the server ends it, or
    until max_bytes / max_seconds, when the client hangs up (ended_by_server=False)."""
    body = {"model": t.model, "messages": MSG, **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    started = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(timeout)) as c, \
            c.stream("POST", live.base + "/v1/chat/completions", json=body,
                     headers={**t.auth, **(headers or {})}) as r:
        buf = bytearray()
        ended = True
        for part in r.iter_raw():
            buf += part
            if len(buf) > max_bytes or time.monotonic() - started > max_seconds:
                ended = False
                break
        ans = Answer(r.status_code, r.headers, bytes(buf), time.monotonic() - started, ended)
    if ans.headers.get("content-type", "").startswith("text/event-stream"):
        ans.events = sse_data(ans.body)
    return ans


def receipt(live, t: Tenant, rid: str) -> dict:
    return ok(httpx.get(live.base + f"/v1/receipts/{rid}", headers=t.auth, timeout=30))


def wallet(live, t: Tenant) -> dict:
    return ok(httpx.get(live.base + "/v1/wallet", headers=t.auth, timeout=30))


def settled_receipt(live, t: Tenant, rid: str, seconds: float = 20) -> dict:
    """The receipt once it is closed (a stream settles after its last byte was sent)."""
    end = time.monotonic() + seconds
    while True:
        rc = receipt(live, t, rid)
        if rc["status"] != "pending" or time.monotonic() > end:
            return rc
        time.sleep(0.1)


def wait_no_hold(live, t: Tenant, seconds: float = 20) -> dict:
    end = time.monotonic() + seconds
    while True:
        w = wallet(live, t)
        if all(b["held_micros"] == 0 for b in w["buckets"].values()) or time.monotonic() > end:
            return w
        time.sleep(0.1)


def check_money(live, t: Tenant, rc: dict, *, charged: int | None = None, funded: int = 10_000_000) -> None:
    """No hold left, the wallet lost exactly what the receipt says, the receipt's attempts add up,
    and the whole ledger verifies."""
    w = wait_no_hold(live, t)
    for name, b in w["buckets"].items():
        assert b["held_micros"] == 0, f"a hold outlived its request in bucket {name}: {w}"
    total = rc["total_charged_micros"]
    if charged is not None:
        assert total == charged, f"charged {total}, expected {charged}: {rc}"
    assert total == sum(a["charged_micros"] for a in rc["attempts"]), rc
    for a in rc["attempts"]:
        assert a["charged_micros"] <= a["reserved_micros"], a
    spent = sum(funded - b["posted_micros"] for b in w["buckets"].values())
    assert spent == total, f"the wallet lost {spent}, the receipt says {total}"
    live.verify()
