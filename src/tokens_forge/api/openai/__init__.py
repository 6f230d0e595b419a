"""The OpenAI-compatible client API (SPEC §5)."""

from fastapi import APIRouter

from tokens_forge.api.openai import chat, health, models, records, responses, runs

router = APIRouter()
for module in (chat, responses, models, records, health, runs):
    router.include_router(module.router)
