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
        env={**env, "COLUMNS": "200"}, preexec_fn=_ctrl_c_as_at_a_terminal)


def _ctrl_c_as_at_a_terminal() -> None:
    # A suite started in the background (`.ci/run &`) hands its children SIGINT ignored, and Python
    # then installs no KeyboardInterrupt: the script gets SIGINT as a terminal's Ctrl-C would send it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


SDK_AGENT = AGENT.parent / "agent_sdk.py"


def test_agents_sdk_twin_calls_its_tool_inside_a_run(live_gateway):
    """examples/agent_sdk.py: the Agents SDK's Runner, a function tool reading the wallet, through
    /v1/responses on the demo's kind of route (chat completions only: translated)."""
    t = live_gateway.tenant()
    for stream in ([], ["--stream"]):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "OPENAI_"))}
        out = subprocess.run([sys.executable, str(SDK_AGENT), "--base-url", live_gateway.base + "/v1",
                              "--api-key", t.secret, "--model", t.model, *stream],
                             capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "200"})
        assert out.returncode == 0, out.stdout + out.stderr
        assert "answer:" in out.stdout and "bucket" in out.stdout and "available" in out.stdout, out.stdout
    with httpx.Client(base_url=live_gateway.base, headers=t.auth, timeout=30) as c:
        runs = ok(c.get("/v1/runs"))["data"]
        assert len(runs) == 2 and {r["status"] for r in runs} == {"finished"}
        for run in runs:
            receipt = ok(c.get(f"/v1/runs/{run['id']}/receipt"))
            assert [(q["endpoint"], q["status"]) for q in receipt["requests"]] == [("responses", "succeeded")] * 2
            assert receipt["totals"]["matches_ledger"] is True
    live_gateway.verify()
