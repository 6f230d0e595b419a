"""Declarative base. The schema itself is written by hand in migrations/; these models mirror it,
and tests/db/test_metadata.py holds them to it (Alembic's autogenerate comparison finds nothing)."""

from datetime import datetime

from sqlalchemy import DateTime, MetaData, Text
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "%(table_name)s_%(column_0_name)s",
    "uq": "%(table_name)s_%(column_0_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    # The migrations write TEXT and timestamptz throughout: a bare `Mapped[str]` is TEXT, not VARCHAR.
    type_annotation_map = {datetime: DateTime(timezone=True), str: Text()}
