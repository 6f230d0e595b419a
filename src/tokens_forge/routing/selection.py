"""Which routes a request may use, in order: pure functions, tested table-driven."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tokens_forge.errors import Forbidden, NoHealthyRoute, NotFound
from tokens_forge.keys.auth import AuthedKey
from tokens_forge.routing.cache import RouteInfo

PREFERENCES = ("official", "routed", "auto")


def plan_routes(model: str, routes: Sequence[RouteInfo], key: AuthedKey, preference: str,
                is_down: Callable[[str], bool] = lambda _id: False) -> list[RouteInfo]:
    """The first route and its fallbacks, by priority. `routes` are the model's enabled routes.

    A `down` route is moved behind the others, so it is skipped while another can serve; the
    fallback policy decides which of the rest may follow the first."""
    if not key.may_use_model(model):
        raise Forbidden(f"this key may not use model {model!r}", code="model_not_allowed", param="model")
    if not routes:
        raise NotFound(f"model {model!r} does not exist or has no enabled route; GET /v1/models lists them",
                       code="model_not_found", param="model")
    allowed = [r for r in routes if r.kind in key.allowed_route_kinds]
    if not allowed:
        raise Forbidden(f"this key may not use the route kinds that serve {model!r}", code="route_not_allowed",
                        param="model")
    if preference in ("official", "routed"):
        allowed = [r for r in allowed if r.kind == preference]
        if not allowed:
            raise NoHealthyRoute(f"no {preference} route serves {model!r}; send X-TF-Route-Preference: auto")
    allowed.sort(key=lambda r: (is_down(r.id), r.priority))
    first = allowed[0]
    if key.fallback_policy == "none":
        return [first]
    if key.fallback_policy == "same_bucket":
        return [r for r in allowed if r.bucket == first.bucket]
    return allowed
