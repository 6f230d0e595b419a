"""Prometheus metrics, one view of every worker process.

`tokens-forge serve` makes a fresh directory and names it in PROMETHEUS_MULTIPROC_DIR before the
workers start (`prepare_multiproc_dir`): prometheus-client then keeps each process's counters and
histograms in memory-mapped files there, and a scrape, whichever worker answers it, adds up the
files of all of them. Without that variable (the in-process tests, an app built by hand) the
metrics live in this process's own registry. Gauges that are facts of the database (money held,
open holds) are not kept by any process: they are read from PostgreSQL when scraped
(observability/gauges.py), so every worker reports the same value.

Every label has a small, fixed set of values: endpoint names, HTTP statuses, error codes,
route ids, buckets and model names that an admin declared. Never a raw path or a client's text."""

from __future__ import annotations

import glob
import os
import re
import tempfile
import time
from collections.abc import Iterable, MutableMapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = ["CONTENT_TYPE", "Metrics", "multiprocess_active", "prepare_multiproc_dir"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: an LLM request takes from milliseconds (a refusal) to minutes (a long stream).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# One ledger write (a reservation or a settle): a round trip to PostgreSQL, normally about a millisecond.
LEDGER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BUCKETS = ("credit", "routed")
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def multiprocess_active() -> bool:
    """Whether prometheus-client chose its multiprocess values (it decides once, at import, from
    PROMETHEUS_MULTIPROC_DIR)."""
    return values.ValueClass is not values.MutexValue


def prepare_multiproc_dir(environ: MutableMapping[str, str]) -> str:
    """Before the workers start: a directory for their metric files, named in `environ`. A
    directory given by the operator is emptied of old metric files (counters of a previous run
    must not be added to this one's); otherwise a fresh one is made."""
    given = environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for old in glob.glob(os.path.join(given, "*.db")):
            os.remove(old)
        return given
    path = tempfile.mkdtemp(prefix="tokens-forge-metrics-")
    environ[MULTIPROC_ENV] = path
    return path


class Metrics:
    """The gateway's series. Handlers and the pipeline call the methods; the `/metrics`
    endpoint calls `exposition`."""

    def __init__(self, multiproc_dir: str | None):
        self.multiproc_dir = multiproc_dir if multiprocess_active() and multiproc_dir else None
        # In multiprocess mode the values live in the files, and a scrape reads the files with a
        # registry of its own; registering them here too would report each series twice.
        registry = None if self.multiproc_dir else CollectorRegistry()
        disable_created_metrics()  # the *_created series double every counter for little use
        self._registry = registry
        live: dict[str, Any] = {"multiprocess_mode": "livesum"}
        self.requests = Counter("tf_requests", "Requests answered, by endpoint and HTTP status",
                                ["endpoint", "status"], registry=registry)
        self.errors = Counter("tf_errors", "Error answers by endpoint and error code",
                              ["endpoint", "code"], registry=registry)
        self.duration = Histogram("tf_request_duration_seconds", "Time to answer a request in full (a stream: "
                                  "until its end)", ["endpoint"], buckets=REQUEST_BUCKETS, registry=registry)
        self.in_flight = Gauge("tf_requests_in_flight", "Requests being served", ["endpoint"],
                               registry=registry, **live)
        self.attempts = Counter("tf_upstream_attempts", "Upstream attempts by route and outcome",
                                ["route_id", "outcome"], registry=registry)
        self.attempt_duration = Histogram("tf_upstream_attempt_duration_seconds", "Upstream attempt time by route",
                                          ["route_id"], buckets=REQUEST_BUCKETS, registry=registry)
        self.charged = Counter("tf_charged_micros", "Micros charged to customers, by bucket", ["bucket"],
                               registry=registry)
        self.reserved = Counter("tf_reserved_micros", "Micros reserved by the spend guard, by bucket",
                                ["bucket"], registry=registry)
        self.tokens = Counter("tf_tokens", "Tokens of settled attempts, by model and type (input, output)",
                              ["model", "type"], registry=registry)
        self.ledger_writes = Histogram("tf_ledger_write_duration_seconds", "Time of one ledger write, by phase "
                                       "(reserve, settle)", ["phase"], buckets=LEDGER_BUCKETS, registry=registry)
        self.ledger_retries = Counter("tf_ledger_write_retries", "Ledger writes repeated after a failed write",
                                      registry=registry)
        self.sweeper_released = Counter("tf_sweeper_released", "Expired holds released by the sweeper",
                                        registry=registry)
        self.started = Gauge("tf_worker_start_time_seconds", "Start time of each live worker process (unix)",
                             registry=registry, multiprocess_mode="liveall")
        self.started.set(time.time())
        for bucket in BUCKETS:  # series that exist from the start: rate() sees their first increase
            self.charged.labels(bucket)
            self.reserved.labels(bucket)
        # The series of every request, kept by label values: a dict lookup instead of labels()'s
        # validation and lock on each request.
        self._request_children: dict[tuple[str, int], object] = {}
        self._duration_children: dict[str, object] = {}
        self._in_flight_children: dict[str, object] = {}
        self._children: dict[tuple, object] = {}  # the pipeline's series, by (metric name, label values)

    # -- calls from the request path ----------------------------------------------------------

    def request_started(self, endpoint: str) -> None:
        child = self._in_flight_children.get(endpoint)
        if child is None:
            child = self._in_flight_children[endpoint] = self.in_flight.labels(endpoint)
        child.inc()  # type: ignore[attr-defined]

    def request_done(self, endpoint: str, status: int, seconds: float, error_code: str | None) -> None:
        self._in_flight_children[endpoint].dec()  # type: ignore[attr-defined]
        key = (endpoint, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(endpoint, str(status))
        child.inc()  # type: ignore[attr-defined]
        hist = self._duration_children.get(endpoint)
        if hist is None:
            hist = self._duration_children[endpoint] = self.duration.labels(endpoint)
        hist.observe(seconds)  # type: ignore[attr-defined]
        if error_code is not None:
            self.errors.labels(endpoint, error_code).inc()

    def _child(self, metric, *values: str):
        """The series of `metric` with these label values, looked up once (see request_done)."""
        key = (metric._name, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def attempt_done(self, route_id: str, outcome: str, seconds: float | None) -> None:
        self._child(self.attempts, route_id, outcome).inc()
        if seconds is not None:
            self._child(self.attempt_duration, route_id).observe(seconds)

    def money(self, bucket: str, *, reserved: int = 0, charged: int = 0) -> None:
        if reserved:
            self._child(self.reserved, bucket).inc(reserved)
        if charged:
            self._child(self.charged, bucket).inc(charged)

    def usage(self, model: str, input_tokens: int, output_tokens: int) -> None:
        if input_tokens:
            self._child(self.tokens, model, "input").inc(input_tokens)
        if output_tokens:
            self._child(self.tokens, model, "output").inc(output_tokens)

    def ledger_write(self, phase: str, seconds: float) -> None:
        self._child(self.ledger_writes, phase).observe(seconds)

    def ledger_write_retried(self, n: int = 1) -> None:
        if n:
            self.ledger_retries.inc(n)

    def holds_swept(self, n: int) -> None:
        if n:
            self.sweeper_released.inc(n)

    # -- the scrape ---------------------------------------------------------------------------

    def exposition(self, extra: Iterable[object] = ()) -> bytes:
        """The text of every process's series, then `extra` (families computed for this scrape)."""
        if self.multiproc_dir:
            self._forget_dead_workers()
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiproc_dir)
        else:
            assert self._registry is not None
            registry = self._registry
        text = generate_latest(registry)
        families = list(extra)
        if families:
            snapshot = CollectorRegistry(auto_describe=False)
            snapshot.register(_Families(families))  # type: ignore[arg-type]
            text += generate_latest(snapshot)
        return text

    def _forget_dead_workers(self) -> None:
        """A worker that died (and was replaced) leaves its live gauges' files behind; its counters
        stay, as counters must. Checked at each scrape: a handful of files."""
        assert self.multiproc_dir is not None
        pids = {int(m.group(1)) for f in os.listdir(self.multiproc_dir) if (m := _LIVE_FILE.match(f))}
        for pid in pids:
            if not _alive(pid):
                mark_process_dead(pid, self.multiproc_dir)


class _Families:
    """A collector of families computed just before the scrape (the database's gauges)."""

    def __init__(self, families: list[object]):
        self._families = families

    def collect(self) -> list[object]:
        return self._families


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
