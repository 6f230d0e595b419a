"""Console sessions in PostgreSQL (`console_sessions`, migration 0008).

The browser holds a random session id (256 bits); the table keeps only its SHA-256, the key (or
the admin) it signs in, and its expiry. The signed-in secret itself is read once, by the sign-in
request, and never stored, sent back or put in a cookie. Every console request looks its session
up again, joined with the key's current status: a session of a revoked key, an expired one, or one
revoked at sign-out is refused at once, in every worker. An admin session is bound to the admin
token it was opened with (`admin_check`, an HMAC of the session id under that token), so changing
TF_ADMIN_TOKEN ends every admin session too."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tokens_forge.keys.auth import AuthedKey, key_from_row

SESSION_TTL_S = 8 * 3600
SESSION_ID_BYTES = 32


@dataclass(frozen=True)
class StoredSession:
    kind: Literal["key", "admin"]
    key: AuthedKey | None


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def session_hash(session_id: str) -> str:
    # 256 random bits: a plain SHA-256 cannot be reversed or brute-forced.
    return hashlib.sha256(session_id.encode()).hexdigest()


def admin_check(session_id: str, admin_token: str) -> str:
    return hmac.new(admin_token.encode(), session_id.encode(), hashlib.sha256).hexdigest()


async def open_key_session(pg: asyncpg.Pool, key: AuthedKey) -> str:
    session_id = new_session_id()
    await pg.execute("""
        INSERT INTO console_sessions (token_hash, kind, account_id, key_id, expires_at)
        VALUES ($1, 'key', $2, $3, now() + make_interval(secs => $4))""",
                     session_hash(session_id), key.account_id, key.id, float(SESSION_TTL_S))
    return session_id


async def open_admin_session(pg: asyncpg.Pool, admin_token: str) -> str:
    session_id = new_session_id()
    await pg.execute("""
        INSERT INTO console_sessions (token_hash, kind, admin_check, expires_at)
        VALUES ($1, 'admin', $2, now() + make_interval(secs => $3))""",
                     session_hash(session_id), admin_check(session_id, admin_token), float(SESSION_TTL_S))
    return session_id


_LOOKUP = """
    SELECT s.kind, s.admin_check, k.id, k.account_id, k.project_id, k.name, k.prefix, k.min_balance_micros,
           k.allowed_models, k.allowed_route_kinds, k.retry_policy, k.fallback_policy, k.daily_limit_micros,
           k.total_limit_micros, k.per_request_limit_micros, k.status
      FROM console_sessions s LEFT JOIN api_keys k ON k.id = s.key_id
     WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()"""


async def lookup(pg: asyncpg.Pool, session_id: str, admin_token: str | None) -> StoredSession | None:
    """The live session of this id, or None (unknown, expired, revoked, its key revoked, or an
    admin session of another admin token)."""
    if not session_id or len(session_id) > 100:
        return None
    row = await pg.fetchrow(_LOOKUP, session_hash(session_id))
    if row is None:
        return None
    if row["kind"] == "admin":
        if not admin_token:
            return None
        good = hmac.compare_digest(row["admin_check"], admin_check(session_id, admin_token))
        return StoredSession("admin", None) if good else None
    if row["status"] != "active":
        return None
    return StoredSession("key", key_from_row(row))


async def revoke(pg: asyncpg.Pool, session_id: str, reason: str = "sign_out") -> bool:
    done = await pg.execute("""
        UPDATE console_sessions SET revoked_at = now(), revoked_reason = $2
         WHERE token_hash = $1 AND revoked_at IS NULL""", session_hash(session_id), reason)
    return done.endswith(" 1")


async def revoke_for_key(session: AsyncSession, key_id: str) -> None:
    """In the key's revocation transaction: every console session of the key ends with it."""
    await session.execute(text("""
        UPDATE console_sessions SET revoked_at = now(), revoked_reason = 'key_revoked'
         WHERE key_id = :k AND revoked_at IS NULL"""), {"k": key_id})


async def forget_expired(pg: asyncpg.Pool, limit: int = 1000) -> None:
    """Expired sessions are useless; drop a batch of them now and then (at sign-in)."""
    await pg.execute("""
        DELETE FROM console_sessions WHERE token_hash IN (
            SELECT token_hash FROM console_sessions WHERE expires_at < now() - interval '1 day' LIMIT $1)""", limit)
