"""What one HTTP request was, as the metrics, the log line and the span tell it.

The middleware (observability/middleware.py) makes a `RequestObs` for every request and puts it
in a context variable; the pipeline fills in what only it knows (the receipt, the key, the model,
the route, the attempts, the charge) through `current()`; the middleware reports it once the
answer has been sent in full (for a stream: after its settle). Nothing here is a secret, a prompt
or an answer: ids, names, counts and micros only."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["RequestObs", "current", "endpoint_of"]

# The endpoint label of the metrics: a fixed, small set (never a raw path, which holds ids).
_EXACT = {
    "/v1/chat/completions": "chat_completions",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/preflight": "preflight",
    "/v1/wallet": "wallet",
    "/v1/wallet/ledger": "wallet_ledger",
    "/v1/usage": "usage",
    "/v1/failures": "failures",
    "/v1/routes/health": "routes_health",
    "/healthz": "healthz",
    "/metrics": "metrics",
}
_PREFIXES = (
    ("/v1/models", "models"),
    ("/v1/runs", "runs"),
    ("/v1/receipts", "receipts"),
    ("/admin/", "admin"),
    ("/console", "console"),
    ("/mock/", "mock"),
)
# Endpoints whose every answer is an LLM call: these are the ones with a GenAI span name.
LLM_ENDPOINTS = {"chat_completions": "chat", "responses": "chat", "embeddings": "embeddings"}


def endpoint_of(path: str) -> str:
    exact = _EXACT.get(path)
    if exact is not None:
        return exact
    for prefix, name in _PREFIXES:
        if path.startswith(prefix):
            return name
    return "other"


class RequestObs:
    """Filled in as the request goes; read once when it ends. Plain attributes (slots): the
    pipeline sets what it knows, anything left None is simply not reported."""

    __slots__ = ("attempts", "bucket", "charged_micros", "endpoint", "error_code", "input_tokens", "key_id",
                 "model", "output_tokens", "receipt_id", "reserved_micros", "route_id", "route_kind", "run_id",
                 "span", "stream")

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.receipt_id: str | None = None
        self.key_id: str | None = None
        self.model: str | None = None          # set only once it names a known model (never free text)
        self.route_id: str | None = None       # the route of the last attempt
        self.route_kind: str | None = None
        self.bucket: str | None = None
        self.run_id: str | None = None
        self.stream: bool | None = None
        self.attempts = 0
        self.reserved_micros: int | None = None
        self.charged_micros: int | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.error_code: str | None = None
        self.span = None                       # the request's span when tracing is on

    def fields(self) -> dict:
        """The request's facts for the log line and the span: only what is known."""
        out: dict = {}
        for name in ("receipt_id", "key_id", "run_id", "model", "route_id", "route_kind", "bucket", "stream",
                     "reserved_micros", "charged_micros", "input_tokens", "output_tokens", "error_code"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.attempts:
            out["attempts"] = self.attempts
        return out


_CURRENT: ContextVar[RequestObs | None] = ContextVar("tf_request_obs", default=None)


def current() -> RequestObs | None:
    """The observation of the request being served, or None outside one (background work)."""
    return _CURRENT.get()


def note_error(code: str, receipt_id: str | None = None) -> None:
    """Called where an error answer is rendered: the code (and the receipt of a refusal) go to
    the metrics and the log line."""
    obs = _CURRENT.get()
    if obs is not None:
        obs.error_code = code
        if receipt_id is not None:
            obs.receipt_id = receipt_id


def note_key(key_id: str) -> None:
    """Called where a client's key is authenticated: every request's log line names its key."""
    obs = _CURRENT.get()
    if obs is not None:
        obs.key_id = key_id
