"""Secrets never leave: upstream API keys, API key secrets (after the one creation answer) and
their SHA-256 hashes, and the admin token appear in no response body or header of any endpoint,
no export, and not in the gateway's log file, including when an upstream quotes the key back
(as real upstreams do in their 401/400 bodies and stream error events)."""

from __future__ import annotations

import hashlib
import time

import httpx

from tests.conftest import ADMIN, ok
from tests.faults.conftest import make_fault_tenant


def _everything(live, t, run_id: str) -> list[tuple[str, str]]:
    """(label, text) of every answer of every endpoint for this tenant, headers included."""
    out = []
    base = live.base
    a = live.admin

    def grab(label, r):
        out.append((label, r.text + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())))

    with httpx.Client(base_url=base, headers=t.auth, timeout=30) as c:
        for fmt in (None, "csv", "jsonl"):
            p = {"format": fmt} if fmt else {}
            grab(f"usage {fmt}", c.get("/v1/usage", params=p))
            grab(f"failures {fmt}", c.get("/v1/failures", params=p))
            grab(f"ledger {fmt}", c.get("/v1/wallet/ledger", params=p))
            grab(f"admin usage {fmt}", a.get("/usage", params=p))
        for path in ("/v1/models", "/v1/wallet", "/v1/routes/health", "/v1/runs", f"/v1/runs/{run_id}",
                     f"/v1/runs/{run_id}/receipt"):
            grab(path, c.get(path))
        grab("preflight", c.post("/v1/preflight", json={"model": t.model, "messages": [{"role": "user", "content": "x"}]}))
        for u in ok(c.get("/v1/usage", params={"limit": 500}))["data"]:
            grab("receipt", c.get(f"/v1/receipts/{u['receipt_id']}"))
            grab("admin receipt", a.get(f"/receipts/{u['receipt_id']}"))
    for path in (f"/accounts/{t.account['id']}", f"/projects/{t.project['id']}", f"/keys/{t.key['id']}", "/routes",
                 f"/routes/{t.routes['official']['id']}", "/price-snapshots", "/audit", "/ledger/verify"):
        grab(f"admin {path}", a.get(path, params={"limit": 500} if path in ("/audit", "/price-snapshots") else None))
    return out


def test_no_secret_in_any_answer_export_or_log(live_gateway, fault_upstream):
    live = live_gateway
    t = live.tenant(official_charge={"mode": "flat", "flat_micros": 5})
    echo = make_fault_tenant(live, fault_upstream, "echo_auth", "echo_auth")
    secrets = {
        "upstream key official": f"sk-upstream-secret-official-{t.model}",
        "upstream key routed": f"sk-upstream-secret-routed-{t.model}",
        "echo upstream key official": f"sk-upstream-secret-official-{echo.model}",
        "echo upstream key routed": f"sk-upstream-secret-routed-{echo.model}",
        "key secret hash": hashlib.sha256(t.secret.encode()).hexdigest(),
        "echo key secret hash": hashlib.sha256(echo.secret.encode()).hexdigest(),
        "admin token": ADMIN,
        "key secret": t.secret,
        "echo key secret": echo.secret,
    }
    # a rotated upstream key, an update that fails validation with a key in it, a bad route create
    rotated = "sk-rotated-" + t.model
    secrets["rotated upstream key"] = rotated
    answers = [("patch route", live.admin.patch(f"/routes/{t.routes['routed']['id']}",
                                                json={"upstream_api_key": rotated}).text),
               ("bad patch", live.admin.patch(f"/routes/{t.routes['routed']['id']}",
                                              json={"upstream_api_key": rotated, "timeout_s": -1}).text),
               ("bad create", live.admin.post("/routes", json={"model": "x", "kind": "nope", "base_url": "http://x.y",
                                                              "upstream_model": "u", "upstream_api_key": rotated,
                                                              "price": {"input_per_mtok": 1, "output_per_mtok": 1}}).text)]
    run = ok(httpx.post(live.base + "/v1/runs", headers=t.auth,
                        json={"model": t.model, "mode": "quick", "budget_micros": 100_000}))
    body = {"model": t.model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
    with httpx.Client(base_url=live.base, headers=t.auth, timeout=30) as c:
        for extra, headers in (({}, {}), ({"stream": True}, {}), ({}, {"X-TF-Run-Id": run["id"]}),
                               ({}, {"Idempotency-Key": "s1"}), ({}, {"Idempotency-Key": "s1"}),
                               ({"max_tokens": 10**6, "n": 128}, {})):
            r = c.post("/v1/chat/completions", json={**body, **extra}, headers=headers)
            answers.append(("chat", r.text + str(dict(r.headers))))
        r = c.post("/v1/chat/completions", json={**body, "model": echo.model}, headers=echo.auth)
        answers.append(("echo chat", r.text + str(dict(r.headers))))
        r = c.post("/v1/chat/completions", json={**body, "model": echo.model, "stream": True}, headers=echo.auth)
        answers.append(("echo stream", r.text + str(dict(r.headers))))
    time.sleep(0.5)
    answers += _everything(live, t, run["id"])
    answers += _everything(live, echo, run["id"])
    leaks = sorted({(label, name) for label, text in answers for name, s in secrets.items() if s in text})
    # the key secret itself was shown once, at creation: nowhere after
    assert not leaks, f"secrets in answers: {leaks}"
    log = live.log.read_text(errors="replace")
    assert log, "the gateway log is empty: nothing to check"
    in_log = sorted(name for name, s in secrets.items() if s in log)
    assert not in_log, f"secrets in the gateway log: {in_log}"
    assert "sk-upstream-secret" not in log
    live.verify()


def test_upstream_key_echoed_in_a_200_never_reaches_the_client(live_gateway, fault_upstream):
    """An upstream that answers 200 and quotes the Authorization header it received, in the
    answer's content and in a response header (`echo_auth_ok`): neither the body nor the headers
    the client gets hold the key, plain or streamed, first answer or idempotent replay; the same
    for the 400 that quotes it (`echo_auth`), headers included. The charge is still made."""
    live = live_gateway
    t = make_fault_tenant(live, fault_upstream, "echo_auth_ok", "echo_auth_ok")
    bad = make_fault_tenant(live, fault_upstream, "echo_auth", "echo_auth")
    keys = [f"sk-upstream-secret-{kind}-{x.model}" for x in (t, bad) for kind in ("official", "routed")]
    body = {"model": t.model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
    seen = []
    with httpx.Client(base_url=live.base, timeout=30) as c:
        for extra, headers in (({}, {}), ({"stream": True}, {}), ({}, {"Idempotency-Key": "echo-1"}),
                               ({}, {"Idempotency-Key": "echo-1"}), ({"stream": True}, {"Idempotency-Key": "echo-2"}),
                               ({"stream": True}, {"Idempotency-Key": "echo-2"})):
            r = c.post("/v1/chat/completions", json={**body, **extra}, headers={**t.auth, **headers})
            assert r.status_code == 200, r.text
            assert "you sent Bearer [redacted]" in r.text, r.text  # the answer itself still arrives
            if not extra:
                assert int(r.headers["x-tf-charged-micros"]) > 0
            seen.append((f"echo 200 {extra} {headers}", r))
        for extra in ({}, {"stream": True}):
            r = c.post("/v1/chat/completions", json={**body, **extra, "model": bad.model}, headers=bad.auth)
            seen.append((f"echo 400 {extra}", r))
    leaks = []
    for label, r in seen:
        text = r.text + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        leaks += [label for k in keys if k in text]
        assert "x-echo-authorization" not in r.headers, (label, dict(r.headers))
    assert not leaks, f"the upstream key reached the client: {leaks}"
    live.verify()
