"""The console's session: who is signed in, and the checks every state-changing request passes.

The session cookie carries a random session id, never the signed-in secret: the API key or admin
token is read once, by the sign-in request, which opens a session in PostgreSQL
(`keys.sessions`, stored as the id's SHA-256 with an expiry) and answers with the id. The cookie
is scoped to `Path=/console`, `HttpOnly` (no script can read it), `SameSite=Strict` (no other site
can make the browser send it) and `Secure` over HTTPS. Every request looks the session up again
with its key's current status, so sign-out (which revokes the stored session: a copied cookie is
dead too), revoking the key, the expiry, or a new TF_ADMIN_TOKEN end it at once in every worker.

The console reaches the API in process as its session's subject without any secret: a key
session's calls carry the key it authenticated in the ASGI scope (`keys.auth.delegated_key`), an
admin session's the configured admin token, added server-side.

CSRF: every POST/PATCH must come from the console's own origin and carry a token derived from the
session id by HMAC (it proves knowledge of the cookie without revealing it); the sign-in form,
made before any session exists, uses a double-submit token instead."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from tokens_forge.errors import Unauthorized
from tokens_forge.keys import sessions
from tokens_forge.keys.auth import DELEGATED_KEY_SCOPE, AuthedKey

COOKIE = "tf_console"
SIGNIN_COOKIE = "tf_console_signin"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/console"
_CACHED = "tokens_forge.console.session"  # the request's session, once looked up
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CSRF_LABEL = b"tokens-forge/console/csrf/v1"


@dataclass(frozen=True)
class Session:
    kind: Literal["key", "admin"]
    session_id: str = field(repr=False)
    key: AuthedKey | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def account_id(self) -> str:
        """The signed-in key's account: the client pages are reached by key sessions only."""
        assert self.key is not None, "a client page needs a key session"
        return self.key.account_id

    @property
    def csrf(self) -> str:
        return csrf_token(self.session_id)

    @property
    def label(self) -> str:
        if self.key is None:
            return "admin"
        return f"{self.key.name} ({self.key.prefix}…)"

    def may_forward(self, api_path: str) -> bool:
        """The console proxy forwards a key's requests to /v1 only, the admin's to /admin/v1 only."""
        if ".." in api_path.split("/"):
            return False
        return api_path.startswith("admin/v1/" if self.is_admin else "v1/")

    def api_credentials(self, state: Any) -> tuple[dict[str, str], dict[str, Any]]:
        """How an in-process API call says who it is: (headers, ASGI scope entries)."""
        if self.is_admin:
            return {"authorization": f"Bearer {state.settings.admin_token}"}, {}
        return {}, {DELEGATED_KEY_SCOPE: self.key}


@dataclass(frozen=True)
class Identity:
    """Who a secret typed into the sign-in form is (the secret itself is not kept)."""
    kind: Literal["key", "admin"]
    key: AuthedKey | None = None


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


async def authenticate(state: Any, secret: str) -> Identity | None:
    """The admin token (compared in constant time) or an active API key; None for anything else."""
    secret = secret.strip()
    if not secret:
        return None
    admin = state.settings.admin_token
    if admin and hmac.compare_digest(secret.encode(), admin.encode()):
        return Identity("admin")
    try:
        key = await state.keys.authenticate(secret)
    except Unauthorized:
        return None
    return Identity("key", key)


async def current(request: Request) -> Session | None:
    """The request's live session (looked up once per request), or None."""
    if _CACHED in request.scope:
        return request.scope[_CACHED]
    session_id = request.cookies.get(COOKIE)
    session = None
    if session_id:
        state = request.app.state
        stored = await sessions.lookup(state.pg, session_id, state.settings.admin_token)
        if stored is not None:
            session = Session(stored.kind, session_id, stored.key)
    request.scope[_CACHED] = session
    return session


def same_origin(request: Request) -> bool:
    """A browser names the page that sent a POST in `Origin`; its host must be this console's (the
    scheme is not compared: behind a TLS-terminating proxy the app may see plain http). A request
    without the header is no browser's cross-site POST: those always carry it."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "") != ""


def csrf_ok(request: Request, session: Session, token: str | None) -> bool:
    if request.method in SAFE_METHODS:
        return True
    return same_origin(request) and bool(token) and hmac.compare_digest(str(token), session.csrf)


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


async def sign_in(response: Response, request: Request, identity: Identity) -> None:
    """Open a stored session for `identity` and hand the browser its id (and nothing else)."""
    state = request.app.state
    await sessions.forget_expired(state.pg)
    if identity.kind == "admin":
        session_id = await sessions.open_admin_session(state.pg, state.settings.admin_token)
    else:
        assert identity.key is not None  # a key identity carries its key
        session_id = await sessions.open_key_session(state.pg, identity.key)
    _cookie(response, request, COOKIE, session_id, sessions.SESSION_TTL_S)
    response.delete_cookie(SIGNIN_COOKIE, path=COOKIE_PATH)


async def sign_out(response: Response, request: Request) -> None:
    """Revoke the stored session (a copy of the cookie is refused from now on) and clear the cookie."""
    session_id = request.cookies.get(COOKIE)
    if session_id:
        await sessions.revoke(request.app.state.pg, session_id)
    request.scope[_CACHED] = None
    _cookie(response, request, COOKIE, "", 0)


def signin_token(request: Request) -> str:
    """The sign-in form's double-submit token: the one in the cookie, or a fresh one."""
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)


def offer_signin_token(response: Response, request: Request, token: str) -> None:
    _cookie(response, request, SIGNIN_COOKIE, token, 3600)


def signin_token_ok(request: Request, token: str | None) -> bool:
    expected = request.cookies.get(SIGNIN_COOKIE)
    return same_origin(request) and bool(token) and bool(expected) and hmac.compare_digest(
        str(token), str(expected))
