"""Streaming exports (CSV and JSON Lines) in constant memory: rows come from a server-side
cursor and leave as they are read; nothing holds the whole result."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncGenerator, AsyncIterator, Callable
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


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


class _CsvEncoder:
    """One csv.writer over one buffer for the whole export, drained every batch."""

    def __init__(self) -> None:
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf)

    def add(self, values: list) -> None:
        self._writer.writerow([_csv_cell(v) for v in values])

    def drain(self) -> bytes:
        out = self._buf.getvalue().encode()
        self._buf.seek(0)
        self._buf.truncate()
        return out


async def _encode(fmt: str, columns: list[str], rows: AsyncIterator[Any],
                  to_dict: Callable[[Any], dict]) -> AsyncGenerator[bytes, None]:
    if fmt == "csv":
        enc = _CsvEncoder()
        enc.add(columns)
        n = 0
        async for row in rows:
            d = to_dict(row)
            enc.add([d[c] for c in columns])
            n += 1
            if n % 200 == 0:
                yield enc.drain()
        yield enc.drain()
        return
    chunk: list[bytes] = []
    async for row in rows:
        chunk.append(orjson.dumps(to_dict(row)) + b"\n")
        if len(chunk) >= 200:
            yield b"".join(chunk)
            chunk = []
    if chunk:
        yield b"".join(chunk)


async def _after(first: list[bytes], rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        for part in first:
            yield part
        async for part in rest:
            yield part
    finally:
        await rest.aclose()


async def export_response(engine: AsyncEngine, fmt: str, name: str, columns: list[str], stmt: Any, params: dict,
                          to_dict: Callable[[Any], dict]) -> StreamingResponse:
    """The query runs and its first rows are encoded before the answer starts: a failure there
    (a value PostgreSQL refuses, the database down) is an error answer, not a 200 cut short."""
    body = _encode(fmt, columns, _rows(engine, stmt, params), to_dict)
    try:
        first = [await anext(body)]
    except StopAsyncIteration:
        first = []
    except BaseException:
        await body.aclose()
        raise
    return StreamingResponse(_after(first, body), media_type=FORMATS[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})
