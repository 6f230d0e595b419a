"""Structured logs: every record of the `tokens_forge` loggers is one JSON line on stderr, and
every request is one line (`"msg": "request"`) with its receipt, key, model, route, status,
charge, duration and attempts. The level comes from TF_LOG_LEVEL.

What a line may hold: ids, names, statuses, error codes, counts and micros. Never a secret, a
prompt or an answer: the request line is built from `RequestObs` fields only, and nothing here
formats a request body, a header or a route's upstream key."""

from __future__ import annotations

import logging
import sys
import time

import orjson

from tokens_forge.observability.request import RequestObs

__all__ = ["JsonFormatter", "configure", "log_request"]

LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}
REQUESTS = logging.getLogger("tokens_forge.requests")
# Probes and scrapes come every few seconds: their lines are for debugging only.
QUIET_ENDPOINTS = frozenset({"healthz", "metrics"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        fields = getattr(record, "tf", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test runner swaps it per test)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        return None


def configure(level: str) -> None:
    """The `tokens_forge` loggers at TF_LOG_LEVEL, as JSON lines on stderr (idempotent: every app
    built in one process shares the one handler)."""
    logger = logging.getLogger("tokens_forge")
    logger.setLevel(LEVELS.get(level.strip().lower(), logging.INFO))
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())


def log_request(obs: RequestObs, *, method: str, path: str, status: int, seconds: float,
                trace_id: str | None) -> None:
    """The request's one line: INFO (DEBUG for probes and scrapes), WARNING for a 5xx."""
    if obs.endpoint in QUIET_ENDPOINTS:
        level = logging.DEBUG
    else:
        level = logging.WARNING if status >= 500 else logging.INFO
    if not REQUESTS.isEnabledFor(level):
        return
    fields = {"endpoint": obs.endpoint, "method": method, "path": path, "status": status,
              "duration_ms": round(seconds * 1000, 3), **obs.fields()}
    if trace_id is not None:
        fields["trace_id"] = trace_id
    # The record is made here rather than by Logger.log, which would walk the stack to find the
    # caller's file and line (a third of the line's cost) for a line that always comes from here.
    REQUESTS.handle(REQUESTS.makeRecord(REQUESTS.name, level, __file__, 0, "request", (), None,
                                        extra={"tf": fields}))
