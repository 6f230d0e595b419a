"""Which database failures are worth trying again, and how long to wait before the next try.

A deadlock or a serialization failure rolled the whole transaction back: run it again. A lost
connection, a server shutting down or starting up, too many clients: the same statement may
succeed once the database is back. Anything else (a constraint, bad data) fails the same way
every time."""

from __future__ import annotations

import asyncpg

RETRY_SQLSTATES = frozenset({
    "40P01",  # deadlock_detected
    "40001",  # serialization_failure
    "53300",  # too_many_connections
    "57P01", "57P02", "57P03",  # admin_shutdown, crash_shutdown, cannot_connect_now
    "08000", "08003", "08006", "08001", "08004",  # connection exceptions
})
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


def sqlstate(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None)
    return code if isinstance(code, str) else None


def is_conflict(exc: BaseException) -> bool:
    """Two transactions crossed (deadlock, serialization): retrying at once is safe and right."""
    return sqlstate(exc) in CONFLICT_SQLSTATES


def is_transient(exc: BaseException) -> bool:
    """The database is unavailable or crossed another transaction: the same write may succeed later."""
    if sqlstate(exc) in RETRY_SQLSTATES:
        return True
    return isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | OSError | ConnectionError
                      | asyncpg.exceptions.InternalClientError)


def backoff_s(attempt: int, *, base: float = 0.05, cap: float = 2.0) -> float:
    return min(cap, base * (2.0 ** attempt))
