"""The OpenAI-compatible client API (SPEC §5)."""

from fastapi import APIRouter

from tokens_forge.api.openai import chat, health, models, records

router = APIRouter()
for module in (chat, models, records, health):
    router.include_router(module.router)
