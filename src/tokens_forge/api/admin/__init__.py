"""The admin API (SPEC §7), every route behind the admin token."""

from fastapi import APIRouter, Depends

from tokens_forge.api.admin import accounts, keys, records, routes
from tokens_forge.api.deps import require_admin

router = APIRouter(prefix="/admin/v1", dependencies=[Depends(require_admin)])
for module in (accounts, keys, routes, records):
    router.include_router(module.router)
