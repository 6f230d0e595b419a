"""POST /v1/chat/completions straight into the pipeline, past FastAPI's routing, dependency
solving and exception middleware: the hot path pays only for what it uses. The FastAPI route of
the same path stays for the OpenAPI document and behaves the same."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from tokens_forge.api.deps import bearer
from tokens_forge.api.errors import as_forge_error, render
from tokens_forge.api.openai.chat import complete_chat
from tokens_forge.keys.auth import delegated_key
from tokens_forge.observability.request import note_key

PATH = "/v1/chat/completions"


class ChatFastPath:
    def __init__(self, app: Any, owner: Any):
        self.app = app
        self.owner = owner  # the FastAPI app whose state the pipeline uses

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.owner
        request = Request(scope, receive)
        try:
            key = delegated_key(scope) or await self.owner.state.keys.authenticate(bearer(request))
            note_key(key.id)
            response = await complete_chat(request, key)
        except Exception as exc:
            err = as_forge_error(exc)
            if err is None:
                raise
            response = render(err)
        await response(scope, receive, send)
