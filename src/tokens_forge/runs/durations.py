"""Runtime estimates from real durations: how long a call took from the attempt's start to its end
(`attempts.started_at` → `ended_at`, so a 48 s stream counts 48 s, not its time to first byte),
per route and run mode, over the route's recent successful attempts.

The estimate prefers attempts made in runs of the same mode (a deep run's calls are longer than a
quick one's); with too few of them it takes all of the route's attempts, and with none it
assumes a default. The panel states which basis it used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

DEFAULT_CALL_MS = (1_000, 10_000)  # per call (low, high) for a route with no history
RECENT_ATTEMPTS = 200
RECENT_DAYS = 7
MIN_SAMPLES = 3

_SQL = text("""
    WITH recent AS (
      SELECT extract(epoch FROM a.ended_at - a.started_at) * 1000 AS ms, ru.mode
        FROM attempts a
        JOIN receipts r ON r.id = a.receipt_id
        LEFT JOIN runs ru ON ru.id = r.run_id
       WHERE a.route_id = :route AND a.outcome = 'success' AND a.ended_at IS NOT NULL
         AND a.started_at > now() - make_interval(days => :days)
       ORDER BY a.started_at DESC LIMIT :n)
    SELECT count(*) FILTER (WHERE mode = :mode) AS mode_n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE mode = :mode) AS mode_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) FILTER (WHERE mode = :mode) AS mode_p95,
           count(*) AS all_n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS all_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS all_p95
      FROM recent""")


@dataclass(frozen=True)
class CallDuration:
    """How long one call takes (ms, p50 and p95), and from what."""
    p50_ms: float
    p95_ms: float
    samples: int
    basis: str


def pick(route_id: str, mode: str | None, row: Any) -> CallDuration:
    """Pure: the mode's own durations when there are enough, else the route's, else the default."""
    if mode is not None and (row.mode_n or 0) >= MIN_SAMPLES:
        return CallDuration(float(row.mode_p50), float(row.mode_p95), int(row.mode_n),
                            f"{row.mode_n} recent {mode}-run calls on route {route_id}")
    if (row.all_n or 0) >= 1:
        scope = f"calls in any mode on route {route_id}" if mode is not None else f"calls on route {route_id}"
        return CallDuration(float(row.all_p50), float(row.all_p95), int(row.all_n), f"{row.all_n} recent {scope}")
    low, high = DEFAULT_CALL_MS
    return CallDuration(low, high, 0, f"no finished call on route {route_id} yet: assumed")


async def call_duration(conn: AsyncConnection, route_id: str, mode: str | None) -> CallDuration:
    row = (await conn.execute(_SQL, {"route": route_id, "mode": mode, "days": RECENT_DAYS,
                                     "n": RECENT_ATTEMPTS})).one()
    return pick(route_id, mode, row)


def _shown(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def runtime_estimate(call: CallDuration, calls_low: int, calls_high: int, timeout_s: float) -> dict[str, Any]:
    """`estimated_runtime_s` of the panel: calls × p50 (low) to calls × p95 (high), each call at
    most the route's timeout, with its basis in words."""
    cap = timeout_s * 1000
    p50, p95 = min(call.p50_ms, cap), min(call.p95_ms, cap)
    basis = (f"attempt start to end, {call.basis}: p50 {_shown(p50)}, p95 {_shown(p95)} per call"
             if call.samples else f"{call.basis} {_shown(p50)}-{_shown(p95)} per call")
    return {"low": round(calls_low * p50 / 1000, 2), "high": round(calls_high * p95 / 1000, 2),
            "basis": basis + f"; {calls_low}-{calls_high} call(s)"}
