"""Cursor paging for every list: `?limit=` (default 50, max 500) and an opaque `?cursor=`."""

from __future__ import annotations

import base64
from typing import Annotated

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
        if (type(v) is not kind or (kind is int and not -(2**63) <= v < 2**63)
                or (kind is str and ("\x00" in v or len(v) > 200))):
            raise InvalidRequest("cursor: not a cursor this API returned", param="cursor")
    return values


def page(data: list, next_cursor: str | None) -> dict:
    return {"object": "list", "data": data, "next_cursor": next_cursor}
