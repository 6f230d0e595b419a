"""Route health: a circuit breaker per route computed from the attempts table, so every worker
process reaches the same verdict from the same rows within one refresh interval.

- down: `DOWN_CONSECUTIVE` failures in a row, or a failure rate of at least `DOWN_RATE` over the
  recent window; for `COOL_DOWN_S` after the last failure the route is skipped while another can
  serve, then one request is let through as a probe; a success closes the breaker.
- degraded: failures above `DEGRADED_RATE`, or p95 latency above `SLOW_FRACTION` of its timeout."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokens_forge.db.plans import INDEX_ONLY

WINDOW = 50
WINDOW_S = 600
DOWN_CONSECUTIVE = 5
DOWN_RATE = 0.5
DOWN_MIN_SAMPLES = 10
DEGRADED_RATE = 0.1
SLOW_FRACTION = 0.8
COOL_DOWN_S = 30.0


@dataclass(frozen=True)
class RouteStats:
    route_id: str
    samples: int
    failures: int
    consecutive_failures: int
    p50_ms: int | None
    p95_ms: int | None
    last_error: str | None
    seconds_since_failure: float | None
    timeout_s: float

    @property
    def success_rate(self) -> float | None:
        return None if self.samples == 0 else round((self.samples - self.failures) / self.samples, 4)

    @property
    def tripped(self) -> bool:
        rate = self.failures / self.samples if self.samples else 0.0
        return self.consecutive_failures >= DOWN_CONSECUTIVE or (
            self.samples >= DOWN_MIN_SAMPLES and rate >= DOWN_RATE and self.consecutive_failures > 0)

    @property
    def state(self) -> str:
        if self.tripped and (self.seconds_since_failure or 0) < COOL_DOWN_S:
            return "down"
        rate = self.failures / self.samples if self.samples else 0.0
        slow = self.p95_ms is not None and self.p95_ms > self.timeout_s * 1000 * SLOW_FRACTION
        if self.tripped or rate > DEGRADED_RATE or slow:
            return "degraded"
        return "healthy"


_SQL = text("""
    SELECT r.id, r.timeout_s, s.samples, s.failures, s.p50, s.p95, s.last_error, s.since_failure, s.consecutive
      FROM routes r
      LEFT JOIN LATERAL (
        WITH recent AS (
          SELECT outcome, latency_ms, error, ended_at,
                 row_number() OVER (ORDER BY started_at DESC) AS n
            FROM attempts
           WHERE route_id = r.id AND outcome IS NOT NULL AND outcome <> 'cancelled'
             AND started_at > now() - make_interval(secs => :window_s)
           ORDER BY started_at DESC LIMIT :window)
        SELECT count(*) AS samples,
               count(*) FILTER (WHERE outcome <> 'success') AS failures,
               percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
               percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95,
               (SELECT error FROM recent WHERE outcome <> 'success' ORDER BY n LIMIT 1) AS last_error,
               extract(epoch FROM now() - (SELECT max(ended_at) FROM recent WHERE outcome <> 'success'))
                 AS since_failure,
               coalesce((SELECT min(n) - 1 FROM recent WHERE outcome = 'success'), count(*)) AS consecutive
          FROM recent) s ON true
     WHERE r.enabled""")


class RouteHealth:
    def __init__(self, engine: AsyncEngine, refresh_s: float = 2.0):
        self._engine = engine
        self._refresh_s = refresh_s
        self._stats: dict[str, RouteStats] = {}
        self._at = 0.0

    async def refresh(self) -> dict[str, RouteStats]:
        async with self._engine.connect() as conn:
            await conn.execute(INDEX_ONLY)
            rows = (await conn.execute(_SQL, {"window": WINDOW, "window_s": WINDOW_S})).all()
        self._stats = {
            r.id: RouteStats(r.id, int(r.samples or 0), int(r.failures or 0), int(r.consecutive or 0),
                             r.p50, r.p95, r.last_error,
                             float(r.since_failure) if r.since_failure is not None else None, r.timeout_s)
            for r in rows}
        self._at = time.monotonic()
        return self._stats

    def is_down(self, route_id: str) -> bool:
        s = self._stats.get(route_id)
        return s is not None and s.state == "down"

    def stats(self, route_id: str) -> RouteStats | None:
        return self._stats.get(route_id)

    def all_stats(self) -> dict[str, RouteStats]:
        return dict(self._stats)

    def state(self, route_id: str) -> str:
        s = self._stats.get(route_id)
        return s.state if s else "healthy"


def health_row(route, stats: RouteStats | None) -> dict:
    """One route's line of `GET /v1/routes/health` (SPEC §5): state, success rate, latency."""
    s = stats
    return {
        "route_id": route.id, "model": route.model, "kind": route.kind, "state": s.state if s else "healthy",
        "success_rate": s.success_rate if s else None,
        "latency_ms": {"p50": s.p50_ms if s else None, "p95": s.p95_ms if s else None},
        "last_error": s.last_error if s else None, "samples": s.samples if s else 0,
        "consecutive_failures": s.consecutive_failures if s else 0,
    }
