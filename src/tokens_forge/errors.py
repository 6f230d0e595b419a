"""One exception tree for the whole service. No web framework here: each HTTP surface renders
these in its own envelope (OpenAI's for /v1, the same shape for /admin/v1)."""

from __future__ import annotations

from typing import Any


class ForgeError(Exception):
    status_code = 500
    code = "internal_error"
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, receipt_id: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.receipt_id = receipt_id
        self.headers = headers or {}
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code, "param": self.param}
        out: dict[str, Any] = {"error": err}
        if self.receipt_id:
            err["receipt_id"] = self.receipt_id
            out["receipt_id"] = self.receipt_id
        return out


def name_receipt(exc: Exception, receipt_id: str, headers: dict[str, str]) -> None:
    """An unexpected failure after a request's receipt was written (the database went away, say):
    whatever answer it becomes must still name the receipt (see `receipt_of`)."""
    exc.__dict__["tf_receipt"] = (receipt_id, dict(headers))


def receipt_of(exc: BaseException) -> tuple[str, dict[str, str]] | None:
    return exc.__dict__.get("tf_receipt") if hasattr(exc, "__dict__") else None


class InvalidRequest(ForgeError):
    status_code = 400
    code = "invalid_request"
    type = "invalid_request_error"


class Unauthorized(ForgeError):
    status_code = 401
    code = "invalid_api_key"
    type = "authentication_error"


class Forbidden(ForgeError):
    status_code = 403
    code = "model_not_allowed"
    type = "permission_error"


class NotFound(ForgeError):
    status_code = 404
    code = "not_found"
    type = "invalid_request_error"


class SpendGuardError(ForgeError):
    status_code = 402
    code = "spend_limit_exceeded"
    type = "spend_guard_error"


class Conflict(ForgeError):
    status_code = 409
    code = "conflict"
    type = "invalid_request_error"


class RequestTooLarge(ForgeError):
    status_code = 413
    code = "request_too_large"
    type = "invalid_request_error"


class UpstreamRateLimited(ForgeError):
    status_code = 429
    code = "upstream_rate_limited"
    type = "rate_limit_error"


class RateLimited(ForgeError):
    """The key's own rate limits (SPEC §11); an upstream's 429 is UpstreamRateLimited."""
    status_code = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"


class UpstreamError(ForgeError):
    status_code = 502
    code = "upstream_error"
    type = "upstream_error"


class NoHealthyRoute(ForgeError):
    status_code = 503
    code = "no_healthy_route"
    type = "upstream_error"


class UpstreamTimeout(ForgeError):
    status_code = 504
    code = "upstream_timeout"
    type = "upstream_error"


class ServiceUnavailable(ForgeError):
    status_code = 503
    code = "service_unavailable"
    type = "server_error"


RETRYABLE_CODES = frozenset({"request_in_progress"})


def should_retry(status: int, code: str | None = None) -> bool:
    """Whether repeating the same request can succeed (SPEC §6), told to OpenAI's SDKs in
    `x-should-retry`: they retry 409 and 5xx by default, which for a refusal (a paused run, a
    spent cap) only writes more refused receipts. 429, 503 and a request still in progress pass
    with time; a gateway or upstream failure (5xx) may too."""
    return status == 429 or status >= 500 or code in RETRYABLE_CODES


def retry_header(status: int, code: str | None = None) -> dict[str, str]:
    return {"x-should-retry": "true" if should_retry(status, code) else "false"}
