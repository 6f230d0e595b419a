from typing import Literal

from pydantic import Field, field_validator

from tokens_forge.schemas import Micros, Name, Strict

RouteKind = Literal["official", "routed"]
RetryOn = Literal["timeout", "connect_error", "http_429", "http_5xx"]
FallbackPolicy = Literal["none", "same_bucket", "any_bucket"]


class KeyLimits(Strict):
    daily_micros: Micros | None = None
    total_micros: Micros | None = None
    per_request_micros: Micros | None = None


class RateLimits(Strict):
    """Per minute, refilled continuously (SPEC §11); null: no limit. The bounds keep the
    database's arithmetic exact (migration 0009)."""
    requests_per_minute: int | None = Field(default=None, ge=1, le=100_000_000)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=10_000_000_000)


class RetryPolicy(Strict):
    max_attempts: int = Field(default=1, ge=1, le=10)
    retry_on: list[RetryOn] = Field(default_factory=list)
    backoff_ms: int = Field(default=0, ge=0, le=60_000)


class KeyCreate(Strict):
    project_id: str = Field(min_length=1, max_length=64)
    name: Name
    limits: KeyLimits = KeyLimits()
    rate_limits: RateLimits | None = None
    min_balance_micros: Micros = 0
    allowed_models: list[Name] | None = None
    allowed_route_kinds: list[RouteKind] = Field(default_factory=lambda: list[RouteKind](["official", "routed"]))
    retry_policy: RetryPolicy = RetryPolicy()
    fallback_policy: FallbackPolicy = "none"

    @field_validator("allowed_route_kinds")
    @classmethod
    def _unique_kinds(cls, v: list[str]) -> list[str]:
        return sorted(set(v))


class KeyUpdate(Strict):
    name: Name | None = None
    limits: KeyLimits | None = None
    rate_limits: RateLimits | None = None  # null: no rate limits; an object: the fields it sends
    min_balance_micros: Micros | None = None
    allowed_models: list[Name] | None = None
    allowed_route_kinds: list[RouteKind] | None = None
    retry_policy: RetryPolicy | None = None
    fallback_policy: FallbackPolicy | None = None
