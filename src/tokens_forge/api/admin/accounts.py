"""Accounts, money in (top-ups, adjustments) and projects."""

from fastapi import APIRouter, Response

from tokens_forge.accounts import service
from tokens_forge.accounts.schemas import (
    AccountCreate,
    AdjustmentCreate,
    ProjectCreate,
    ProjectUpdate,
    TopupCreate,
)
from tokens_forge.api.deps import AdminDep, SessionDep
from tokens_forge.audit.service import record
from tokens_forge.ledger import service as ledger

router = APIRouter(tags=["admin: accounts"])


@router.post("/accounts", status_code=201)
async def create_account(body: AccountCreate, session: SessionDep, actor: AdminDep) -> dict:
    """Create a tenant with an empty wallet (both buckets at zero)."""
    async with session.begin():
        account = await service.create_account(session, body, actor)
        return await service.account_with_balances(session, account.id)


@router.get("/accounts/{account_id}")
async def get_account(account_id: str, session: SessionDep) -> dict:
    """An account with its balances per bucket (posted, held, available)."""
    async with session.begin():
        return await service.account_with_balances(session, account_id)


@router.post("/accounts/{account_id}/topups", status_code=201)
async def create_topup(account_id: str, body: TopupCreate, session: SessionDep, actor: AdminDep,
                       response: Response) -> dict:
    """Add money to a bucket. Idempotent on `reference`: a repeat returns the first top-up (200)."""
    async with session.begin():
        await service.get_account(session, account_id)
        result = await ledger.topup(session, account_id=account_id, bucket=body.bucket,
                                    amount=body.amount_micros, reference=body.reference)
        out = {"id": f"tr_{result.transfer_id}", "object": "topup", "account_id": account_id,
               "bucket": result.bucket, "amount_micros": result.amount_micros, "reference": body.reference,
               "transfer_id": f"tr_{result.transfer_id}", "replayed": not result.created}
        if result.created:
            await record(session, actor=actor, action="account.topup", target_type="account",
                         target_id=account_id, before=None, after=out)
        else:
            response.status_code = 200
        out["balances"] = {b: v.as_dict() for b, v in (await ledger.balances(session, account_id)).items()}
        return out


@router.post("/accounts/{account_id}/adjustments", status_code=201)
async def create_adjustment(account_id: str, body: AdjustmentCreate, session: SessionDep, actor: AdminDep) -> dict:
    """A signed correction of a bucket (positive adds, negative removes; never below zero)."""
    async with session.begin():
        await service.get_account(session, account_id)
        before = {b: v.as_dict() for b, v in (await ledger.balances(session, account_id)).items()}
        transfer_id = None
        if body.amount_micros != 0:
            transfer_id = await ledger.adjust(session, account_id=account_id, bucket=body.bucket,
                                              amount=body.amount_micros, reason=body.reason)
        after = {b: v.as_dict() for b, v in (await ledger.balances(session, account_id)).items()}
        out = {"id": f"tr_{transfer_id}" if transfer_id else None, "object": "adjustment",
               "account_id": account_id, "bucket": body.bucket, "amount_micros": body.amount_micros,
               "reason": body.reason, "transfer_id": f"tr_{transfer_id}" if transfer_id else None}
        await record(session, actor=actor, action="account.adjustment", target_type="account",
                     target_id=account_id, before={"balances": before}, after={**out, "balances": after})
        return {**out, "balances": after}


@router.post("/projects", status_code=201)
async def create_project(body: ProjectCreate, session: SessionDep, actor: AdminDep) -> dict:
    """A project of an account, with optional daily and total limits."""
    async with session.begin():
        return service.project_out(await service.create_project(session, body, actor))


@router.get("/projects/{project_id}")
async def get_project(project_id: str, session: SessionDep) -> dict:
    async with session.begin():
        return service.project_out(await service.get_project(session, project_id))


@router.patch("/projects/{project_id}")
async def update_project(project_id: str, body: ProjectUpdate, session: SessionDep, actor: AdminDep) -> dict:
    """Change a project's name or limits (null removes a limit)."""
    async with session.begin():
        return service.project_out(await service.update_project(session, project_id, body, actor))
