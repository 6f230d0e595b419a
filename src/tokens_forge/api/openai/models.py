from fastapi import APIRouter, Request
from sqlalchemy import text

from tokens_forge.api.deps import ApiKeyDep

router = APIRouter(tags=["openai"])


@router.get("/v1/models")
async def list_models(request: Request, key: ApiKeyDep) -> dict:
    """The models this key may use, in OpenAI's list shape, with their routes, kinds and prices."""
    async with request.app.state.engine.connect() as conn:
        rows = (await conn.execute(text("""
            SELECT r.id, r.model, r.kind, r.priority, extract(epoch FROM r.created_at)::bigint AS created,
                   p.id AS snapshot_id, p.input_per_mtok, p.output_per_mtok
              FROM routes r JOIN price_snapshots p ON p.id = r.price_snapshot_id
             WHERE r.enabled ORDER BY r.model, r.priority, r.created_at"""))).all()
    models: dict[str, dict] = {}
    for r in rows:
        if not key.may_use_model(r.model) or r.kind not in key.allowed_route_kinds:
            continue
        m = models.setdefault(r.model, {"id": r.model, "object": "model", "created": r.created,
                                        "owned_by": "tokens-forge", "routes": []})
        m["routes"].append({"id": r.id, "kind": r.kind, "bucket": "credit" if r.kind == "official" else "routed",
                            "priority": r.priority,
                            "price": {"input_per_mtok": r.input_per_mtok, "output_per_mtok": r.output_per_mtok,
                                      "snapshot_id": r.snapshot_id}})
    return {"object": "list", "data": list(models.values())}
