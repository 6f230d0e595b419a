"""Gauges read at scrape time: facts of the database (money held, open holds, how old the oldest
is, holds the sweeper has not reached yet) and the route breaker's verdicts. No process keeps
them, so every worker answers a scrape with the same values, and one that just started is not
behind."""

from __future__ import annotations

import logging

import asyncpg
from prometheus_client.core import GaugeMetricFamily

from tokens_forge.routing.health import RouteStats

log = logging.getLogger("tokens_forge.metrics")

BUCKETS = ("credit", "routed")
ROUTE_STATES = ("healthy", "degraded", "down")
SCRAPE_QUERY_TIMEOUT_S = 2.0
# Open holds only (a partial index covers them): a handful of rows, whatever the ledger's size.
_OPEN_HOLDS = """
    SELECT bucket, count(*) AS n, coalesce(sum(amount), 0)::bigint AS held,
           coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_s,
           count(*) FILTER (WHERE expires_at < now()) AS expired
      FROM holds WHERE status = 'open' GROUP BY bucket"""


async def database_families(pg: asyncpg.Pool) -> list[GaugeMetricFamily]:
    up = GaugeMetricFamily("tf_database_up", "1 when the scrape could read the database")
    try:
        rows = await pg.fetch(_OPEN_HOLDS, timeout=SCRAPE_QUERY_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("metrics: the database gauges could not be read: %s", type(exc).__name__)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    by_bucket = {r["bucket"]: r for r in rows}
    held = GaugeMetricFamily("tf_held_micros", "Micros held by open reservations, by bucket", labels=["bucket"])
    open_by_bucket = GaugeMetricFamily("tf_holds_open_by_bucket", "Open holds by bucket", labels=["bucket"])
    for bucket in BUCKETS:
        r = by_bucket.get(bucket)
        held.add_metric([bucket], r["held"] if r else 0)
        open_by_bucket.add_metric([bucket], r["n"] if r else 0)
    holds = GaugeMetricFamily("tf_holds_open", "Open holds (reservations not yet settled or released)")
    holds.add_metric([], sum(r["n"] for r in rows))
    oldest = GaugeMetricFamily("tf_oldest_open_hold_age_seconds", "Age of the oldest open hold (0: none)")
    oldest.add_metric([], max((r["oldest_s"] for r in rows), default=0.0))
    expired = GaugeMetricFamily("tf_holds_expired_open", "Open holds past their expiry, not yet swept")
    expired.add_metric([], sum(r["expired"] for r in rows))
    return [up, held, holds, open_by_bucket, oldest, expired]


def route_families(stats: dict[str, RouteStats]) -> list[GaugeMetricFamily]:
    """The breaker's view of each enabled route (every worker computes it from the same rows)."""
    state = GaugeMetricFamily("tf_route_state", "1 for the route's current state (healthy, degraded, down)",
                              labels=["route_id", "state"])
    rate = GaugeMetricFamily("tf_route_success_rate", "Success rate of the route's recent attempts",
                             labels=["route_id"])
    p95 = GaugeMetricFamily("tf_route_latency_p95_seconds", "p95 latency of the route's recent attempts",
                            labels=["route_id"])
    for route_id in sorted(stats):
        s = stats[route_id]
        current = s.state
        for name in ROUTE_STATES:
            state.add_metric([route_id, name], 1 if name == current else 0)
        if s.success_rate is not None:
            rate.add_metric([route_id], s.success_rate)
        if s.p95_ms is not None:
            p95.add_metric([route_id], s.p95_ms / 1000)
    return [state, rate, p95]
