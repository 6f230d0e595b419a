"""Request bodies of the preflight and the runs API (strict: an unknown field is a 400)."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field, field_validator

from tokens_forge.pipeline.request import MAX_TOKENS_LIMIT
from tokens_forge.schemas import Micros, Name, Strict

Mode = Literal["quick", "standard", "deep"]
RoutePreference = Literal["official", "routed", "auto"]


class PreflightRequest(Strict):
    """One request (`messages`, optional `max_tokens`) or a run (`mode`, and `run_id` for an existing
    one or `budget_micros` for one about to be created)."""

    model: Name
    messages: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=100_000)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    mode: Mode | None = None
    run_id: str | None = Field(default=None, min_length=1, max_length=64)
    route_preference: RoutePreference | None = None
    budget_micros: Micros | None = None

    @field_validator("messages")
    @classmethod
    def _writable(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        # The messages are sized as a chat body, re-serialized: orjson writes 255 levels at most
        # (chat refuses deeper bodies the same way).
        try:
            orjson.dumps({"messages": v})
        except TypeError:
            raise ValueError("nested too deeply") from None
        return v


class RunCreate(Strict):
    model: Name
    mode: Mode = "standard"
    budget_micros: Micros
    name: str | None = Field(default=None, min_length=1, max_length=200)
    route_preference: RoutePreference = "auto"
