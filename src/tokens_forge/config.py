"""Settings: the only place the environment is read (prefix TF_, also from `.env`), and written:
what serve hands to its worker processes (`export_for_workers`), and the variables that hold
routes' upstream keys (`upstream_secret`)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TF_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None, description="postgresql:// URL; unset starts an embedded PostgreSQL under data_dir"
    )
    data_dir: Path = Path(".tokens-forge")
    admin_token: str | None = None
    config: Path | None = Field(default=None, description="YAML file of models, routes and prices")

    max_body_bytes: int = 8 * 1024 * 1024
    default_max_tokens: int = 4096
    hold_ttl_s: float = Field(default=900.0, description="the expiry of a hold that no worker owns (a script's)")
    durable_settle: bool = Field(
        default=False,
        description="wait for the WAL flush when settling too (reservations always do); off, a settle lost in a "
                    "database crash leaves a hold that the sweeper releases: never an overcharge")
    sweep_interval_s: float = 5.0
    worker_heartbeat_s: float = Field(default=2.0, gt=0, description="how often a worker says it is alive")
    worker_dead_after_s: float = Field(
        default=30.0, gt=0,
        description="a worker silent this long is dead: the sweeper releases the holds it owned")
    settle_wait_s: float = Field(
        default=2.0, gt=0,
        description="how long an answer waits for its settle to commit; past that (the database is away) the "
                    "client gets its answer and the worker keeps retrying the settle")
    settle_retry_s: float = Field(
        default=900.0, ge=0,
        description="how long a settle is retried while the database is unavailable before it is given up")
    key_cache_ttl_s: float = 0.5
    db_pool_size: int = 5
    db_max_overflow: int = 10
    hot_pool_size: int = 16
    upstream_max_connections: int = 1000
    log_level: str = "info"
    mock_upstream: bool = Field(default=False, description="serve the built-in mock upstream under /mock (demo)")
    header_timeout_s: float = Field(
        default=10.0, gt=0,
        description="serve closes a connection whose request headers are not complete this long after it "
                    "was accepted or its last response ended (slow-header clients); bodies and streams are "
                    "never timed by it")
    db_connection_budget: int | None = Field(
        default=None, ge=1,
        description="PostgreSQL connections all workers together may open; unset: what the server has room "
                    "for (max_connections less reserved slots, other clients and a margin), measured by serve")
    workers: int = Field(default=1, ge=1, description="set by serve --workers for its workers: each takes an "
                                                      "equal share of the connection budget")
    database_direct_url: str | None = Field(
        default=None,
        description="postgresql:// URL of PostgreSQL itself, for what needs a session of its own (LISTEN/NOTIFY, "
                    "migrations, CLI tools) when TF_DATABASE_URL points at a transaction pooler; unset: TF_DATABASE_URL")
    database_pooler: Literal["auto", "none", "pgbouncer"] = Field(
        default="auto",
        description="what TF_DATABASE_URL points at: `pgbouncer` (a pooler in transaction mode: no prepared "
                    "statements kept), `none` (PostgreSQL), or `auto`: pgbouncer when TF_DATABASE_DIRECT_URL "
                    "is set and differs from TF_DATABASE_URL")

    # Operating it (SPEC §11). The OTEL_* and PROMETHEUS_* names are those the tools' own
    # documentation uses, so they are read without the TF_ prefix.
    metrics_token: str | None = Field(default=None, description="bearer token /metrics requires (unset: none)")
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_exporter_otlp_endpoint"),
        description="OTLP/HTTP base URL (spans go to <it>/v1/traces); unset with the next one: no tracing")
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel_exporter_otlp_traces_endpoint"),
        description="the full OTLP/HTTP URL of spans, when it is not <OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces")
    otel_service_name: str = Field(default="tokens-forge",
                                   validation_alias=AliasChoices("OTEL_SERVICE_NAME", "otel_service_name"))
    prometheus_multiproc_dir: str | None = Field(
        default=None, validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"),
        description="the workers' metric files (`serve` makes a fresh one); unset: this process's metrics only")

    @field_validator("database_url", "admin_token", "config", "database_direct_url", "metrics_token",
                     "otel_exporter_otlp_endpoint", "otel_exporter_otlp_traces_endpoint", "prometheus_multiproc_dir",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v


def load_env_file(path: str = ".env") -> None:
    """Put a `.env` file's variables into the environment (without overriding), so that routes'
    `upstream_api_key_env` references and the demo's admin token can live there too."""
    from dotenv import load_dotenv

    load_dotenv(path, override=False)


def _variable(setting: str) -> str:
    """The environment variable a setting is read from: TF_<NAME>, or its documented alias (OTEL_*, PROMETHEUS_*)."""
    alias = Settings.model_fields[setting].validation_alias  # KeyError: no such setting
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return "TF_" + setting.upper()


def exported(setting: str) -> str | None:
    """A setting as this process's environment holds it now (what `export_for_workers` set, or the
    operator's value), unparsed."""
    return os.environ.get(_variable(setting))


def export_for_workers(**settings: object) -> None:
    """Put settings into this process's environment, which the processes it starts inherit: serve
    replaces itself with uvicorn, whose workers build their Settings from it (main.app_factory).
    `export_for_workers(database_url=url, workers=2)` sets TF_DATABASE_URL and TF_WORKERS."""
    for setting, value in settings.items():
        os.environ[_variable(setting)] = str(value)


def prepare_worker_metrics_dir() -> str:
    """The workers' shared metric files: a fresh directory (or the operator's, emptied) named in
    PROMETHEUS_MULTIPROC_DIR before any worker imports prometheus-client."""
    from tokens_forge.observability.metrics import prepare_multiproc_dir

    return prepare_multiproc_dir(os.environ)


@lru_cache
def gateway_variables() -> frozenset[str]:
    """Every environment variable a setting of the gateway is read from (TF_ADMIN_TOKEN,
    TF_DATABASE_URL, their aliases…), upper-cased."""
    names = set()
    for setting, info in Settings.model_fields.items():
        names.add("TF_" + setting.upper())
        if isinstance(info.validation_alias, AliasChoices):
            names.update(c for c in info.validation_alias.choices if isinstance(c, str))
    return frozenset(n.upper() for n in names)


def is_gateway_setting(variable: str) -> bool:
    """Whether the gateway reads one of its own settings from this variable (case-insensitively,
    as the settings are read)."""
    return variable.upper() in gateway_variables()


def upstream_secret(variable: str) -> str | None:
    """A route's upstream key kept in the named environment variable (`upstream_api_key_env`), read
    when the route is loaded, so that a rotated variable is picked up by the next route refresh.
    Never one of the gateway's own settings: a route must not send the admin token or the database
    URL to an upstream as its key."""
    if is_gateway_setting(variable):
        return None
    return os.environ.get(variable)


@lru_cache
def get_settings() -> Settings:
    return Settings()
