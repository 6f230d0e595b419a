"""The console at /console: sign-in and sign-out, the API proxy the pages' scripts use, the
static assets, and the page routers (client views for an API key, admin views for the token)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from tokens_forge.console import admin_pages, client_pages, record_pages, render, run_pages
from tokens_forge.console.api import Forward
from tokens_forge.console.deps import ConsoleRoute, CsrfRefused, SessionDep, WrongSession
from tokens_forge.console.session import (
    authenticate,
    csrf_ok,
    current,
    offer_signin_token,
    sign_in,
    sign_out,
    signin_token,
    signin_token_ok,
)

MAX_FORM_BYTES = 4096

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
router.routes.append(Mount("/console/static", StaticFiles(directory=Path(__file__).parent / "static"),
                           name="console-static"))


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the sign-in and sign-out forms), without a multipart parser."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _signin_page(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    token = signin_token(request)
    response = render.html(request, "signin.html", None, status_code=status_code, signin_token=token, error=error)
    offer_signin_token(response, request, token)
    return response


@router.get("/console/sign-in")
async def sign_in_page(request: Request) -> Response:
    if await current(request) is not None:
        return RedirectResponse("/console", status_code=303)
    return _signin_page(request)


@router.post("/console/sign-in")
async def sign_in_submit(request: Request) -> Response:
    form = await _form(request)
    if not signin_token_ok(request, form.get("csrf")):
        return _signin_page(request, error="The form expired or did not come from this page; try again.",
                            status_code=403)
    identity = await authenticate(request.app.state, form.get("secret", ""))
    if identity is None:
        return _signin_page(request, error="That is neither an active API key nor the admin token.",
                            status_code=401)
    response = RedirectResponse("/console/admin" if identity.kind == "admin" else "/console", status_code=303)
    await sign_in(response, request, identity)
    return response


@router.post("/console/sign-out")
async def sign_out_submit(request: Request) -> Response:
    session = await current(request)
    if session is not None and not csrf_ok(request, session, (await _form(request)).get("csrf")):
        raise CsrfRefused("sign-out must come from a console page")
    response = RedirectResponse("/console/sign-in", status_code=303)
    await sign_out(response, request)
    return response


@router.api_route("/console/api/{api_path:path}", methods=["GET", "POST", "PATCH"])
async def api_proxy(request: Request, api_path: str, session: SessionDep) -> Response:
    """The pages' scripts call the API here: same origin, as the session's key or admin, attached
    server-side. A key reaches /v1 only, the admin /admin/v1 only."""
    if not session.may_forward(api_path):
        raise WrongSession(f"this session cannot call /{api_path}")
    return Forward(api_path, *session.api_credentials(request.app.state))


for pages in (client_pages, run_pages, record_pages, admin_pages):
    router.include_router(pages.router)
