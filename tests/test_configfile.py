"""The config file: parsed strictly (errors name the line and the field), applied as upserts of
routes by name, every change audited as actor `config`."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import ok
from tokens_forge.configfile import ConfigError, apply_config, parse_config

ROUTE = """\
      - name: {name}-{kind}
        kind: {kind}
        base_url: http://mock.test/v1
        upstream_model: ok
        upstream_api_key_env: TF_TEST_UPSTREAM_KEY
        price: {{input_per_mtok: {input}, output_per_mtok: 2000000}}
        failed_request_charge: {{mode: flat, flat_micros: 5}}
        timeout_s: 12.5
        priority: {priority}
"""
PROFILES = """\
    profiles:
      quick: {calls: {low: 1, high: 3}, input_tokens: {low: 100, high: 1000}, output_tokens: {low: 50, high: 500}}
      deep:
        calls: {low: 10, high: 40}
        input_tokens: {low: 1000, high: 50000}
        output_tokens: {low: 500, high: 8000}
"""


def config_text(model: str, name: str, official_input: int = 1_000_000) -> str:
    routes = (ROUTE.format(name=name, kind="official", input=official_input, priority=1)
              + ROUTE.format(name=name, kind="routed", input=500_000, priority=2))
    return f"models:\n  {model}:\n    routes:\n{routes}{PROFILES}"


@pytest.fixture
def names():
    tag = uuid.uuid4().hex[:8]
    return "cfg-model-" + tag, "cfg-" + tag


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens-forge.yaml"
    path.write_text(text)
    return path


async def apply(app, path: Path) -> list[str]:
    cfg = parse_config(path)
    async with app.state.sessionmaker() as session, session.begin():
        return await apply_config(session, cfg)


async def routes_of(admin, model: str) -> dict[str, dict]:
    return {r["kind"]: r for r in ok(await admin.get("/routes", params={"model": model}))["data"]}


async def config_audit(admin, route_ids) -> list[dict]:
    entries = []
    for rid in route_ids:
        entries += ok(await admin.get("/audit", params={"target_id": rid}))["data"]
    return entries


def test_parse_valid_config(tmp_path, names):
    model, name = names
    cfg = parse_config(write(tmp_path, config_text(model, name)))
    official, routed = cfg.models[model].routes
    assert (official.name, official.kind, routed.kind) == (f"{name}-official", "official", "routed")
    assert official.base_url == "http://mock.test/v1" and official.upstream_model == "ok"
    assert official.upstream_api_key_env == "TF_TEST_UPSTREAM_KEY"
    assert (official.price.input_per_mtok, official.price.output_per_mtok) == (1_000_000, 2_000_000)
    assert (official.failed_request_charge.mode, official.failed_request_charge.flat_micros) == ("flat", 5)
    assert (official.timeout_s, official.priority, routed.priority) == (12.5, 1, 2)
    profiles = cfg.models[model].profiles
    assert set(profiles) == {"quick", "deep"} and profiles["deep"].output_tokens.high == 8000


async def test_apply_creates_routes_audited_as_config(app, admin, tmp_path, names):
    model, name = names
    changes = await apply(app, write(tmp_path, config_text(model, name)))
    assert len(changes) == 2 and all("created" in c for c in changes)
    routes = await routes_of(admin, model)
    assert set(routes) == {"official", "routed"}
    official = routes["official"]
    assert official["upstream_api_key_env"] == "TF_TEST_UPSTREAM_KEY" and official["upstream_api_key_set"]
    assert official["failed_request_charge"] == {"mode": "flat", "flat_micros": 5}
    assert (official["timeout_s"], official["priority"], official["price"]["input_per_mtok"]) == (12.5, 1, 1_000_000)
    assert routes["routed"]["bucket"] == "routed" and routes["routed"]["price"]["input_per_mtok"] == 500_000
    entries = await config_audit(admin, [r["id"] for r in routes.values()])
    assert sorted((e["actor"], e["action"]) for e in entries) == [("config", "route.create")] * 2


async def test_apply_twice_creates_nothing_new(app, admin, tmp_path, names):
    model, name = names
    path = write(tmp_path, config_text(model, name))
    await apply(app, path)
    routes = await routes_of(admin, model)
    trail = await config_audit(admin, [r["id"] for r in routes.values()])
    await apply(app, path)
    again = await routes_of(admin, model)
    assert {k: r["id"] for k, r in again.items()} == {k: r["id"] for k, r in routes.items()}
    for r in routes.values():
        assert len(ok(await admin.get("/price-snapshots", params={"route_id": r["id"]}))["data"]) == 1
    assert await config_audit(admin, [r["id"] for r in routes.values()]) == trail  # nothing changed: no entry
    assert again == routes  # not even updated_at


async def test_price_change_makes_a_new_snapshot(app, admin, tmp_path, names):
    model, name = names
    await apply(app, write(tmp_path, config_text(model, name)))
    before = await routes_of(admin, model)
    await apply(app, write(tmp_path, config_text(model, name, official_input=3_000_000)))
    after = await routes_of(admin, model)
    assert after["official"]["id"] == before["official"]["id"]
    assert after["official"]["price"]["input_per_mtok"] == 3_000_000
    assert after["routed"]["price"] == before["routed"]["price"]
    snaps = ok(await admin.get("/price-snapshots", params={"route_id": after["official"]["id"]}))["data"]
    assert snaps == [after["official"]["price"], before["official"]["price"]]
    [update] = [e for e in await config_audit(admin, [after["official"]["id"]]) if e["action"] == "route.update"]
    assert update["actor"] == "config"
    assert (update["before"]["price"]["input_per_mtok"], update["after"]["price"]["input_per_mtok"]) == (
        1_000_000, 3_000_000)


async def test_kind_of_an_existing_route_cannot_change(app, admin, tmp_path, names):
    model, name = names
    await apply(app, write(tmp_path, config_text(model, name)))
    before = await routes_of(admin, model)
    swapped = config_text(model, name).replace("kind: official", "kind: KIND").replace(
        "kind: routed", "kind: official").replace("kind: KIND", "kind: routed")
    with pytest.raises(ConfigError, match=f"{name}-"):
        await apply(app, write(tmp_path, swapped))
    assert await routes_of(admin, model) == before


async def test_apis_and_output_cap_param(app, admin, tmp_path, names):
    model, name = names
    text = config_text(model, name)
    await apply(app, write(tmp_path, text))
    assert {r["apis"][0] for r in (await routes_of(admin, model)).values()} == {"chat_completions"}
    extra = "        apis: [responses, chat_completions]\n        output_cap_param: max_tokens\n"
    changed = text.replace("        priority: 1\n", "        priority: 1\n" + extra)
    assert await apply(app, write(tmp_path, changed)) == [
        f"updated route {name}-official ({(await routes_of(admin, model))['official']['id']})"]
    routes = await routes_of(admin, model)
    assert (routes["official"]["apis"], routes["official"]["output_cap_param"]) == (
        ["chat_completions", "responses"], "max_tokens")
    assert (routes["routed"]["apis"], routes["routed"]["output_cap_param"]) == (
        ["chat_completions"], "max_completion_tokens")


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(("old", "new", "field"), [
    ("        timeout_s: 12.5\n", "        timeout_s: fast\n", "timeout_s"),
    ("        priority: 2\n", "        priority: 2\n        weight: 3\n", "weight"),
    ("        kind: routed\n", "        kind: cheap\n", "kind"),
    ("output_per_mtok: 2000000}", "output_per_mtok: -1}", "output_per_mtok"),
    ("        upstream_model: ok\n", "        upstream_model: [ok]\n", "upstream_model"),
    ("      quick:", "      turbo:", "turbo"),
    ("        priority: 2\n", "        priority: 2\n        apis: [completions]\n", "apis"),
    ("        priority: 2\n", "        priority: 2\n        apis: []\n", "apis"),
    ("        priority: 2\n", "        priority: 2\n        output_cap_param: max_output_tokens\n", "output_cap_param"),
])
def test_malformed_config_names_line_and_field(tmp_path, names, old, new, field):
    good = config_text(*names)
    assert old in good
    text = good[::-1].replace(old[::-1], new[::-1], 1)[::-1]  # the last occurrence: the routed route
    needle = next(line for line in new.splitlines() if field in line).strip()
    with pytest.raises(ConfigError) as caught:
        parse_config(write(tmp_path, text))
    message = str(caught.value)
    assert f"line {line_of(text, needle)}:" in message and field in message, message


def test_missing_field_is_named(tmp_path, names):
    text = config_text(*names).replace("        upstream_model: ok\n", "", 1)
    with pytest.raises(ConfigError, match=r"line \d+: .*upstream_model"):
        parse_config(write(tmp_path, text))


@pytest.mark.parametrize("broken", ["models:\n  m:\n    routes: [\n", "models:\n  m: {routes: [}\n",
                                    "models:\n\tm: 1\n"])
def test_invalid_yaml_names_the_line(tmp_path, broken):
    with pytest.raises(ConfigError, match=r"line \d+: not valid YAML"):
        parse_config(write(tmp_path, broken))


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        parse_config(tmp_path / "missing.yaml")
