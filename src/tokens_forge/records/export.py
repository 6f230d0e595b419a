"""Streaming exports (CSV and JSON Lines) in constant memory: rows come from a server-side
cursor and leave as they are read; nothing holds the whole result."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from tokens_forge.errors import InvalidRequest

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
BATCH = 1000


def check_format(fmt: str | None) -> str | None:
    if fmt is None or fmt == "json":
        return None
    if fmt not in FORMATS:
        raise InvalidRequest("format must be json, csv or jsonl", param="format")
    return fmt


async def _rows(engine: AsyncEngine, stmt: Any, params: dict) -> AsyncIterator[Any]:
    async with engine.connect() as conn:
        result = await conn.stream(stmt.execution_options(yield_per=BATCH), params)
        async for partition in result.partitions(BATCH):
            for row in partition:
                yield row


def _csv_line(values: list) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(["" if v is None else ("true" if v else "false") if isinstance(v, bool) else v
                              for v in values])
    return buf.getvalue().encode()


async def _encode(fmt: str, columns: list[str], rows: AsyncIterator[Any],
                  to_dict: Callable[[Any], dict]) -> AsyncIterator[bytes]:
    if fmt == "csv":
        yield _csv_line(columns)
    chunk: list[bytes] = []
    async for row in rows:
        d = to_dict(row)
        chunk.append(_csv_line([d[c] for c in columns]) if fmt == "csv" else orjson.dumps(d) + b"\n")
        if len(chunk) >= 200:
            yield b"".join(chunk)
            chunk = []
    if chunk:
        yield b"".join(chunk)


def export_response(engine: AsyncEngine, fmt: str, name: str, columns: list[str], stmt: Any, params: dict,
                    to_dict: Callable[[Any], dict]) -> StreamingResponse:
    return StreamingResponse(_encode(fmt, columns, _rows(engine, stmt, params), to_dict), media_type=FORMATS[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})
