"""Cursor paging for every list: `?limit=` (default 50, max 500) and an opaque `?cursor=`."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Query

from tokens_forge.errors import InvalidRequest

LimitQ = Annotated[int, Query(ge=1, le=500)]
CursorQ = Annotated[str | None, Query(max_length=500)]


def encode_cursor(*values: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int, types: tuple[type, ...] | None = None) -> list | None:
    if not cursor:
        return None
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidRequest("cursor: not a cursor this API returned", param="cursor") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidRequest("cursor: not a cursor this API returned", param="cursor")
    for v, kind in zip(values, types or (), strict=False):
        value: Any = v  # JSON: checked here, against the type the cursor's position has
        if (type(v) is not kind or (kind is int and not -(2**63) <= value < 2**63)
                or (kind is str and ("\x00" in value or len(value) > 200))):
            raise InvalidRequest("cursor: not a cursor this API returned", param="cursor")
    return values


def page(data: list, next_cursor: str | None) -> dict:
    return {"object": "list", "data": data, "next_cursor": next_cursor}


def page_of(rows: list, limit: int, cursor_of: Callable[[Any], tuple], out: Callable[[Any], Any] = lambda r: r) -> dict:
    """A page from `limit + 1` fetched rows: the extra row only says that there is a next page,
    whose cursor is built from the last row shown."""
    shown = rows[:limit]
    nxt = encode_cursor(*cursor_of(shown[-1])) if len(rows) > limit else None
    return page([out(r) for r in shown], nxt)


def decode_time_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """A (created_at, id) keyset cursor."""
    values = decode_cursor(cursor, 2, (str, str))
    if values is None:
        return None
    try:
        return datetime.fromisoformat(values[0]), str(values[1])
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("cursor: not a cursor this API returned", param="cursor") from exc
