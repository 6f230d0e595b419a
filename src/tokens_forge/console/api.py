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


class _WithScope:
    """The app, called with extra ASGI scope entries (the console's delegated key)."""

    def __init__(self, app: ASGIApp, extra: dict[str, Any]):
        self.app, self.extra = app, extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app({**scope, **self.extra}, receive, send)


class ConsoleApi:
    """The API as the signed-in user: `await api.get("/v1/wallet")`. `headers` and `scope` say who
    that is (`Session.api_credentials`)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str], scope: dict[str, Any]):
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=_WithScope(app, scope)),
                                         base_url="http://console.internal", headers=headers, timeout=60)

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
    """A response that hands the current request to the app at `/{api_path}` as the session's
    subject (`headers` and `scope` from `Session.api_credentials`). The answer, streams included,
    goes straight back; a browser that closes the connection (the playground's Stop button)
    reaches the API as a disconnect."""

    def __init__(self, api_path: str, headers: dict[str, str], scope: dict[str, Any]):
        super().__init__()
        self.api_path, self.extra_headers, self.extra_scope = api_path, headers, scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _DROPPED_HEADERS]
        headers += [(k.encode(), v.encode()) for k, v in self.extra_headers.items()]
        path = "/" + self.api_path
        inner = {k: scope[k] for k in _SCOPE_KEYS if k in scope}
        inner.update(path=path, raw_path=path.encode(), headers=headers, **self.extra_scope)
        await scope["app"](inner, receive, send)
