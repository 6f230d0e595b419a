from typing import Literal

from pydantic import Field, field_validator

from tokens_forge.config import is_gateway_setting
from tokens_forge.guard.money import IMAGE_TOKENS_HIGH, IMAGE_TOKENS_LOW
from tokens_forge.schemas import Micros, Name, Strict

RouteKind = Literal["official", "routed"]
BUCKET_OF = {"official": "credit", "routed": "routed"}
API_NAMES = ("chat_completions", "responses", "embeddings")  # also the stored order (migration 0007)
Api = Literal["chat_completions", "responses", "embeddings"]
OutputCapParam = Literal["max_completion_tokens", "max_tokens"]


def canonical_apis(apis: list[str] | None) -> list[str] | None:
    """A non-empty set of upstream APIs, without duplicates, in the stored order."""
    if apis is None:
        return None
    if not apis:
        raise ValueError("must name at least one of chat_completions, responses, embeddings")
    return [a for a in API_NAMES if a in apis]


def not_a_gateway_setting(variable: str | None) -> str | None:
    """A route's key variable may not be one the gateway reads its own settings from."""
    if variable is not None and is_gateway_setting(variable):
        raise ValueError(f"{variable} holds a setting of the gateway itself, never an upstream's key")
    return variable


class PriceIn(Strict):
    input_per_mtok: Micros
    output_per_mtok: Micros


class FailedRequestCharge(Strict):
    mode: Literal["none", "input_tokens", "flat"] = "none"
    flat_micros: Micros = 0


class MediaBoundsIn(Strict):
    """The most tokens one media part can bill on this route: the reservation adds them per part
    (the bytes of a picture or a file say nothing of what it bills)."""
    image_low_tokens: int = Field(default=IMAGE_TOKENS_LOW, ge=0, le=10_000_000)
    image_high_tokens: int = Field(default=IMAGE_TOKENS_HIGH, ge=0, le=10_000_000)
    file_tokens: int | None = Field(default=None, ge=0, le=100_000_000,
                                    description="per file or audio part; null: the route refuses them")


class RouteCreate(Strict):
    model: Name
    kind: RouteKind
    base_url: str = Field(min_length=8, max_length=500)
    upstream_model: Name
    upstream_api_key: str | None = Field(default=None, max_length=4000)
    upstream_api_key_env: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    price: PriceIn
    failed_request_charge: FailedRequestCharge = FailedRequestCharge()
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    priority: int = Field(default=100, ge=-1_000_000, le=1_000_000)
    enabled: bool = True
    media_bounds: MediaBoundsIn = MediaBoundsIn()
    apis: list[Api] = Field(default_factory=lambda: list[Api](["chat_completions"]), max_length=3)
    output_cap_param: OutputCapParam = "max_completion_tokens"

    _canonical_apis = field_validator("apis")(canonical_apis)
    _key_variable = field_validator("upstream_api_key_env")(not_a_gateway_setting)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class RouteUpdate(Strict):
    base_url: str | None = Field(default=None, min_length=8, max_length=500)
    upstream_model: Name | None = None
    upstream_api_key: str | None = Field(default=None, max_length=4000)
    upstream_api_key_env: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    price: PriceIn | None = None
    failed_request_charge: FailedRequestCharge | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    priority: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    enabled: bool | None = None
    media_bounds: MediaBoundsIn | None = None
    apis: list[Api] | None = Field(default=None, max_length=3)
    output_cap_param: OutputCapParam | None = None

    _canonical_apis = field_validator("apis")(canonical_apis)
    _key_variable = field_validator("upstream_api_key_env")(not_a_gateway_setting)
    _check_url = field_validator("base_url")(RouteCreate._http_url.__func__)  # type: ignore[attr-defined]
