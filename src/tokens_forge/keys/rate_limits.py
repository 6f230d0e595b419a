"""A key's rate limits (SPEC §3 `rate_limits`, §11) as the client sees them.

The limits are kept by the database, in the reservation's own transaction (tf_write_batch,
ledger/sql/: one row per limited key, continuous refill, exact across workers and hosts): a
request's first attempt counts one request and `token_cost` tokens; retries and fallbacks count
nothing. What it answers comes back with the reservation as a `RateState`; this module turns it
into OpenAI's `x-ratelimit-*` headers (`headers`, the one place they are built, for every
surface) and a refusal into a 429 `rate_limit_exceeded` (`refusal`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tokens_forge.errors import RateLimited
from tokens_forge.guard.money import Sizing, ceil_div

__all__ = ["SCOPES", "RateState", "duration", "headers", "refusal", "state_of", "token_cost"]

SCOPES = frozenset({"requests_per_minute", "tokens_per_minute"})  # the refused scopes of a rate limit


@dataclass(frozen=True)
class RateState:
    """Where a key's limits stand after a request's first attempt (None: that limit is not set).
    Resets are microseconds until the limit is back to full, as OpenAI's headers report them."""
    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset_us: int | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset_us: int | None = None
    retry_after_us: int | None = None  # a refusal: how long until it would pass (None: never)

    @property
    def any(self) -> bool:
        return self.requests_limit is not None or self.tokens_limit is not None


class Row(Protocol):
    """A row by column name: a mapping, or an asyncpg Record."""

    def __getitem__(self, column: str, /) -> Any: ...


def state_of(row: Row) -> RateState | None:
    """The `rl_` columns of tf_write_batch's row for an open; None when the key has no limits (or
    the attempt was not the request's first)."""
    if row["rl_requests_limit"] is None and row["rl_tokens_limit"] is None:
        return None
    return RateState(row["rl_requests_limit"], row["rl_requests_remaining"], row["rl_requests_reset_us"],
                     row["rl_tokens_limit"], row["rl_tokens_remaining"], row["rl_tokens_reset_us"],
                     row["rl_retry_after_us"])


def token_cost(sizing: Sizing) -> int:
    """What a request counts against tokens_per_minute: the bounds its first reservation was sized
    with (its input bound plus its output bound), known before it is sent, as OpenAI counts a
    request by its prompt and max_tokens. Not reconciled with the usage afterwards."""
    return sizing.input_bound + sizing.output_bound


def duration(us: int) -> str:
    """A reset time as OpenAI writes it: `20ms`, `1s`, `8.571s`, `6m0s`."""
    ms = ceil_div(max(us, 0), 1000)
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    minutes, ms = divmod(ms, 60_000)
    seconds = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def headers(state: RateState | None) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers: the requests trio when the key limits requests, the tokens
    trio when it limits tokens, nothing when it has no limits."""
    out: dict[str, str] = {}
    if state is None:
        return out
    if state.requests_limit is not None:
        out["x-ratelimit-limit-requests"] = str(state.requests_limit)
        out["x-ratelimit-remaining-requests"] = str(state.requests_remaining or 0)
        out["x-ratelimit-reset-requests"] = duration(state.requests_reset_us or 0)
    if state.tokens_limit is not None:
        out["x-ratelimit-limit-tokens"] = str(state.tokens_limit)
        out["x-ratelimit-remaining-tokens"] = str(state.tokens_remaining or 0)
        out["x-ratelimit-reset-tokens"] = duration(state.tokens_reset_us or 0)
    return out


def refusal(scope: str, state: RateState, *, tokens: int, receipt_id: str, answer_headers: dict[str, str]) -> RateLimited:
    """The 429 of a request its key's rate limit refused: what was exceeded, when to come back
    (Retry-After, and retry-after-ms, which OpenAI's SDKs read first), its `rejected` receipt."""
    wait_us = state.retry_after_us
    extra: dict[str, str] = {}
    if scope == "requests_per_minute":
        message = (f"rate limit: this key allows {state.requests_limit} requests per minute and has used them; "
                   f"retry in {duration(wait_us or 0)}.")
    elif wait_us is None:
        message = (f"rate limit: this request counts {tokens} tokens (its input bound plus its output bound), more "
                   f"than this key's {state.tokens_limit} tokens per minute: lower max_tokens or shorten the input.")
        extra["x-should-retry"] = "false"  # waiting cannot help
    else:
        message = (f"rate limit: this request counts {tokens} tokens (its input bound plus its output bound) and "
                   f"this key has {state.tokens_remaining} of its {state.tokens_limit} tokens per minute left; "
                   f"retry in {duration(wait_us)}, or lower max_tokens.")
    if wait_us is not None:
        extra["Retry-After"] = str(max(1, ceil_div(wait_us, 1_000_000)))
        extra["retry-after-ms"] = str(max(1, ceil_div(wait_us, 1000)))
        extra["x-should-retry"] = "true"
    err = RateLimited(message, receipt_id=receipt_id)
    err.headers = {**answer_headers, **extra}
    return err
