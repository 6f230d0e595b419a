"""The answer when every attempt failed: which error, from the last attempt's failure. Pure, so
that every surface (chat, responses, embeddings) says the same thing."""

from __future__ import annotations

from tokens_forge.errors import ForgeError, UpstreamError, UpstreamRateLimited, UpstreamTimeout
from tokens_forge.upstream.client import UpstreamFailure


def give_up_error(failure: UpstreamFailure, attempts: int, charged: int) -> ForgeError:
    """504 when the last attempt timed out; 429 `upstream_rate_limited` with the upstream's own
    Retry-After when it was rate limited (so the client's SDK waits as long as the provider
    asks); otherwise 502. The message says what was charged."""
    charged_note = f"charged {charged} micros (see the receipt)"
    if failure.outcome == "timeout":
        return UpstreamTimeout(f"the upstream did not answer in time after {attempts} attempt(s); {charged_note}")
    if failure.status == 429:
        wait = f"retry after {failure.retry_after_header} s" if failure.retry_after_header else "retry later"
        err: ForgeError = UpstreamRateLimited(
            f"the upstream rate-limited the request after {attempts} attempt(s); {wait}; {charged_note}")
        if failure.retry_after_header:
            err.headers["Retry-After"] = failure.retry_after_header
        return err
    return UpstreamError(f"all {attempts} attempt(s) failed, the last with: {failure.message}; {charged_note}")


def upstream_headers(request_id: str | None) -> dict[str, str]:
    """The upstream's x-request-id, passed back so the client can quote it to the provider."""
    return {"X-TF-Upstream-Request-Id": request_id} if request_id else {}
