"""Route choice, table-driven."""

import pytest

from tokens_forge.errors import Forbidden, NoHealthyRoute, NotFound
from tokens_forge.guard.money import Price
from tokens_forge.keys.auth import AuthedKey
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.routing.selection import plan_routes


def route(id_, kind, prio, apis=("chat_completions",)):
    return RouteInfo(id=id_, model="m", kind=kind, base_url="http://x", upstream_model="u", api_key=None,
                     price=Price(1, 1), price_snapshot_id="p", failed_charge_mode="none",
                     failed_charge_flat_micros=0, timeout_s=1, priority=prio, apis=apis)


def key(fallback="none", kinds=("official", "routed"), models=None):
    return AuthedKey(id="k", account_id="a", project_id="p", name="k", prefix="tf-", min_balance_micros=0,
                     allowed_models=models, allowed_route_kinds=kinds, retry_policy={}, fallback_policy=fallback,
                     daily_limit_micros=None, total_limit_micros=None, per_request_limit_micros=None)


ROUTES = [route("o1", "official", 1), route("r1", "routed", 2), route("o2", "official", 3)]


@pytest.mark.parametrize("fallback,pref,down,expected", [
    ("none", "auto", set(), ["o1"]),
    ("same_bucket", "auto", set(), ["o1", "o2"]),
    ("any_bucket", "auto", set(), ["o1", "r1", "o2"]),
    ("any_bucket", "routed", set(), ["r1"]),
    ("same_bucket", "official", set(), ["o1", "o2"]),
    ("any_bucket", "auto", {"o1"}, ["r1", "o2", "o1"]),
    ("none", "auto", {"o1"}, ["r1"]),
    ("none", "auto", {"o1", "r1", "o2"}, ["o1"]),
])
def test_plan(fallback, pref, down, expected):
    got = plan_routes("m", ROUTES, key(fallback), pref, lambda r: r in down)
    assert [r.id for r in got] == expected


def test_refusals():
    with pytest.raises(NotFound):
        plan_routes("m", [], key(), "auto")
    with pytest.raises(Forbidden) as e:
        plan_routes("m", ROUTES, key(models=("other",)), "auto")
    assert e.value.code == "model_not_allowed"
    with pytest.raises(Forbidden) as e:
        plan_routes("m", [route("o1", "official", 1)], key(kinds=("routed",)), "auto")
    assert e.value.code == "route_not_allowed"
    with pytest.raises(NoHealthyRoute):
        plan_routes("m", [route("o1", "official", 1)], key(), "routed")


OFFICIAL_ONLY = ("official",)
# (key's allowed kinds, preference, routes, endpoint, the refusal as (status, code, param))
REFUSALS = {
    "preferred kind not allowed, though a route of it exists": (
        OFFICIAL_ONLY, "routed", ROUTES, "chat_completions", (403, "route_not_allowed", "X-TF-Route-Preference")),
    "preferred kind not allowed and no route of it": (
        OFFICIAL_ONLY, "routed", [route("o1", "official", 1)], "chat_completions",
        (403, "route_not_allowed", "X-TF-Route-Preference")),
    "allowed kind has no route of the preference": (
        ("official", "routed"), "routed", [route("o1", "official", 1)], "chat_completions",
        (503, "no_healthy_route", None)),
    "no route speaks embeddings": (
        ("official", "routed"), "auto", ROUTES, "embeddings", (404, "model_not_found", "model")),
    "a responses-only route does not serve chat": (
        ("official", "routed"), "auto", [route("o1", "official", 1, ("responses",))], "chat_completions",
        (404, "model_not_found", "model")),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_refusal_table(case):
    kinds, pref, routes, endpoint, expected = REFUSALS[case]
    with pytest.raises((Forbidden, NoHealthyRoute, NotFound)) as e:
        plan_routes("m", routes, key(kinds=kinds), pref, endpoint=endpoint)
    assert (e.value.status_code, e.value.code, e.value.param) == expected


MIXED = [route("chat", "official", 1), route("native", "official", 2, ("responses",)),
         route("emb", "official", 3, ("embeddings",)),
         route("all", "routed", 4, ("chat_completions", "responses", "embeddings"))]


@pytest.mark.parametrize("endpoint,expected", [
    ("chat_completions", ["chat", "all"]),
    ("responses", ["chat", "native", "all"]),  # native, or translated onto chat completions
    ("embeddings", ["emb", "all"]),
])
def test_endpoint_picks_the_routes_that_speak_it(endpoint, expected):
    assert [r.id for r in plan_routes("m", MIXED, key("any_bucket"), "auto", endpoint=endpoint)] == expected
