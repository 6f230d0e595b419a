"""Routes and price snapshots: a price change makes a new snapshot and never touches old ones."""

import pytest

from tests.admin.conftest import audit_of, err, route_body
from tests.conftest import PRICE, ok


async def snapshots(admin, route_id: str) -> list[dict]:
    return ok(await admin.get("/price-snapshots", params={"route_id": route_id}))["data"]


async def test_create_get_list_route(admin):
    body = route_body(kind="routed", priority=7, failed_request_charge={"mode": "flat", "flat_micros": 30})
    route = ok(await admin.post("/routes", json=body), 201)
    assert route["id"].startswith("route_") and route["bucket"] == "routed"
    for field in ("model", "kind", "base_url", "upstream_model", "failed_request_charge", "priority", "enabled"):
        assert route[field] == body[field], field
    assert route["timeout_s"] == 30 and route["upstream_api_key_set"] is True
    assert route["price"]["id"].startswith("price_")
    assert {k: route["price"][k] for k in PRICE} == PRICE
    assert ok(await admin.get(f"/routes/{route['id']}"), 200) == route
    listed = ok(await admin.get("/routes", params={"model": body["model"]}))
    assert listed["object"] == "list" and listed["data"] == [route]
    assert route in ok(await admin.get("/routes", params={"limit": 500}))["data"]  # other tests' routes too


async def test_routes_listed_by_priority(admin):
    first = ok(await admin.post("/routes", json=route_body(priority=5)))
    second = ok(await admin.post("/routes", json=route_body(model=first["model"], kind="routed", priority=1)))
    listed = ok(await admin.get("/routes", params={"model": first["model"]}))["data"]
    assert [r["id"] for r in listed] == [second["id"], first["id"]]


async def test_routes_list_pages(admin):
    """GET /routes is a list like every other: `?limit=` and `?cursor=` (SPEC §5)."""
    model = route_body()["model"]
    made = [ok(await admin.post("/routes", json=route_body(model=model, priority=p))) for p in (1, 2, 3)]
    first = ok(await admin.get("/routes", params={"model": model, "limit": 2}))
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = ok(await admin.get("/routes", params={"model": model, "limit": 2, "cursor": first["next_cursor"]}))
    assert rest["next_cursor"] is None
    assert [r["id"] for r in first["data"] + rest["data"]] == [r["id"] for r in made]
    err(await admin.get("/routes", params={"limit": 0}), 400, "invalid_request", "limit")


async def test_price_change_makes_a_new_snapshot(admin):
    route = ok(await admin.post("/routes", json=route_body()))
    old = route["price"]
    new_price = {"input_per_mtok": 3_000_000, "output_per_mtok": 9_000_000}
    patched = ok(await admin.patch(f"/routes/{route['id']}", json={"price": new_price}), 200)
    assert patched["price"]["id"] != old["id"]
    assert {k: patched["price"][k] for k in new_price} == new_price
    assert await snapshots(admin, route["id"]) == [patched["price"], old]  # newest first, old unchanged
    same = ok(await admin.patch(f"/routes/{route['id']}", json={"price": new_price, "priority": 3}))
    assert same["price"] == patched["price"] and same["priority"] == 3  # same price: no snapshot
    assert len(await snapshots(admin, route["id"])) == 2


async def test_patch_changes_only_what_was_sent(admin):
    route = ok(await admin.post("/routes", json=route_body()))
    patched = ok(await admin.patch(f"/routes/{route['id']}", json={"enabled": False, "timeout_s": 5}))
    assert patched["enabled"] is False and patched["timeout_s"] == 5
    for field in ("model", "kind", "base_url", "upstream_model", "price", "priority", "failed_request_charge"):
        assert patched[field] == route[field], field
    assert ok(await admin.get(f"/routes/{route['id']}")) == patched
    actions = [e["action"] for e in await audit_of(admin, route["id"])]
    assert actions == ["route.create", "route.update"]


async def test_price_snapshot_paging(admin):
    route = ok(await admin.post("/routes", json=route_body()))
    for i in range(1, 5):
        ok(await admin.patch(f"/routes/{route['id']}", json={"price": {"input_per_mtok": i, "output_per_mtok": i}}))
    seen, cursor = [], None
    while True:
        page = ok(await admin.get("/price-snapshots", params={"route_id": route["id"], "limit": 2,
                                                              **({"cursor": cursor} if cursor else {})}))
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [s["input_per_mtok"] for s in seen] == [4, 3, 2, 1, PRICE["input_per_mtok"]]


@pytest.mark.parametrize(("change", "field"), [
    ({"model": None}, "model"),
    ({"kind": "cheap"}, "kind"),
    ({"base_url": "ftp://upstream.example/v1"}, "base_url"),
    ({"upstream_model": ""}, "upstream_model"),
    ({"price": None}, "price"),
    ({"price": {"input_per_mtok": -1, "output_per_mtok": 1}}, "price.input_per_mtok"),
    ({"price": {"input_per_mtok": 1}}, "price.output_per_mtok"),
    ({"price": {"input_per_mtok": 1, "output_per_mtok": 1, "currency": "usd"}}, "price.currency"),
    ({"failed_request_charge": {"mode": "double"}}, "failed_request_charge.mode"),
    ({"failed_request_charge": {"mode": "flat", "flat_micros": -3}}, "failed_request_charge.flat_micros"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"timeout_s": "soon"}, "timeout_s"),
    ({"priority": "first"}, "priority"),
    ({"enabled": "maybe"}, "enabled"),
    ({"weight": 3}, "weight"),
])
async def test_bad_route_is_400(admin, change, field):
    body = {k: v for k, v in {**route_body(), **change}.items() if v is not None}
    err(await admin.post("/routes", json=body), 400, "invalid_request", field)
    assert ok(await admin.get("/routes", params={"model": body.get("model", "-")}))["data"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "routed"}, "kind"),
    ({"model": "other"}, "model"),
    ({"price": {"input_per_mtok": "free", "output_per_mtok": 0}}, "price.input_per_mtok"),
    ({"base_url": "upstream.example"}, "base_url"),
])
async def test_bad_route_patch_is_400_and_changes_nothing(admin, body, field):
    route = ok(await admin.post("/routes", json=route_body()))
    err(await admin.patch(f"/routes/{route['id']}", json=body), 400, "invalid_request", field)
    assert ok(await admin.get(f"/routes/{route['id']}")) == route
    assert len(await snapshots(admin, route["id"])) == 1


async def test_unknown_route_ids_are_404(admin):
    for r in (await admin.get("/routes/route_nope"), await admin.patch("/routes/route_nope", json={"priority": 1})):
        assert "nope" in err(r, 404, "not_found", "route_id", named=False)["message"]
    assert ok(await admin.get("/price-snapshots", params={"route_id": "route_nope"}))["data"] == []
