"""One handler per failure family, rendering OpenAI's envelope on every surface:
{"error": {"message", "type", "code", "param"}} (+ receipt_id where a receipt exists)."""

from __future__ import annotations

import logging

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tokens_forge.errors import (
    Conflict,
    ForgeError,
    InvalidRequest,
    NotFound,
    RequestTooLarge,
    ServiceUnavailable,
    receipt_of,
    retry_header,
)
from tokens_forge.observability.request import note_error

log = logging.getLogger("tokens_forge")


class FastJSONResponse(JSONResponse):
    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def render(exc: ForgeError) -> JSONResponse:
    note_error(exc.code, exc.receipt_id)  # for the request's metrics and log line
    # an error that knows better (a request no wait can let through) says so itself
    return FastJSONResponse(exc.body(), status_code=exc.status_code,
                            headers={**retry_header(exc.status_code, exc.code), **exc.headers})


def _field(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def validation_error(exc: RequestValidationError) -> InvalidRequest:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    field = _field(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        return InvalidRequest("the request body is not valid JSON")
    if first.get("type") == "extra_forbidden":
        return InvalidRequest(f"{field}: unknown field", param=field)
    msg = str(first.get("msg", "invalid value"))
    return InvalidRequest(f"{field}: {msg}" if field else msg, param=field)


def _is_bad_data(exc: object) -> bool:
    """SQLSTATE class 22 (data exception): a value of the request PostgreSQL cannot take (a NUL
    character in text, a number out of range): the client's fault, not an outage."""
    code = getattr(exc, "sqlstate", None)
    return isinstance(code, str) and code.startswith("22")


def _bad_data() -> InvalidRequest:
    return InvalidRequest("a value in the request cannot be stored or compared (a NUL character, or a number "
                          "out of range); nothing was written")


def _http_error(exc: StarletteHTTPException) -> ForgeError:
    if exc.status_code == 404:
        return NotFound("no such endpoint")
    if exc.status_code == 413:
        return RequestTooLarge(str(exc.detail))
    if exc.status_code == 400:
        # FastAPI's own body parsing failed other than as a JSON syntax error (the stdlib parser
        # gives up on deep nesting with a RecursionError): still the client's bad body.
        return InvalidRequest("the request body could not be parsed: malformed, or JSON nested too deeply")
    if exc.status_code == 405:
        err: ForgeError = InvalidRequest("method not allowed on this endpoint", code="method_not_allowed")
    else:
        err = ForgeError(str(exc.detail), code="http_error")
    err.status_code = exc.status_code
    return err


def _database_error(orig: object) -> ForgeError:
    if _is_bad_data(orig):
        return _bad_data()
    # The first line of the server's message only: parameters (which may hold secrets) never.
    log.error("database error: %s: %s", type(orig).__name__, str(orig).split("\n")[0][:300])
    return ServiceUnavailable("the database is unavailable; nothing was charged, try again")


def as_forge_error(exc: Exception) -> ForgeError | None:
    """The one mapping of failures to answers, for the exception handlers and the chat fast path.
    An answer for a request whose receipt exists names it."""
    err = _mapped(exc)
    named = receipt_of(exc)
    if err is not None and named is not None and err.receipt_id is None:
        err.receipt_id = named[0]
        err.headers = {**named[1], **err.headers}
    return err


def _mapped(exc: Exception) -> ForgeError | None:
    if isinstance(exc, ForgeError):
        return exc
    if isinstance(exc, RequestValidationError):
        return validation_error(exc)
    if isinstance(exc, StarletteHTTPException):
        return _http_error(exc)
    if isinstance(exc, IntegrityError):
        log.warning("integrity error: %s", type(exc.orig).__name__)
        return Conflict("the change conflicts with the current state; nothing was written")
    if isinstance(exc, DBAPIError):
        return _database_error(exc.orig)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        return _database_error(exc)
    if isinstance(exc, OSError):
        log.error("service unavailable: %s", type(exc).__name__)
        return ServiceUnavailable("a backing service is unavailable; nothing was charged, try again")
    return None


HANDLED = (ForgeError, RequestValidationError, StarletteHTTPException, DBAPIError, asyncpg.PostgresError,
           asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError, OSError)


def install(app: FastAPI) -> None:
    async def handler(_: Request, exc: Exception):
        err = as_forge_error(exc)
        assert err is not None
        return render(err)

    for kind in HANDLED:
        app.add_exception_handler(kind, handler)
