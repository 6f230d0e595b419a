"""Route choice, table-driven."""

import pytest

from tokens_forge.errors import Forbidden, NoHealthyRoute, NotFound
from tokens_forge.guard.money import Price
from tokens_forge.keys.auth import AuthedKey
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.routing.selection import plan_routes


def route(id_, kind, prio):
    return RouteInfo(id=id_, model="m", kind=kind, base_url="http://x", upstream_model="u", api_key=None,
                     price=Price(1, 1), price_snapshot_id="p", failed_charge_mode="none",
                     failed_charge_flat_micros=0, timeout_s=1, priority=prio)


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
