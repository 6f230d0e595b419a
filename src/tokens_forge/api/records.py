"""Serving a record list as a JSON page or a streaming export; shared by /v1 and /admin/v1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query, Request, Response

from tokens_forge.api.paging import decode_time_cursor, page_of
from tokens_forge.records.export import check_format, export_response
from tokens_forge.records.filters import RecordFilters
from tokens_forge.records.queries import SUMMARY_COLUMNS, row_out, statement, summary_statement

SinceQ = Annotated[datetime | None, Query(description="ISO time; rows at or after it")]
UntilQ = Annotated[datetime | None, Query(description="ISO time; rows before it")]
FormatQ = Annotated[str | None, Query(description="json (default), csv or jsonl")]


async def list_or_export(request: Request, sql: str, columns: list[str], filters: RecordFilters, *,
                         limit: int, cursor: str | None, fmt: str | None, name: str) -> dict | Response:
    engine = request.app.state.engine
    fmt = check_format(fmt)
    if fmt is not None:
        stmt, params = statement(sql, filters, None, None)
        return await export_response(engine, fmt, name, columns, stmt, params, lambda r: row_out(r, columns))
    stmt, params = statement(sql, filters, decode_time_cursor(cursor), limit + 1)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt, params)).all()
    return page_of(rows, limit, lambda r: (r.created_at.isoformat(), r.sort_id), lambda r: row_out(r, columns))


async def summary(request: Request, filters: RecordFilters, by: str) -> dict:
    stmt, params = summary_statement(filters, by)
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(stmt, params)).all()
    return {"object": "list", "by": by, "data": [row_out(r, SUMMARY_COLUMNS) for r in rows], "next_cursor": None}
