"""How the console reads and changes anything: through the gateway's own HTTP API, in process.

Pages are rendered from what `/v1` and `/admin/v1` answer (`ConsoleApi`, an httpx client over the
app's ASGI interface, authenticated as the signed-in key or admin), and the browser's scripts reach
the same API through `forward`, which re-addresses a request to the API path with the session's
bearer. So every number on a page is one the API returned: the console keeps no second copy of
any money logic."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tokens_forge.errors import ForgeError

# Of the browser's request, what the API sees: never its cookies or the console's CSRF header.
_DROPPED_HEADERS = frozenset({b"authorization", b"cookie", b"x-csrf-token"})
_SCOPE_KEYS = ("type", "asgi", "http_version", "method", "scheme", "server", "client", "query_string",
               "root_path", "extensions", "state")


class ApiError(ForgeError):
    """An error answer of the API, kept as it said it (status, code, message)."""

    def __init__(self, status_code: int, body: Any):
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        super().__init__(str(err.get("message") or f"the API answered {status_code}"),
                         param=err.get("param"), code=str(err.get("code") or "api_error"),
                         receipt_id=err.get("receipt_id"))
        self.status_code = status_code


class ConsoleApi:
    """The API as the signed-in user: `await api.get("/v1/wallet")`."""

    def __init__(self, app: ASGIApp, secret: str):
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.internal",
                                         headers={"Authorization": f"Bearer {secret}"}, timeout=60)

    async def __aenter__(self) -> ConsoleApi:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self._client.aclose()

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        return self._answer(await self._client.get(path, params=query))

    async def post(self, path: str, body: dict | None = None) -> Any:
        return self._answer(await self._client.post(path, json=body if body is not None else {}))

    @staticmethod
    def _answer(r: httpx.Response) -> Any:
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code >= 400:
            raise ApiError(r.status_code, body)
        return body


class Forward(Response):
    """A response that hands the current request to the app at `/{api_path}`, with
    `Authorization: Bearer <secret>`. The answer, streams included, goes straight back; a browser
    that closes the connection (the playground's Stop button) reaches the API as a disconnect."""

    def __init__(self, api_path: str, secret: str):
        super().__init__()
        self.api_path, self.secret = api_path, secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _DROPPED_HEADERS]
        headers.append((b"authorization", b"Bearer " + self.secret.encode()))
        path = "/" + self.api_path
        inner = {k: scope[k] for k in _SCOPE_KEYS if k in scope}
        inner.update(path=path, raw_path=path.encode(), headers=headers)
        await scope["app"](inner, receive, send)
