"""Every admin change writes one audit row in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tokens_forge.audit.models import AuditEntry


async def record(session: AsyncSession, *, actor: str, action: str, target_type: str, target_id: str,
                 before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    session.add(AuditEntry(actor=actor, action=action, target_type=target_type, target_id=target_id,
                           before=before, after=after))


def entry_out(e: AuditEntry) -> dict:
    return {"id": f"audit_{e.id}", "seq": e.id, "object": "audit_entry", "actor": e.actor, "action": e.action,
            "target": {"type": e.target_type, "id": e.target_id}, "before": e.before, "after": e.after,
            "created_at": e.created_at.isoformat()}


async def list_entries(session: AsyncSession, *, limit: int, before_id: int | None = None,
                       target_id: str | None = None, action: str | None = None) -> list[dict]:
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < int(before_id))
    if target_id:
        stmt = stmt.where(AuditEntry.target_id == target_id)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    return [entry_out(e) for e in (await session.execute(stmt)).scalars()]
