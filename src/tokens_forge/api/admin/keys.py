"""API keys: the secret is returned once, by the create call."""

from fastapi import APIRouter

from tokens_forge.api.deps import AdminDep, SessionDep
from tokens_forge.keys import service
from tokens_forge.keys.schemas import KeyCreate, KeyUpdate

router = APIRouter(tags=["admin: keys"])


@router.post("/keys", status_code=201)
async def create_key(body: KeyCreate, session: SessionDep, actor: AdminDep) -> dict:
    """Create a key; the response carries `secret`, shown this once and stored only as a hash."""
    async with session.begin():
        key, secret = await service.create_key(session, body, actor)
        return {**service.key_out(key), "secret": secret}


@router.get("/keys/{key_id}")
async def get_key(key_id: str, session: SessionDep) -> dict:
    async with session.begin():
        return service.key_out(await service.get_key(session, key_id))


@router.patch("/keys/{key_id}")
async def update_key(key_id: str, body: KeyUpdate, session: SessionDep, actor: AdminDep) -> dict:
    """Change limits, policies, allowed models or route kinds. Takes effect on the next request."""
    async with session.begin():
        return service.key_out(await service.update_key(session, key_id, body, actor))


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, session: SessionDep, actor: AdminDep) -> dict:
    """Revoke a key for good: every worker refuses it within a second."""
    async with session.begin():
        return service.key_out(await service.revoke_key(session, key_id, actor))
