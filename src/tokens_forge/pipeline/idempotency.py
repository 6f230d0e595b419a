"""Idempotency-Key on /v1/chat/completions (after Stripe): the first request with a key claims
it; a repeat with the same body replays the stored answer with the same receipt and no new
charge; a repeat while the first still runs gets 409 request_in_progress; the same key with a
different body gets 400. Keys are kept 48 hours (the sweeper deletes older ones).

A claim's lock ends with its request. It is owned by the gateway worker serving the request
(ledger.workers); the request stores its outcome however it ends, and a claim whose worker is
gone is decided from its receipt: nothing charged, the retry runs anew; something charged but no
answer kept (the worker died between the settle and the store), the retry is told so, with the
receipt, and never charged twice. 409 lasts only as long as the request could still be running."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import orjson
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokens_forge.db.retry import backoff_s, is_transient
from tokens_forge.errors import Conflict, ForgeError, InvalidRequest, retry_header
from tokens_forge.upstream.sse import close_body, error_event

log = logging.getLogger("tokens_forge.idempotency")
LOCK_S = 3600  # the lock of a claim that no worker owns (scripts): a backstop
MAX_STORED_BYTES = 8 * 1024 * 1024
REPLAYED = "Idempotent-Replayed"
STORE_RETRY_S = 900.0


@dataclass(frozen=True)
class Claim:
    key_id: str
    idempotency_key: str
    account_id: str


def fingerprint(raw: bytes, preference: str, run_id: str | None, endpoint: str = "chat_completions") -> str:
    h = hashlib.sha256(raw)
    h.update(f"\x00{preference}\x00{run_id or ''}".encode())
    if endpoint != "chat_completions":  # one key on two endpoints is two requests (chat's prints unchanged)
        h.update(f"\x00{endpoint}".encode())
    return h.hexdigest()


_CLAIM = text("""
    INSERT INTO idempotency_keys (key_id, idempotency_key, account_id, fingerprint, owner_id, locked_until)
    VALUES (:k, :i, :a, :f, :o, now() + make_interval(secs => :lock))
    ON CONFLICT (key_id, idempotency_key, account_id) DO NOTHING RETURNING 1""")
_EXISTING = text("""
    SELECT ik.fingerprint, ik.status, ik.response_status, ik.response_headers, ik.response_body, ik.receipt_id,
           CASE WHEN ik.owner_id IS NULL THEN ik.locked_until < now() ELSE tf_owner_gone(ik.owner_id, :dead) END
               AS abandoned,
           r.status AS receipt_status, coalesce(r.total_charged_micros, 0) AS charged
      FROM idempotency_keys ik LEFT JOIN receipts r ON r.id = ik.receipt_id
     WHERE ik.key_id = :k AND ik.idempotency_key = :i
       FOR UPDATE OF ik""")
_RECLAIM = text("""
    UPDATE idempotency_keys SET owner_id = :o, receipt_id = NULL, locked_until = now() + make_interval(secs => :lock)
     WHERE key_id = :k AND idempotency_key = :i""")


async def claim(engine: AsyncEngine, *, key_id: str, account_id: str, idempotency_key: str, print_: str,
                owner_id: str | None = None, dead_after_s: float = 30.0) -> Claim | Response:
    """Claim the key, or answer for it: a stored response, 409 or 400."""
    c = Claim(key_id, idempotency_key, account_id)
    async with engine.begin() as conn:
        won = (await conn.execute(_CLAIM, {"k": key_id, "i": idempotency_key, "a": account_id, "f": print_,
                                           "o": owner_id, "lock": LOCK_S})).first()
        if won:
            return c
        row = (await conn.execute(_EXISTING, {"k": key_id, "i": idempotency_key, "dead": dead_after_s})).one()
        if row.fingerprint != print_:
            raise InvalidRequest("this Idempotency-Key was used with a different request body; use a new key",
                                 param="Idempotency-Key", code="idempotency_key_reused")
        if row.status == "done":
            return replay(row.response_status, row.response_headers, row.response_body)
        if row.abandoned and row.receipt_status != "pending":
            if row.charged == 0:  # the request died and charged nothing: run it anew
                await conn.execute(_RECLAIM, {"o": owner_id, "lock": LOCK_S, "k": key_id, "i": idempotency_key})
                return c
            err = lost_answer(row.receipt_id, int(row.charged))
            await _store(conn, c, err.status_code, err.headers, orjson.dumps(err.body()))
            raise err
        raise Conflict("a request with this Idempotency-Key is still in progress; retry when it has finished",
                       code="request_in_progress", receipt_id=row.receipt_id)


def lost_answer(receipt_id: str, charged: int) -> ForgeError:
    return Conflict(f"the request with this Idempotency-Key completed (receipt {receipt_id}, {charged} micros "
                    f"charged) but the gateway worker serving it stopped before its answer was kept; the receipt "
                    f"tells what happened. Use a new Idempotency-Key to run it again.",
                    code="idempotent_result_unavailable", receipt_id=receipt_id,
                    headers={"X-TF-Receipt-Id": receipt_id, "X-TF-Charged-Micros": str(charged)})


def replay(status: int, headers: dict | None, body: bytes | None) -> Response:
    h = dict(headers or {})
    h[REPLAYED] = "true"
    if status >= 400:
        h.update(retry_header(status))  # a replayed refusal is as final as the first
    media = "text/event-stream" if h.pop("x-stream", None) else "application/json"
    return Response(body or b"", status_code=status, headers=h, media_type=media)


async def attach_receipt(engine: AsyncEngine, c: Claim, receipt_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("""UPDATE idempotency_keys SET receipt_id = :r
                                    WHERE key_id = :k AND idempotency_key = :i"""),
                           {"r": receipt_id, "k": c.key_id, "i": c.idempotency_key})


async def release(engine: AsyncEngine, c: Claim) -> None:
    """Forget a claim whose request charged nothing (refused, failed before forwarding): a retry runs anew."""
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM idempotency_keys WHERE key_id = :k AND idempotency_key = :i"),
                           {"k": c.key_id, "i": c.idempotency_key})


async def _store(conn, c: Claim, status: int, headers: dict[str, str], body: bytes, stream: bool = False) -> None:
    h = {k: v for k, v in headers.items() if k.lower().startswith("x-tf-")}
    if stream:
        h["x-stream"] = "1"
    await conn.execute(text("""
        UPDATE idempotency_keys SET status = 'done', response_status = :s, response_headers = :h,
               response_body = :b, receipt_id = coalesce(receipt_id, :r)
         WHERE key_id = :k AND idempotency_key = :i"""),
        {"s": status, "h": orjson.dumps(h).decode(), "b": body[:MAX_STORED_BYTES],
         "r": h.get("X-TF-Receipt-Id"), "k": c.key_id, "i": c.idempotency_key})


async def store(engine: AsyncEngine, c: Claim, status: int, headers: dict[str, str], body: bytes,
                stream: bool = False) -> None:
    async with engine.begin() as conn:
        await _store(conn, c, status, headers, body, stream)


async def store_until_done(engine: AsyncEngine, c: Claim, status: int, headers: dict[str, str], body: bytes,
                           stream: bool = False, retry_s: float = STORE_RETRY_S) -> None:
    """Store the outcome, retrying while the database is away (a key must not stay claimed)."""
    loop = asyncio.get_running_loop()
    started, attempt = loop.time(), 0
    while True:
        try:
            return await store(engine, c, status, headers, body, stream)
        except Exception as exc:
            if not is_transient(exc) or loop.time() - started > retry_s:
                log.error("the outcome of Idempotency-Key %s… could not be kept: %s", c.idempotency_key[:8],
                          type(exc).__name__)
                return
            attempt += 1
            await asyncio.sleep(backoff_s(attempt))


async def store_error(engine: AsyncEngine, c: Claim, err: ForgeError) -> None:
    if (err.status_code in (401, 402) or err.code == "rate_limit_exceeded"
            or (err.status_code >= 503 and err.code != "upstream_timeout")):
        await release(engine, c)  # nothing was charged: let a retry run again
        return
    await store(engine, c, err.status_code, {**err.headers}, orjson.dumps(err.body()))


async def abandon(engine: AsyncEngine, c: Claim, *, charged: int, receipt_id: str | None) -> None:
    """The request failed in a way that left no answer (a gateway error): release the key when
    nothing was charged, else keep the truth for the retry."""
    with anyio.CancelScope(shield=True):
        try:
            if charged == 0 or receipt_id is None:
                await release(engine, c)
            else:
                err = lost_answer(receipt_id, charged)
                await store(engine, c, err.status_code, err.headers, orjson.dumps(err.body()))
        except Exception as exc:  # the database is away: the claim ages out with its worker
            log.warning("could not release Idempotency-Key %s…: %s", c.idempotency_key[:8], type(exc).__name__)


def _complete(kept: bytes) -> bool:
    """Whether a kept stream ended as an SDK expects: [DONE] or an error event."""
    tail = kept.rstrip()
    return tail.endswith(b"[DONE]") or tail.rsplit(b"\n\n", 1)[-1].startswith(b'data: {"error"')


def tee_stream(engine: AsyncEngine, c: Claim, response: StreamingResponse, jobs: set[asyncio.Task],
               retry_s: float = STORE_RETRY_S) -> StreamingResponse:
    """Relay the stream as it comes, keeping a copy to replay, stored when the stream ends (while the
    database is away, in the background, retried: the client is not kept waiting). A stream cut
    before its end is kept with an error event saying so: a replay must not read as complete."""
    inner = response.body_iterator
    headers = {k.title() if k.startswith("x-tf") else k: v for k, v in response.headers.items()}

    async def body() -> AsyncIterator[bytes]:
        kept = bytearray()
        try:
            async for chunk in inner:
                data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                if len(kept) < MAX_STORED_BYTES:
                    kept += data
                yield data
        finally:
            with anyio.CancelScope(shield=True):
                await close_body(inner)
            if not _complete(bytes(kept)):
                kept += error_event(f"the original stream was cut after {len(kept)} bytes (its client went away); "
                                    "this replay ends where it did", "stream_cut")
            with anyio.CancelScope(shield=True):
                try:
                    await store(engine, c, 200, headers, bytes(kept), stream=True)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    task = asyncio.get_running_loop().create_task(
                        store_until_done(engine, c, 200, headers, bytes(kept), stream=True, retry_s=retry_s))
                    jobs.add(task)
                    task.add_done_callback(jobs.discard)

    response.body_iterator = body()
    return response
