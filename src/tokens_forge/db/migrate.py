"""Apply Alembic migrations from code (serve and migrate do this before anything else)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

_PKG = Path(__file__).resolve().parents[1]


def migrations_dir() -> Path:
    packaged = _PKG / "_migrations"  # inside an installed wheel
    if packaged.is_dir():
        return packaged
    return _PKG.parents[1] / "migrations"  # a source checkout (editable install)


def upgrade_head(url: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")
