"""Which routes a request may use, in order: pure functions, tested table-driven."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tokens_forge.errors import Forbidden, NoHealthyRoute, NotFound
from tokens_forge.keys.auth import AuthedKey
from tokens_forge.routing.cache import RouteInfo

PREFERENCES = ("official", "routed", "auto")
# The client endpoint → the upstream APIs that can serve it: a Responses request goes natively
# to a route that speaks `responses`, or is translated onto one that speaks `chat_completions`.
SERVED_BY = {"chat_completions": ("chat_completions",), "responses": ("responses", "chat_completions"),
             "embeddings": ("embeddings",)}
PATHS = {"chat_completions": "/v1/chat/completions", "responses": "/v1/responses", "embeddings": "/v1/embeddings"}


def serves(route: RouteInfo, endpoint: str) -> bool:
    return any(route.speaks(api) for api in SERVED_BY[endpoint])


def plan_routes(model: str, routes: Sequence[RouteInfo], key: AuthedKey, preference: str,
                is_down: Callable[[str], bool] = lambda _id: False,
                endpoint: str = "chat_completions") -> list[RouteInfo]:
    """The first route and its fallbacks, by priority. `routes` are the model's enabled routes.

    A `down` route is moved behind the others, so it is skipped while another can serve; the
    fallback policy decides which of the rest may follow the first."""
    if not key.may_use_model(model):
        raise Forbidden(f"this key may not use model {model!r}", code="model_not_allowed", param="model")
    if not routes:
        raise NotFound(f"model {model!r} does not exist or has no enabled route; GET /v1/models lists them",
                       code="model_not_found", param="model")
    routes = [r for r in routes if serves(r, endpoint)]
    if not routes:
        raise NotFound(f"model {model!r} has no route that serves {PATHS[endpoint]}; GET /v1/models lists "
                       f"each route's apis", code="model_not_found", param="model")
    if preference in ("official", "routed") and preference not in key.allowed_route_kinds:
        raise Forbidden(f"this key may not use {preference} routes (it may use: "
                        f"{', '.join(key.allowed_route_kinds)}); send X-TF-Route-Preference: auto",
                        code="route_not_allowed", param="X-TF-Route-Preference")
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
