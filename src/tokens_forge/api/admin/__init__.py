"""The admin API (SPEC §7), every route behind the admin token."""

from fastapi import APIRouter, Depends

from tokens_forge.api.admin import accounts, health, keys, records, routes, runs
from tokens_forge.api.deps import require_admin

router = APIRouter(prefix="/admin/v1", dependencies=[Depends(require_admin)])
for module in (accounts, keys, routes, records, runs, health):
    router.include_router(module.router)
