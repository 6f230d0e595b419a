"""Idempotency-Key on /v1/chat/completions (after Stripe): the first request with a key claims
it; a repeat with the same body replays the stored answer with the same receipt and no new
charge; a repeat while the first still runs gets 409 request_in_progress; the same key with a
different body gets 400. Keys are kept 48 hours (the sweeper deletes older ones)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import anyio
import orjson
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokens_forge.errors import Conflict, ForgeError, InvalidRequest

LOCK_S = 3600  # a claim older than this belongs to a crashed worker
MAX_STORED_BYTES = 8 * 1024 * 1024
REPLAYED = "Idempotent-Replayed"


@dataclass(frozen=True)
class Claim:
    key_id: str
    idempotency_key: str
    account_id: str


def fingerprint(raw: bytes, preference: str, run_id: str | None) -> str:
    h = hashlib.sha256(raw)
    h.update(f"\x00{preference}\x00{run_id or ''}".encode())
    return h.hexdigest()


async def claim(engine: AsyncEngine, *, key_id: str, account_id: str, idempotency_key: str,
                print_: str) -> Claim | Response:
    """Claim the key, or answer for it: a stored response, 409 or 400."""
    async with engine.begin() as conn:
        won = (await conn.execute(text("""
            INSERT INTO idempotency_keys (key_id, idempotency_key, account_id, fingerprint, locked_until)
            VALUES (:k, :i, :a, :f, now() + make_interval(secs => :lock))
            ON CONFLICT (key_id, idempotency_key) DO NOTHING RETURNING 1"""),
            {"k": key_id, "i": idempotency_key, "a": account_id, "f": print_, "lock": LOCK_S})).first()
        if won:
            return Claim(key_id, idempotency_key, account_id)
        row = (await conn.execute(text("""
            SELECT fingerprint, status, response_status, response_headers, response_body, receipt_id,
                   locked_until < now() AS stale
              FROM idempotency_keys WHERE key_id = :k AND idempotency_key = :i FOR UPDATE"""),
            {"k": key_id, "i": idempotency_key})).one()
        if row.fingerprint != print_:
            raise InvalidRequest("this Idempotency-Key was used with a different request body; use a new key",
                                 param="Idempotency-Key", code="idempotency_key_reused")
        if row.status == "done":
            return replay(row.response_status, row.response_headers, row.response_body)
        if row.stale and row.receipt_id is None:
            await conn.execute(text("""UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => :lock)
                                        WHERE key_id = :k AND idempotency_key = :i"""),
                               {"k": key_id, "i": idempotency_key, "lock": LOCK_S})
            return Claim(key_id, idempotency_key, account_id)
        raise Conflict("a request with this Idempotency-Key is still in progress; retry when it has finished",
                       code="request_in_progress", receipt_id=row.receipt_id)


def replay(status: int, headers: dict | None, body: bytes | None) -> Response:
    h = dict(headers or {})
    h[REPLAYED] = "true"
    media = "text/event-stream" if h.pop("x-stream", None) else "application/json"
    return Response(body or b"", status_code=status, headers=h, media_type=media)


async def attach_receipt(engine: AsyncEngine, c: Claim, receipt_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("""UPDATE idempotency_keys SET receipt_id = :r
                                    WHERE key_id = :k AND idempotency_key = :i"""),
                           {"r": receipt_id, "k": c.key_id, "i": c.idempotency_key})


async def release(engine: AsyncEngine, c: Claim) -> None:
    """Forget a claim whose request charged nothing (refused by the guard): a retry runs anew."""
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM idempotency_keys WHERE key_id = :k AND idempotency_key = :i"),
                           {"k": c.key_id, "i": c.idempotency_key})


async def store(engine: AsyncEngine, c: Claim, status: int, headers: dict[str, str], body: bytes,
                stream: bool = False) -> None:
    h = {k: v for k, v in headers.items() if k.lower().startswith("x-tf-")}
    if stream:
        h["x-stream"] = "1"
    async with engine.begin() as conn:
        await conn.execute(text("""
            UPDATE idempotency_keys SET status = 'done', response_status = :s, response_headers = :h,
                   response_body = :b, receipt_id = coalesce(receipt_id, :r)
             WHERE key_id = :k AND idempotency_key = :i"""),
            {"s": status, "h": orjson.dumps(h).decode(), "b": body[:MAX_STORED_BYTES],
             "r": h.get("X-TF-Receipt-Id"), "k": c.key_id, "i": c.idempotency_key})


async def store_error(engine: AsyncEngine, c: Claim, err: ForgeError) -> None:
    if err.status_code == 402 or err.status_code == 401 or (err.status_code >= 503 and err.code != "upstream_timeout"):
        await release(engine, c)  # nothing was charged: let a retry run again
        return
    await store(engine, c, err.status_code, {**err.headers}, orjson.dumps(err.body()))


def tee_stream(engine: AsyncEngine, c: Claim, response: StreamingResponse) -> StreamingResponse:
    """Relay the stream as it comes, keeping a copy to replay; stored when the stream ends."""
    inner = response.body_iterator
    headers = {k: v for k, v in response.headers.items()}

    async def body():
        kept = bytearray()
        try:
            async for chunk in inner:
                if len(kept) < MAX_STORED_BYTES:
                    kept += chunk if isinstance(chunk, bytes) else chunk.encode()
                yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                await inner.aclose()
                await store(engine, c, 200, {k.title() if k.startswith("x-tf") else k: v for k, v in headers.items()},
                            bytes(kept), stream=True)

    response.body_iterator = body()
    return response
