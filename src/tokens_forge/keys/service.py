"""API keys: created with a secret shown once, stored as a SHA-256 hash with a short visible
prefix; limits and policies editable; revocation is final."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tokens_forge.accounts.service import get_project
from tokens_forge.audit.service import record
from tokens_forge.db.repository import get_or_404
from tokens_forge.errors import Conflict
from tokens_forge.ids import hash_secret, new_id, new_key_secret, secret_prefix
from tokens_forge.keys.models import ApiKey
from tokens_forge.keys.schemas import KeyCreate, KeyUpdate
from tokens_forge.keys.sessions import revoke_for_key


def key_out(k: ApiKey) -> dict:
    return {
        "id": k.id, "object": "api_key", "account_id": k.account_id, "project_id": k.project_id,
        "name": k.name, "prefix": k.prefix,
        "limits": {"daily_micros": k.daily_limit_micros, "total_micros": k.total_limit_micros,
                   "per_request_micros": k.per_request_limit_micros},
        "rate_limits": {"requests_per_minute": k.requests_per_minute, "tokens_per_minute": k.tokens_per_minute},
        "min_balance_micros": k.min_balance_micros, "allowed_models": k.allowed_models,
        "allowed_route_kinds": k.allowed_route_kinds, "retry_policy": k.retry_policy,
        "fallback_policy": k.fallback_policy, "status": k.status,
        "created_at": k.created_at.isoformat(), "updated_at": k.updated_at.isoformat(),
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
    }


async def get_key(session: AsyncSession, key_id: str, *, lock: bool = False) -> ApiKey:
    return await get_or_404(session, ApiKey, key_id, what="key", lock=lock)


async def create_key(session: AsyncSession, body: KeyCreate, actor: str) -> tuple[ApiKey, str]:
    project = await get_project(session, body.project_id)
    secret = new_key_secret()
    key = ApiKey(
        id=new_id("key"), account_id=project.account_id, project_id=project.id, name=body.name,
        secret_hash=hash_secret(secret), prefix=secret_prefix(secret),
        daily_limit_micros=body.limits.daily_micros, total_limit_micros=body.limits.total_micros,
        per_request_limit_micros=body.limits.per_request_micros, min_balance_micros=body.min_balance_micros,
        requests_per_minute=body.rate_limits.requests_per_minute if body.rate_limits else None,
        tokens_per_minute=body.rate_limits.tokens_per_minute if body.rate_limits else None,
        allowed_models=body.allowed_models, allowed_route_kinds=body.allowed_route_kinds,
        retry_policy=body.retry_policy.model_dump(), fallback_policy=body.fallback_policy,
    )
    session.add(key)
    await session.flush()
    await session.refresh(key)
    await record(session, actor=actor, action="key.create", target_type="api_key", target_id=key.id,
                 before=None, after=key_out(key))
    return key, secret


async def update_key(session: AsyncSession, key_id: str, body: KeyUpdate, actor: str) -> ApiKey:
    key = await get_key(session, key_id, lock=True)
    if key.status == "revoked":
        raise Conflict(f"key {key_id} is revoked and cannot be changed", code="key_revoked")
    before = key_out(key)
    sent = body.model_fields_set
    if body.limits is not None:
        lim = body.limits.model_fields_set
        if "daily_micros" in lim:
            key.daily_limit_micros = body.limits.daily_micros
        if "total_micros" in lim:
            key.total_limit_micros = body.limits.total_micros
        if "per_request_micros" in lim:
            key.per_request_limit_micros = body.limits.per_request_micros
    if "rate_limits" in sent:
        _set_rate_limits(key, body)
    for field in ("name", "min_balance_micros", "allowed_route_kinds", "fallback_policy"):
        if field in sent and getattr(body, field) is not None:
            setattr(key, field, getattr(body, field))
    if "allowed_models" in sent:
        key.allowed_models = body.allowed_models
    if body.retry_policy is not None:
        key.retry_policy = body.retry_policy.model_dump()
    key.updated_at = datetime.now(UTC)
    await session.flush()
    await record(session, actor=actor, action="key.update", target_type="api_key", target_id=key.id,
                 before=before, after=key_out(key))
    return key


def _set_rate_limits(key: ApiKey, body: KeyUpdate) -> None:
    """`rate_limits: null` lifts both; an object changes the fields it sends (null lifts one)."""
    limits = body.rate_limits
    if limits is None:
        key.requests_per_minute = key.tokens_per_minute = None
        return
    if "requests_per_minute" in limits.model_fields_set:
        key.requests_per_minute = limits.requests_per_minute
    if "tokens_per_minute" in limits.model_fields_set:
        key.tokens_per_minute = limits.tokens_per_minute


async def revoke_key(session: AsyncSession, key_id: str, actor: str) -> ApiKey:
    key = await get_key(session, key_id, lock=True)
    if key.status == "revoked":
        return key
    before = key_out(key)
    now = datetime.now(UTC)
    key.status, key.revoked_at, key.updated_at = "revoked", now, now
    await session.flush()
    await revoke_for_key(session, key.id)
    await record(session, actor=actor, action="key.revoke", target_type="api_key", target_id=key.id,
                 before=before, after=key_out(key))
    return key
