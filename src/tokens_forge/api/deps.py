"""FastAPI dependencies as Annotated aliases. Everything stateful lives on app.state."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tokens_forge.config import Settings
from tokens_forge.errors import Unauthorized
from tokens_forge.keys.auth import AuthedKey, delegated_key
from tokens_forge.observability.request import note_key


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


def require_admin(request: Request) -> str:
    expected = request.app.state.settings.admin_token
    token = bearer(request)
    if not expected:
        raise Unauthorized("the admin API is disabled: set TF_ADMIN_TOKEN", code="invalid_api_key")
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("missing or wrong admin token (Authorization: Bearer $TF_ADMIN_TOKEN)",
                           code="invalid_api_key")
    return "admin"


async def require_key(request: Request) -> AuthedKey:
    """The bearer's key, or the key the console signed in as (its in-process calls carry no secret)."""
    key = delegated_key(request.scope) or await request.app.state.keys.authenticate(bearer(request))
    note_key(key.id)
    return key


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
AdminDep = Annotated[str, Depends(require_admin)]
ApiKeyDep = Annotated[AuthedKey, Depends(require_key)]
