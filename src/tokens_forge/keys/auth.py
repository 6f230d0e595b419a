"""Authentication of `Authorization: Bearer tf-…` by the SHA-256 of the secret.

A per-process cache keeps hot keys off the database, but every entry lives at most
TF_KEY_CACHE_TTL_S (0.5 s by default), so a revoked key is refused within a second by every
worker process without any cross-process signal. Limits are never taken from this cache: the
spend guard reads them inside the reservation transaction."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from tokens_forge.errors import Unauthorized
from tokens_forge.ids import hash_secret

MAX_SECRET_LENGTH = 128
MAX_CACHE_ENTRIES = 100_000


@dataclass(frozen=True)
class AuthedKey:
    id: str
    account_id: str
    project_id: str
    name: str
    prefix: str
    min_balance_micros: int
    allowed_models: tuple[str, ...] | None
    allowed_route_kinds: tuple[str, ...]
    retry_policy: dict
    fallback_policy: str
    daily_limit_micros: int | None
    total_limit_micros: int | None
    per_request_limit_micros: int | None

    def may_use_model(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


_SQL = """SELECT id, account_id, project_id, name, prefix, min_balance_micros, allowed_models,
                      allowed_route_kinds, retry_policy, fallback_policy, daily_limit_micros,
                      total_limit_micros, per_request_limit_micros
                 FROM api_keys WHERE secret_hash = $1 AND status = 'active'"""


class KeyCache:
    def __init__(self, pg: asyncpg.Pool, ttl_s: float):
        self._pg = pg
        self._ttl = ttl_s
        self._entries: dict[str, tuple[AuthedKey | None, float]] = {}

    async def authenticate(self, secret: str) -> AuthedKey:
        if not secret.startswith("tf-") or len(secret) > MAX_SECRET_LENGTH:
            raise Unauthorized("missing or malformed API key: send Authorization: Bearer tf-…")
        digest = hash_secret(secret)
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[1] > now:
            key = hit[0]
        else:
            key = await self._load(digest)
            if len(self._entries) >= MAX_CACHE_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (key, now + self._ttl)
        if key is None:
            raise Unauthorized("invalid or revoked API key")
        return key

    async def _load(self, digest: str) -> AuthedKey | None:
        row = await self._pg.fetchrow(_SQL, digest)
        return None if row is None else key_from_row(row)


def key_from_row(row) -> AuthedKey:
    """An `api_keys` row (the columns of `_SQL`) as the key requests run with."""
    return AuthedKey(
        id=row["id"], account_id=row["account_id"], project_id=row["project_id"], name=row["name"],
        prefix=row["prefix"], min_balance_micros=row["min_balance_micros"],
        allowed_models=tuple(row["allowed_models"]) if row["allowed_models"] is not None else None,
        allowed_route_kinds=tuple(row["allowed_route_kinds"]), retry_policy=orjson.loads(row["retry_policy"]),
        fallback_policy=row["fallback_policy"], daily_limit_micros=row["daily_limit_micros"],
        total_limit_micros=row["total_limit_micros"], per_request_limit_micros=row["per_request_limit_micros"],
    )


# The console calls the API in process as its signed-in key without holding the key's secret: it
# puts the key it authenticated (from its session) into the ASGI scope under this name. Only code
# in this process can set a scope entry; no HTTP request can.
DELEGATED_KEY_SCOPE = "tokens_forge.console.key"


def delegated_key(scope: Mapping[str, Any]) -> AuthedKey | None:
    key = scope.get(DELEGATED_KEY_SCOPE)
    return key if isinstance(key, AuthedKey) else None
