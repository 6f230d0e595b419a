from fastapi import APIRouter, Request
from sqlalchemy import text

from tokens_forge.api.deps import ApiKeyDep
from tokens_forge.errors import NotFound
from tokens_forge.keys.auth import AuthedKey

router = APIRouter(tags=["openai"])

_SQL = """
    SELECT r.id, r.model, r.kind, r.priority, r.apis, extract(epoch FROM r.created_at)::bigint AS created,
           p.id AS snapshot_id, p.input_per_mtok, p.output_per_mtok
      FROM routes r JOIN price_snapshots p ON p.id = r.price_snapshot_id
     WHERE r.enabled AND (CAST(:model AS TEXT) IS NULL OR r.model = :model)
     ORDER BY r.model, r.priority, r.created_at"""


async def visible_models(request: Request, key: AuthedKey, model: str | None = None) -> list[dict]:
    """The models this key may use (one, with `model`), each in OpenAI's model shape plus the
    routes that serve it and the key may use: kind, bucket, priority, the upstream APIs, price."""
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(text(_SQL), {"model": model})).all()
    models: dict[str, dict] = {}
    for r in rows:
        if not key.may_use_model(r.model) or r.kind not in key.allowed_route_kinds:
            continue
        m = models.setdefault(r.model, {"id": r.model, "object": "model", "created": r.created,
                                        "owned_by": "tokens-forge", "routes": []})
        m["created"] = min(m["created"], r.created)
        m["routes"].append({"id": r.id, "kind": r.kind, "bucket": "credit" if r.kind == "official" else "routed",
                            "priority": r.priority, "apis": list(r.apis),
                            "price": {"input_per_mtok": r.input_per_mtok, "output_per_mtok": r.output_per_mtok,
                                      "snapshot_id": r.snapshot_id}})
    return list(models.values())


@router.get("/v1/models")
async def list_models(request: Request, key: ApiKeyDep) -> dict:
    """The models this key may use, in OpenAI's list shape, with their routes, kinds, APIs and prices."""
    return {"object": "list", "data": await visible_models(request, key)}


@router.get("/v1/models/{model:path}")
async def retrieve_model(model: str, request: Request, key: ApiKeyDep) -> dict:
    """One model this key may use, in OpenAI's model shape (with its routes); 404 `model_not_found`
    for a model that does not exist, has no enabled route, or is not this key's to use."""
    found = await visible_models(request, key, model)
    if not found:
        raise NotFound(f"model {model!r} does not exist or this key may not use it; GET /v1/models lists them",
                       code="model_not_found", param="model")
    return found[0]
