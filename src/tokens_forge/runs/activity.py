"""A run's intensity, for its live page: tokens so far, tokens and spend per minute, and the spend
projected at the current rate against the budget.

Tokens come from the run's finished attempts, money from the ledger's charge transfers
(`records.charges`), so the per-minute spend sums to what the run receipt says. A request still
streaming counts when it settles. Rates are over the last `RATE_WINDOW_S` of activity (shorter
when the run is younger); the projection is what is spent plus that rate for the rest of the
runtime the run's preflight estimated (its high end), and it says so in `basis`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tokens_forge.guard.money import ceil_div
from tokens_forge.records.charges import CHARGE_TRANSFERS

SERIES_MINUTES = 10
RATE_WINDOW_S = 300
MIN_RATE_S = 10  # a run seconds old would otherwise project wildly

_TOKENS = text("""
    SELECT coalesce(sum(a.prompt_tokens), 0) AS prompt, coalesce(sum(a.completion_tokens), 0) AS completion,
           min(a.started_at) AS first_at
      FROM attempts a JOIN receipts r ON r.id = a.receipt_id
     WHERE r.run_id = :r AND r.account_id = :a""")

_TOKENS_PER_MINUTE = text("""
    SELECT date_trunc('minute', a.ended_at) AS minute, sum(a.prompt_tokens + a.completion_tokens) AS tokens
      FROM attempts a JOIN receipts r ON r.id = a.receipt_id
     WHERE r.run_id = :r AND r.account_id = :a AND a.ended_at >= :since
     GROUP BY 1""")

_SPEND_PER_MINUTE = text(f"""
    SELECT date_trunc('minute', c.created_at) AS minute, sum(c.amount) AS micros
      FROM ({CHARGE_TRANSFERS}) c
     WHERE c.account_id = :a AND c.run_id = :r AND c.created_at >= :since
     GROUP BY 1""")

_RECENT = text(f"""
    SELECT (SELECT coalesce(sum(a.prompt_tokens + a.completion_tokens), 0)
              FROM attempts a JOIN receipts r ON r.id = a.receipt_id
             WHERE r.run_id = :r AND r.account_id = :a AND a.ended_at >= :since) AS tokens,
           (SELECT coalesce(sum(c.amount), 0) FROM ({CHARGE_TRANSFERS}) c
             WHERE c.account_id = :a AND c.run_id = :r AND c.created_at >= :since) AS micros""")


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


async def run_activity(conn: AsyncConnection, run: Any, now: datetime | None = None) -> dict:
    """`run`: a row of the runs query (id, account_id, budget, spent, preflight)."""
    now = now or datetime.now(UTC)
    p = {"r": run.id, "a": run.account_id}
    tok = (await conn.execute(_TOKENS, p)).one()
    first = _minute(now) - timedelta(minutes=SERIES_MINUTES - 1)
    tokens = {r.minute: int(r.tokens) for r in await conn.execute(_TOKENS_PER_MINUTE, {**p, "since": first})}
    spend = {r.minute: int(r.micros) for r in await conn.execute(_SPEND_PER_MINUTE, {**p, "since": first})}
    minutes = [first + timedelta(minutes=i) for i in range(SERIES_MINUTES)]
    series = [{"minute": m.isoformat(), "tokens": tokens.get(m, 0), "charged_micros": spend.get(m, 0)}
              for m in minutes]

    started = tok.first_at
    since = max(now - timedelta(seconds=RATE_WINDOW_S), started) if started else now
    seconds = max((now - since).total_seconds(), MIN_RATE_S)
    recent = (await conn.execute(_RECENT, {**p, "since": since})).one()
    tokens_rate = int(recent.tokens) * 60 // int(seconds) if started else 0
    spend_rate = ceil_div(int(recent.micros) * 60, int(seconds)) if started else 0
    prompt, completion = int(tok.prompt), int(tok.completion)
    return {
        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "per_minute": series,
        "rate_window_s": int(seconds) if started else 0,
        "tokens_per_minute": tokens_rate,
        "spend_per_minute_micros": spend_rate,
        "projection": projection(run, spend_rate, int(seconds) if started else 0, started, now),
    }


def projection(run: Any, spend_rate: int, window_s: int, started: datetime | None, now: datetime) -> dict:
    """Pure: spent so far plus the current rate over the runtime the preflight still expects."""
    spent, budget = int(run.spent_micros), int(run.budget_micros)
    runtime = ((run.preflight or {}).get("estimated_runtime_s") or {}).get("high") or 0
    elapsed_s = (now - started).total_seconds() if started else 0.0
    left_s = max(float(runtime) - elapsed_s, 0.0)
    projected = spent + ceil_div(spend_rate * int(left_s), 60)
    remaining = max(budget - spent - int(run.held_micros), 0)
    return {
        "spend_micros": projected,
        "budget_micros": budget,
        "exceeds_budget": projected > budget,
        "runtime_left_s": round(left_s, 1),
        "budget_lasts_minutes": round(remaining / spend_rate, 1) if spend_rate else None,
        "basis": (f"{spent} micros spent + {spend_rate} micros/min (the rate over the last {window_s} s) × "
                  f"{left_s:.0f} s of runtime left by the preflight's high estimate"),
    }
