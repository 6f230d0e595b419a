"""What the examples share: the gateway's own endpoints (preflight, runs, receipts), money in
plain words, and a refusal told in plain words instead of the SDK's `Error code: 402 - {…}`."""

from __future__ import annotations

import sys
import time

try:
    import httpx
    from openai import APIStatusError
    from rich.console import Console
except ImportError as missing:  # run with a Python that lacks the project's packages
    sys.exit(f"this example needs the project's packages ({missing.name} is missing): run it with the "
             "project's Python, e.g. `.venv/bin/python examples/...` (`make run` creates .venv), or `make agent`")

console = Console()

HEADLINES = {
    "insufficient_balance": "Not enough money in the paying bucket",
    "spend_limit_exceeded": "A spend limit is reached",
    "run_paused": "The run is paused",
    "run_cancelled": "The run was cancelled",
    "run_finished": "The run is already finished",
    "rate_limit_exceeded": "Too many requests for this key",
    "upstream_rate_limited": "The model's provider is rate limiting",
    "model_not_found": "No such model",
    "model_not_allowed": "This key may not use that model",
    "route_not_allowed": "This key may not use that kind of route",
    "invalid_api_key": "The API key is not valid",
    "no_healthy_route": "No route can serve the model right now",
}


def usd(micros: int | None) -> str:
    return "—" if micros is None else f"${micros / 1_000_000:,.6f} ({micros:,} µ$)"


def in_plain_words(status: int, error: dict) -> str:
    """One refusal as a person would say it: what happened, then the gateway's own advice."""
    code = error.get("code")
    headline = HEADLINES.get(code or "", f"The gateway refused the call (HTTP {status})")
    message = error.get("message") or ""
    receipt = f" (receipt {error['receipt_id']})" if error.get("receipt_id") else ""
    return f"{headline}: {message}{receipt}" if message else headline + receipt


def explain(exc: APIStatusError) -> str:
    """The OpenAI SDK keeps the envelope's `error` object as `body` (or the whole body)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body.get("error"), dict) else body
    return in_plain_words(exc.status_code, error if isinstance(error, dict) else {})


class Refused(Exception):
    pass


class Gateway:
    def __init__(self, base_url: str, api_key: str):
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=30,
                                 headers={"Authorization": f"Bearer {api_key}"})

    def call(self, method: str, path: str, **kw) -> dict:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise Refused(f"cannot reach the gateway at {self.http.base_url}: {exc}; is it running "
                          "(`make run`)?") from exc
        if r.status_code >= 400:
            error = r.json().get("error", {}) if "json" in r.headers.get("content-type", "") else {}
            raise Refused(in_plain_words(r.status_code, error or {"message": r.text[:300]}))
        return r.json()

    def preflight(self, model: str, mode: str) -> dict:
        return self.call("POST", "/preflight", json={"model": model, "mode": mode})

    def create_run(self, model: str, mode: str, budget: int, name: str) -> dict:
        return self.call("POST", "/runs", json={"model": model, "mode": mode, "budget_micros": budget, "name": name})

    def run(self, run_id: str) -> dict:
        return self.call("GET", f"/runs/{run_id}")

    def control(self, run_id: str, action: str) -> dict:
        return self.call("POST", f"/runs/{run_id}/{action}")

    def receipt(self, run_id: str) -> dict:
        return self.call("GET", f"/runs/{run_id}/receipt")

    def end(self, run_id: str) -> None:
        """Finish the run unless it already ended."""
        if self.run(run_id)["status"] not in ("cancelled", "finished"):
            self.control(run_id, "finish")


def print_receipt(gw: Gateway, base_url: str, run_id: str) -> None:
    rc = gw.receipt(run_id)
    deadline = time.monotonic() + 5
    while any(q["status"] == "pending" for q in rc["requests"]) and time.monotonic() < deadline:
        time.sleep(0.2)  # an aborted call settles a moment after the cancel
        rc = gw.receipt(run_id)
    totals = rc["totals"]
    console.print(f"run {run_id}: {rc['run']['status']}, {len(rc['requests'])} request(s), "
                  f"charged {usd(totals['charged_micros'])}"
                  + ("" if totals["matches_ledger"] else " [red](receipt and ledger disagree!)[/red]"))
    for bucket, b in totals["by_bucket"].items():
        if b["attempts"]:
            console.print(f"  {bucket}: {usd(b['charged_micros'])} over {b['attempts']} attempt(s)")
    console.print(f"receipt: {base_url.rstrip('/')}/runs/{run_id}/receipt")
    console.print(f"ledger:  {base_url.rstrip('/')}/wallet/ledger?run_id={run_id}")
