"""The console's session: who is signed in, and the checks every state-changing request passes.

The session cookie carries the signed-in secret itself (an API key or the admin token), scoped to
`Path=/console`, `HttpOnly` (no script can read it), `SameSite=Strict` (no other site can make the
browser send it) and `Secure` over HTTPS. It is never written into a page or a URL. Holding the
secret rather than a signed reference needs no signing key that every worker process would have
to share, and each request re-authenticates it the way the API does: revoking the key, or changing
TF_ADMIN_TOKEN, signs the console out at once.

CSRF: every POST/PATCH must come from the console's own origin and carry a token derived from the
secret by HMAC (so it proves knowledge of the cookie without revealing it); the sign-in form, made
before any session exists, uses a double-submit token instead."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from tokens_forge.errors import Unauthorized
from tokens_forge.keys.auth import AuthedKey

COOKIE = "tf_console"
SIGNIN_COOKIE = "tf_console_signin"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/console"
MAX_AGE_S = 8 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CSRF_LABEL = b"tokens-forge/console/csrf/v1"


@dataclass(frozen=True)
class Session:
    kind: Literal["key", "admin"]
    secret: str
    key: AuthedKey | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def csrf(self) -> str:
        return csrf_token(self.secret)

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


def csrf_token(secret: str) -> str:
    return hmac.new(secret.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


async def authenticate(state: Any, secret: str) -> Session | None:
    """The admin token (compared in constant time) or an active API key; None for anything else."""
    secret = secret.strip()
    if not secret:
        return None
    admin = state.settings.admin_token
    if admin and hmac.compare_digest(secret.encode(), admin.encode()):
        return Session("admin", secret)
    try:
        key = await state.keys.authenticate(secret)
    except Unauthorized:
        return None
    return Session("key", secret, key)


async def current(request: Request) -> Session | None:
    secret = request.cookies.get(COOKIE)
    return await authenticate(request.app.state, secret) if secret else None


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


def sign_in(response: Response, request: Request, secret: str) -> None:
    _cookie(response, request, COOKIE, secret.strip(), MAX_AGE_S)
    response.delete_cookie(SIGNIN_COOKIE, path=COOKIE_PATH)


def sign_out(response: Response, request: Request) -> None:
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
