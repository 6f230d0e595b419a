"""Accounts (tenants) and their projects."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tokens_forge.accounts.models import Account, Project
from tokens_forge.accounts.schemas import AccountCreate, ProjectCreate, ProjectUpdate
from tokens_forge.audit.service import record
from tokens_forge.db.repository import get_or_404
from tokens_forge.ids import new_id
from tokens_forge.ledger import service as ledger


def account_out(a: Account) -> dict:
    return {"id": a.id, "object": "account", "name": a.name, "created_at": a.created_at.isoformat()}


def project_out(p: Project) -> dict:
    return {"id": p.id, "object": "project", "account_id": p.account_id, "name": p.name,
            "limits": {"daily_micros": p.daily_limit_micros, "total_micros": p.total_limit_micros},
            "created_at": p.created_at.isoformat(), "updated_at": p.updated_at.isoformat()}


async def get_account(session: AsyncSession, account_id: str) -> Account:
    return await get_or_404(session, Account, account_id, what="account")


async def create_account(session: AsyncSession, body: AccountCreate, actor: str) -> Account:
    account = Account(id=new_id("acct"), name=body.name)
    session.add(account)
    await session.flush()
    await ledger.open_wallet(session, account.id)
    await session.refresh(account)
    await record(session, actor=actor, action="account.create", target_type="account", target_id=account.id,
                 before=None, after=account_out(account))
    return account


async def account_with_balances(session: AsyncSession, account_id: str) -> dict:
    account = await get_account(session, account_id)
    bal = await ledger.balances(session, account_id)
    return {**account_out(account), "balances": {b: v.as_dict() for b, v in bal.items()}}


async def get_project(session: AsyncSession, project_id: str, *, lock: bool = False) -> Project:
    return await get_or_404(session, Project, project_id, what="project", lock=lock)


async def create_project(session: AsyncSession, body: ProjectCreate, actor: str) -> Project:
    await get_account(session, body.account_id)
    project = Project(id=new_id("proj"), account_id=body.account_id, name=body.name,
                      daily_limit_micros=body.limits.daily_micros, total_limit_micros=body.limits.total_micros)
    session.add(project)
    await session.flush()
    await session.refresh(project)
    await record(session, actor=actor, action="project.create", target_type="project", target_id=project.id,
                 before=None, after=project_out(project))
    return project


async def update_project(session: AsyncSession, project_id: str, body: ProjectUpdate, actor: str) -> Project:
    project = await get_project(session, project_id, lock=True)
    before = project_out(project)
    if body.name is not None:
        project.name = body.name
    if body.limits is not None:
        sent = body.limits.model_fields_set
        if "daily_micros" in sent:
            project.daily_limit_micros = body.limits.daily_micros
        if "total_micros" in sent:
            project.total_limit_micros = body.limits.total_micros
    project.updated_at = _now()
    await session.flush()
    await record(session, actor=actor, action="project.update", target_type="project", target_id=project.id,
                 before=before, after=project_out(project))
    return project


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
