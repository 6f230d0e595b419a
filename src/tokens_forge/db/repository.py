"""Small repository helpers shared by the admin services."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tokens_forge.errors import NotFound

M = TypeVar("M")


async def get_or_404(session: AsyncSession, model: type[M], id_: str, *, what: str, lock: bool = False) -> M:
    """The row with this id, or NotFound naming it; `lock` takes FOR UPDATE for a read-modify-write."""
    stmt = select(model).where(model.id == id_)  # type: ignore[attr-defined]
    if lock:
        stmt = stmt.with_for_update()
    row: Any = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{what} {id_!r} does not exist", param=f"{what}_id")
    return row
