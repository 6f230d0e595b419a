"""examples/agent_report.py end to end: the real script, as a subprocess, through a real
`tokens-forge serve --workers 2` with the official OpenAI SDK."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ok

AGENT = Path(__file__).resolve().parents[2] / "examples" / "agent_report.py"


def agent(live, t, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "OPENAI_"))}
    return subprocess.Popen(
        [sys.executable, str(AGENT), "--base-url", live.base + "/v1", "--api-key", t.secret, "--model", t.model,
         "--mode", "standard", "--yes", *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**env, "COLUMNS": "200"})


def spent(wallet: dict) -> int:
    return 20_000_000 - sum(b["available_micros"] + b["held_micros"] for b in wallet["buckets"].values())


def test_agent_writes_the_report_and_finishes_the_run(live_gateway):
    t = live_gateway.tenant()
    proc = agent(live_gateway, t)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "Preflight" in out and "ok to start" in out
    with httpx.Client(base_url=live_gateway.base, headers=t.auth, timeout=30) as c:
        [run] = ok(c.get("/v1/runs"))["data"]
        assert run["status"] == "finished" and run["mode"] == "standard"
        assert f"/v1/runs/{run['id']}/receipt" in out
        receipt = ok(c.get(f"/v1/runs/{run['id']}/receipt"))
        assert len(receipt["requests"]) == 5
        assert {q["status"] for q in receipt["requests"]} == {"succeeded"}
        totals = receipt["totals"]
        assert totals["charged_micros"] > 0 and totals["matches_ledger"] is True
        assert totals["charged_micros"] == spent(ok(c.get("/v1/wallet"))) == run["spent_micros"]
    live_gateway.verify()


def test_ctrl_c_cancels_the_run(live_gateway):
    t = live_gateway.tenant(official="slow:5000")
    proc = agent(live_gateway, t)
    with httpx.Client(base_url=live_gateway.base, headers=t.auth, timeout=30) as c:
        deadline = time.monotonic() + 30
        while not ok(c.get("/v1/usage"))["data"]:  # the first call is in flight
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 130, out
        assert "cancelled" in out
        [run] = ok(c.get("/v1/runs"))["data"]
        assert run["status"] == "cancelled"
        deadline = time.monotonic() + 10
        while (receipt := ok(c.get(f"/v1/runs/{run['id']}/receipt")))["requests"][0]["status"] == "pending":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert receipt["requests"][0]["status"] == "cancelled"
        assert receipt["totals"]["matches_ledger"] is True
        assert receipt["totals"]["charged_micros"] == spent(ok(c.get("/v1/wallet")))
    live_gateway.verify()


def test_a_refusal_is_told_in_plain_words(live_gateway):
    t = live_gateway.tenant()
    proc = agent(live_gateway, t, "--budget-micros", "5")  # the run's budget cannot pay for one call
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "A spend limit is reached: spend limit:" in out and "rcpt_" in out, out
    assert "Error code" not in out and "None" not in out, out
    assert "/receipt" in out  # the run was finished and its receipt shown
    live_gateway.verify()


def test_without_the_project_python_it_says_how_to_run_it():
    """`python examples/agent_report.py` with a Python that lacks the project's packages (-S: no
    site-packages) names the fix instead of a traceback."""
    out = subprocess.run([sys.executable, "-S", str(AGENT), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert ".venv/bin/python examples/" in out.stderr and "make agent" in out.stderr
