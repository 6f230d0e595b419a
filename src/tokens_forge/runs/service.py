"""Agent runs: create (with the preflight it starts from), list, show, control, and what a request
tagged with X-TF-Run-Id may do given the run's state.

A run's money lives in the spend counter scope 'run' (owner the run id, period 'total'), which the
guard's `tf_write_batch` checks atomically against `budget_micros`; this module only reads it.
State changes are conditional UPDATEs (`… WHERE status = ANY(allowed) RETURNING`), so two
concurrent controls of one run cannot interleave a read and a write. Every query is scoped to
the caller's account: another account's run is indistinguishable from a missing one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tokens_forge.errors import Conflict, NotFound, SpendGuardError
from tokens_forge.guard.money import Price, minimal_request_cost
from tokens_forge.ids import new_id
from tokens_forge.keys.auth import AuthedKey
from tokens_forge.ledger import views
from tokens_forge.receipts.service import receipts_view
from tokens_forge.records.charges import CHARGE_TRANSFERS
from tokens_forge.records.filters import BUCKETS
from tokens_forge.runs import preflight as panel
from tokens_forge.runs.activity import run_activity
from tokens_forge.runs.schemas import PreflightRequest, RunCreate

REFUSALS = {
    "paused": ("run_paused", "run {id} is paused; resume it (POST /v1/runs/{id}/resume) to send requests"),
    "cancelled": ("run_cancelled", "run {id} was cancelled; start a new run"),
    "finished": ("run_finished", "run {id} is finished; start a new run"),
}
CONTROL_CHANNEL = "tf_run_control"  # pipeline.background listens on it in every worker


async def check_run_accepts(engine: AsyncEngine, run_id: str, account_id: str) -> None:
    async with engine.connect() as conn:
        status = (await conn.execute(text("SELECT status FROM runs WHERE id = :r AND account_id = :a"),
                                     {"r": run_id, "a": account_id})).scalar_one_or_none()
    if status is None:
        raise NotFound(f"run {run_id!r} does not exist", param="X-TF-Run-Id")
    if status in REFUSALS:
        code, message = REFUSALS[status]
        raise Conflict(message.format(id=run_id), code=code)
    if status == "budget_exhausted":
        raise SpendGuardError(f"run {run_id} has exhausted its budget", code="spend_limit_exceeded")


async def mark_exhausted_if_spent(engine: AsyncEngine, run_id: str | None, remaining: int, price: Price) -> None:
    """After the run's budget refused a reservation: if what is left cannot pay even a minimal
    request at this route's price, the run is `budget_exhausted` (conditional, so a concurrent
    pause/cancel/finish wins)."""
    if run_id is None or remaining >= minimal_request_cost(price):
        return
    async with engine.begin() as conn:
        await conn.execute(text("""UPDATE runs SET status = 'budget_exhausted', updated_at = now()
                                    WHERE id = :r AND status IN ('ready', 'running')"""), {"r": run_id})


# -- reading ---------------------------------------------------------------------------------

_RUNS = """
    SELECT r.*, coalesce(sc.posted_micros, 0) AS spent_micros, coalesce(sc.pending_micros, 0) AS held_micros
      FROM runs r
      LEFT JOIN spend_counters sc ON sc.scope = 'run' AND sc.owner_id = r.id AND sc.period = 'total'
     WHERE (CAST(:a AS TEXT) IS NULL OR r.account_id = :a)"""


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def run_out(r: Any) -> dict:
    return {
        "id": r.id, "object": "run", "name": r.name, "model": r.model, "mode": r.mode, "status": r.status,
        "budget_micros": r.budget_micros, "spent_micros": int(r.spent_micros), "held_micros": int(r.held_micros),
        "remaining_micros": max(r.budget_micros - int(r.spent_micros) - int(r.held_micros), 0),
        "route_preference": r.route_preference, "account_id": r.account_id, "key_id": r.key_id,
        "project_id": r.project_id,
        "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at),
        "last_activity_at": _iso(r.last_activity_at),
    }


async def _row(conn: AsyncConnection, run_id: str, account_id: str | None, param: str = "run_id") -> Any:
    row = (await conn.execute(text(_RUNS + " AND r.id = :r"), {"a": account_id, "r": run_id})).one_or_none()
    if row is None:
        raise NotFound(f"run {run_id!r} does not exist", param=param)
    return row


async def _counts(conn: AsyncConnection, run_id: str) -> dict:
    """SPEC's counts: `requests` by status (with the total), `rejected_requests`, `failed_requests`."""
    counts = await _request_counts(conn, run_id)
    return {"requests": counts, "rejected_requests": counts["rejected"], "failed_requests": counts["failed"]}


async def _request_counts(conn: AsyncConnection, run_id: str) -> dict[str, int]:
    rows = (await conn.execute(text("SELECT status, count(*) AS n FROM receipts WHERE run_id = :r GROUP BY status"),
                               {"r": run_id})).all()
    counts = {s: 0 for s in ("pending", "succeeded", "failed", "cancelled", "rejected")}
    counts.update({r.status: int(r.n) for r in rows})
    return {"total": sum(counts.values()), **counts}


async def _partial_failures(conn: AsyncConnection, run_id: str, recent: int = 50) -> dict:
    """Failed attempts within the run's requests (a request may still have succeeded on a retry)."""
    rows = (await conn.execute(text("""
        SELECT a.receipt_id, a.attempt_no, a.route_id, a.route_kind, a.bucket, a.outcome, a.upstream_status,
               a.charged_micros, a.error, a.started_at, r.status AS request_status,
               count(*) OVER () AS total, sum(a.charged_micros) OVER () AS total_charged
          FROM attempts a JOIN receipts r ON r.id = a.receipt_id
         WHERE r.run_id = :r AND a.outcome IS NOT NULL AND a.outcome <> 'success'
         ORDER BY a.started_at DESC LIMIT :n"""), {"r": run_id, "n": recent})).all()
    return {
        "count": int(rows[0].total) if rows else 0,
        "charged_micros": int(rows[0].total_charged) if rows else 0,
        "recent": [{"receipt_id": r.receipt_id, "attempt": r.attempt_no, "route_id": r.route_id,
                    "route_kind": r.route_kind, "bucket": r.bucket, "outcome": r.outcome,
                    "upstream_status": r.upstream_status, "charged_micros": r.charged_micros, "error": r.error,
                    "request_status": r.request_status, "created_at": _iso(r.started_at)} for r in rows],
    }


async def get_run(conn: AsyncConnection, run_id: str, account_id: str | None) -> dict:
    """A run with its money (spent = posted, held = pending reservations), request counts by
    outcome, failed attempts, its intensity (tokens, per-minute tokens and spend, the projected
    spend), and the preflight it was created with. `account_id` None: any account (admin)."""
    row = await _row(conn, run_id, account_id)
    return {**run_out(row), **await _counts(conn, run_id),
            "partial_failures": await _partial_failures(conn, run_id),
            "activity": await run_activity(conn, row), "preflight": row.preflight}


async def list_runs(conn: AsyncConnection, account_id: str | None, limit: int,
                    before: tuple[datetime, str] | None, status: str | None = None
                    ) -> tuple[list[dict], tuple[str, str] | None]:
    """Newest first, keyset-paged on (created_at, id); returns the page and the next cursor values.
    `account_id` None: every account's runs (admin)."""
    rows = (await conn.execute(text(_RUNS + """
           AND (CAST(:status AS TEXT) IS NULL OR r.status = :status)
           AND (CAST(:c_at AS TIMESTAMPTZ) IS NULL OR (r.created_at, r.id) < (:c_at, :c_id))
         ORDER BY r.created_at DESC, r.id DESC LIMIT :n"""),
        {"a": account_id, "status": status, "c_at": before[0] if before else None,
         "c_id": before[1] if before else "", "n": limit + 1})).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [run_out(r) for r in rows], ((rows[-1].created_at.isoformat(), rows[-1].id) if more else None)


# -- preflight and create --------------------------------------------------------------------

async def run_context(conn: AsyncConnection, run_id: str, account_id: str) -> panel.RunContext:
    r = await _row(conn, run_id, account_id)
    return panel.RunContext(id=r.id, mode=r.mode, route_preference=r.route_preference, status=r.status,
                            budget_micros=r.budget_micros, posted_micros=int(r.spent_micros),
                            pending_micros=int(r.held_micros))


async def preflight(state: Any, conn: AsyncConnection, key: AuthedKey, body: PreflightRequest) -> dict:
    """The panel for one request, an existing run (`run_id`), or a run about to be created
    (`budget_micros`: the panel that `create_run` will store, its budget as the run cap)."""
    if body.run_id:
        run = await run_context(conn, body.run_id, key.account_id)
    elif body.budget_micros is not None:
        run = prospective_run(body.mode or panel.DEFAULT_MODE, body.route_preference or "auto", body.budget_micros,
                              run_id="{run_id}")
        body = body.model_copy(update={"mode": run.mode, "route_preference": run.route_preference})
    else:
        run = None
    return await panel.build(state, conn, key, body, run)


def prospective_run(mode: str, route_preference: str, budget_micros: int, run_id: str) -> panel.RunContext:
    return panel.RunContext(id=run_id, mode=mode, route_preference=route_preference, status="ready",
                            budget_micros=budget_micros, posted_micros=0, pending_micros=0)


async def create_run(state: Any, conn: AsyncConnection, key: AuthedKey, body: RunCreate) -> dict:
    """Run the preflight for the new run (its budget as the run cap) and store it with the run."""
    run = prospective_run(body.mode, body.route_preference, body.budget_micros, run_id=new_id("run"))
    shown = await panel.build(state, conn, key, PreflightRequest(
        model=body.model, mode=body.mode, route_preference=body.route_preference), run)
    await conn.execute(text("""
        INSERT INTO runs (id, account_id, project_id, key_id, name, model, mode, budget_micros,
                          route_preference, status, preflight)
        VALUES (:id, :a, :p, :k, :name, :model, :mode, :budget, :pref, 'ready', CAST(:preflight AS JSONB))"""),
        {"id": run.id, "a": key.account_id, "p": key.project_id, "k": key.id, "name": body.name,
         "model": body.model, "mode": body.mode, "budget": body.budget_micros, "pref": body.route_preference,
         "preflight": _json(shown)})
    return await get_run(conn, run.id, key.account_id)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


# -- control ---------------------------------------------------------------------------------

# action: (statuses it may start from, the new status as SQL, past participle for messages).
# Repeating an action on a run already in its target state is a no-op success (a client retry).
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "pause": (("ready", "running", "paused"), "'paused'", "paused"),
    "resume": (("paused", "ready", "running"),
               "CASE WHEN status <> 'paused' THEN status WHEN last_activity_at IS NULL THEN 'ready' "
               "ELSE 'running' END", "resumed"),
    "cancel": (("ready", "running", "paused", "budget_exhausted", "cancelled"), "'cancelled'", "cancelled"),
    "finish": (("ready", "running", "paused", "budget_exhausted", "finished"), "'finished'", "finished"),
}
STATE_CODES = {"paused": "run_paused", "cancelled": "run_cancelled", "finished": "run_finished"}


async def control(conn: AsyncConnection, run_id: str, account_id: str | None, action: str) -> dict:
    """Move the run to the action's state, or 409 naming the state it is in. On cancel, every
    worker is told in the same transaction (NOTIFY is delivered at commit, so no worker can see
    the message before the status it refers to is visible)."""
    allowed, new_status, done = TRANSITIONS[action]
    moved = (await conn.execute(text(f"""
        UPDATE runs SET status = {new_status}, updated_at = now()
         WHERE id = :r AND (CAST(:a AS TEXT) IS NULL OR account_id = :a) AND status = ANY(:allowed)
        RETURNING id"""), {"r": run_id, "a": account_id, "allowed": list(allowed)})).scalar_one_or_none()
    if moved is None:
        current = (await _row(conn, run_id, account_id)).status
        raise Conflict(f"run {run_id} is {current} and cannot be {done}; "
                       f"allowed from: {', '.join(s for s in allowed)}", code=STATE_CODES.get(current, "conflict"))
    if action == "cancel":
        await conn.execute(text("SELECT pg_notify(:ch, 'cancel:' || :r)"), {"ch": CONTROL_CHANNEL, "r": run_id})
    return await get_run(conn, run_id, account_id)


# -- the run's final receipt -------------------------------------------------------------------

FAILURE_OUTCOMES = ("timeout", "connect_error", "upstream_error")


def _totals(requests: list[dict], ledger: dict[str, int]) -> dict:
    """Per bucket: what the ledger charged (`ledger`, from its charge transfers), and what the
    receipts' attempts say, which must agree (a fallback may pay from both buckets in one request)."""
    by_bucket = {b: {"charged_micros": ledger.get(b, 0), "attempts_charged_micros": 0,
                     "receipts_charged_micros": 0, "failed_request_charges_micros": 0,
                     "cancelled_charges_micros": 0, "prompt_tokens": 0, "completion_tokens": 0, "attempts": 0}
                 for b in BUCKETS}
    for req in requests:
        for b, amount in req["charged_by_bucket"].items():
            by_bucket[b]["receipts_charged_micros"] += amount
        for a in req["attempts"]:
            t = by_bucket[a["bucket"]]
            t["attempts_charged_micros"] += a["charged_micros"]
            t["prompt_tokens"] += a["prompt_tokens"]
            t["completion_tokens"] += a["completion_tokens"]
            t["attempts"] += 1
            if a["outcome"] in FAILURE_OUTCOMES:
                t["failed_request_charges_micros"] += a["charged_micros"]
            elif a["outcome"] == "cancelled":
                t["cancelled_charges_micros"] += a["charged_micros"]
    charged = sum(t["charged_micros"] for t in by_bucket.values())
    agree = all(t["charged_micros"] == t["attempts_charged_micros"] == t["receipts_charged_micros"]
                for t in by_bucket.values())
    return {"charged_micros": charged, "ledger_charged_micros": charged,
            "receipts_charged_micros": sum(r["total_charged_micros"] for r in requests),
            "failed_request_charges_micros": sum(t["failed_request_charges_micros"] for t in by_bucket.values()),
            "matches_ledger": agree and charged == sum(r["total_charged_micros"] for r in requests),
            "by_bucket": by_bucket}


async def _ledger_charges(conn: AsyncConnection, run_id: str, account_id: str) -> dict[str, int]:
    rows = (await conn.execute(text(f"""
        SELECT c.bucket, sum(c.amount) AS micros FROM ({CHARGE_TRANSFERS}) c
         WHERE c.account_id = :a AND c.run_id = :r GROUP BY c.bucket"""), {"a": account_id, "r": run_id})).all()
    return {r.bucket: int(r.micros) for r in rows}


def _failure_charges(requests: list[dict]) -> list[dict]:
    return [{"receipt_id": req["id"], "attempt": a["number"], "route_id": a["route_id"], "bucket": a["bucket"],
             "outcome": a["outcome"], "upstream_status": a["upstream_status"], "charged_micros": a["charged_micros"],
             "reason": a["charge_reason"]}
            for req in requests for a in req["attempts"]
            if a["outcome"] in FAILURE_OUTCOMES and a["charged_micros"] > 0]


async def run_receipt(conn: AsyncConnection, run_id: str, account_id: str) -> dict:
    """Every request of the run with its attempts, totals per bucket (from the ledger's charge
    transfers), failed-request charges, and the run's ledger entries (one per transfer, holds
    included), with a check that receipts, attempts and ledger agree per bucket to the micro."""
    row = await _row(conn, run_id, account_id)
    ids = list((await conn.execute(text("SELECT id FROM receipts WHERE run_id = :r AND account_id = :a"),
                                   {"r": run_id, "a": account_id})).scalars())
    requests = await receipts_view(conn, ids, account_id) if ids else []
    stmt, params = views.entries_statement(account_id, receipt_id=None, run_id=run_id, bucket=None, before=None,
                                           limit=None, include_holds=True)
    entries = [views.entry_out(e, True) for e in reversed((await conn.execute(stmt, params)).all())]
    return {
        "object": "run.receipt", "run": {**run_out(row), **await _counts(conn, run_id)},
        "requests": requests, "totals": _totals(requests, await _ledger_charges(conn, run_id, account_id)),
        "failed_request_charges": _failure_charges(requests),
        "ledger": {"location": f"/v1/wallet/ledger?run_id={run_id}", "entries": entries},
    }
