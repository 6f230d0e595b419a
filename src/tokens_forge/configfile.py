"""The config file (`--config FILE` or TF_CONFIG): models, their routes, prices and mode profiles,
applied at start-up as upserts (routes are matched by `name`), each change audited as actor
`config`. Upstream keys are references to environment variables, never inline secrets.

A malformed file stops start-up with a message naming the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tokens_forge.routing import service as routes
from tokens_forge.routing.models import Route
from tokens_forge.routing.schemas import (
    Api,
    FailedRequestCharge,
    MediaBoundsIn,
    OutputCapParam,
    PriceIn,
    RouteCreate,
    RouteUpdate,
    canonical_apis,
)
from tokens_forge.schemas import Name, Strict

ACTOR = "config"


class ConfigError(Exception):
    pass


class Range(Strict):
    low: int = Field(ge=0)
    high: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError("low must not be greater than high")
        return self


class ModeProfile(Strict):
    calls: Range
    input_tokens: Range
    output_tokens: Range


class ConfigRoute(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Literal["official", "routed"]
    base_url: str
    upstream_model: Name
    upstream_api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    price: PriceIn
    failed_request_charge: FailedRequestCharge = FailedRequestCharge()
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    priority: int = 100
    enabled: bool = True
    media_bounds: MediaBoundsIn = MediaBoundsIn()
    apis: list[Api] = Field(default_factory=lambda: list[Api](["chat_completions"]), max_length=3)
    output_cap_param: OutputCapParam = "max_completion_tokens"

    _canonical_apis = field_validator("apis")(canonical_apis)


class ConfigModel(Strict):
    routes: list[ConfigRoute] = Field(default_factory=list)
    profiles: dict[Literal["quick", "standard", "deep"], ModeProfile] = Field(default_factory=dict)


class ConfigFile(Strict):
    models: dict[str, ConfigModel] = Field(default_factory=dict)


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def parse_config(path: Path) -> ConfigFile:
    try:
        source = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    try:
        node = yaml.compose(source)
        data: Any = yaml.safe_load(source) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "unknown line"
        raise ConfigError(f"{path}: {where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc)
        raise ConfigError(f"{path}: line {_line_of(node, loc)}: {field}: {first['msg']}") from exc


def _route_create(model: str, r: ConfigRoute) -> RouteCreate:
    return RouteCreate(model=model, kind=r.kind, base_url=r.base_url, upstream_model=r.upstream_model,
                       upstream_api_key_env=r.upstream_api_key_env, price=r.price,
                       failed_request_charge=r.failed_request_charge, timeout_s=r.timeout_s,
                       priority=r.priority, enabled=r.enabled, media_bounds=r.media_bounds, apis=r.apis,
                       output_cap_param=r.output_cap_param)


async def apply_config(session: AsyncSession, cfg: ConfigFile) -> list[str]:
    """Upsert every route of the file; returns what changed, for the log."""
    changes = []
    for model, spec in cfg.models.items():
        for r in spec.routes:
            existing = (await session.execute(select(Route).where(Route.config_name == r.name))).scalar_one_or_none()
            create = _route_create(model, r)
            if existing is None:
                route = await routes.create_route(session, create, ACTOR, config_name=r.name)
                changes.append(f"created route {r.name} ({route.id})")
                continue
            if existing.model != model or existing.kind != r.kind:
                raise ConfigError(f"route {r.name}: model and kind of an existing route cannot change; "
                                  f"give the route a new name")
            update = RouteUpdate(**create.model_dump(exclude={"model", "kind", "upstream_api_key"}))
            before = existing.updated_at
            await routes.update_route(session, existing.id, update, ACTOR)
            if existing.updated_at != before:
                changes.append(f"updated route {r.name} ({existing.id})")
    return changes
