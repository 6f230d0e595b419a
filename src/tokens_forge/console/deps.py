"""The console's dependencies and its route class: who is signed in (and as what), the in-process
API client, and how a page answers when the visitor is signed out or the API refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from tokens_forge.api.errors import validation_error
from tokens_forge.console import directory, render
from tokens_forge.console.api import ConsoleApi
from tokens_forge.console.session import CSRF_HEADER, Session, csrf_ok, current
from tokens_forge.errors import ForgeError

SIGN_IN_URL = "/console/sign-in"
FRAGMENT_HEADER = "x-console-fragment"  # sent by the console's scripts when they want an HTML fragment


class SignInRequired(ForgeError):
    status_code = 401
    code = "console_sign_in_required"
    type = "authentication_error"


class WrongSession(ForgeError):
    status_code = 403
    code = "console_wrong_session"
    type = "permission_error"


class CsrfRefused(ForgeError):
    status_code = 403
    code = "csrf_failed"
    type = "permission_error"


def _wants_fragment(request: Request) -> bool:
    return request.headers.get(FRAGMENT_HEADER) == "1"


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/console/api/")


class ConsoleRoute(APIRoute):
    """Pages answer a signed-out visitor with a redirect to the sign-in page and any refusal
    (the API's, or the console's own) as an HTML page; fragments as an HTML fragment; the API
    proxy in the API's JSON envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as invalid:
                return await refusal(request, validation_error(invalid))
            except ForgeError as exc:
                return await refusal(request, exc)

        return console_handler


async def refusal(request: Request, exc: ForgeError) -> Response:
    if _wants_json(request):
        return Response(orjson.dumps(exc.body()), status_code=exc.status_code, media_type="application/json")
    if isinstance(exc, SignInRequired) and not _wants_fragment(request):
        return RedirectResponse(SIGN_IN_URL, status_code=303)
    template = "_error.html" if _wants_fragment(request) else "error.html"
    session = await current(request) if not isinstance(exc, SignInRequired) else None
    return render.html(request, template, session, status_code=exc.status_code, error=exc)


async def _session(request: Request) -> Session:
    session = await current(request)
    if session is None:
        raise SignInRequired("you are signed out: sign in again")
    if not csrf_ok(request, session, request.headers.get(CSRF_HEADER)):
        raise CsrfRefused("the request did not come from a console page (missing or wrong CSRF token)")
    return session


async def _key_session(session: Annotated[Session, Depends(_session)]) -> Session:
    if session.is_admin:
        raise WrongSession("this page shows one API key's view: sign in with an API key")
    return session


async def _admin_session(session: Annotated[Session, Depends(_session)]) -> Session:
    if not session.is_admin:
        raise WrongSession("this page is for operators: sign in with the admin token")
    return session


async def _api(request: Request, session: Annotated[Session, Depends(_session)]) -> AsyncIterator[ConsoleApi]:
    async with ConsoleApi(request.app, *session.api_credentials(request.app.state)) as api:
        yield api


async def page_names(request: Request, account_id: str | None) -> directory.Names:
    """The names a page shows beside ids: one account's keys and projects (None: all), every route."""
    async with request.app.state.engine.connect() as conn:
        return await directory.names(conn, account_id)


SessionDep = Annotated[Session, Depends(_session)]
KeySessionDep = Annotated[Session, Depends(_key_session)]
AdminSessionDep = Annotated[Session, Depends(_admin_session)]
ApiDep = Annotated[ConsoleApi, Depends(_api)]
