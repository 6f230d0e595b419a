"""The shipped example config (examples/forge.yaml) is valid, covers both route kinds, and holds no
inline secret: upstream keys are only ever named by environment variable."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tokens_forge.configfile import parse_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "forge.yaml"


def test_example_config_parses():
    cfg = parse_config(EXAMPLE)
    assert cfg.models, "the example declares at least one model"
    assert "gpt-4o-mini" in cfg.models
    for name, model in cfg.models.items():
        assert model.routes, f"model {name} has routes"
        assert set(model.profiles) == {"quick", "standard", "deep"}, f"model {name} has all three mode profiles"
        for profile in model.profiles.values():
            for r in (profile.calls, profile.input_tokens, profile.output_tokens):
                assert r.low <= r.high


def test_example_config_has_both_route_kinds():
    cfg = parse_config(EXAMPLE)
    kinds = {r.kind for m in cfg.models.values() for r in m.routes}
    assert kinds == {"official", "routed"}
    mini = {r.kind: r for r in cfg.models["gpt-4o-mini"].routes}
    assert mini["official"].base_url == "https://api.openai.com/v1"
    assert mini["official"].price.input_per_mtok == 150_000
    assert mini["official"].price.output_per_mtok == 600_000
    assert mini["routed"].base_url == "https://openrouter.ai/api/v1"
    assert mini["official"].priority < mini["routed"].priority


def test_example_route_names_are_unique():
    cfg = parse_config(EXAMPLE)
    names = [r.name for m in cfg.models.values() for r in m.routes]
    assert len(names) == len(set(names))


def test_example_config_has_no_inline_secret():
    text = EXAMPLE.read_text()
    assert not re.search(r"sk-[A-Za-z0-9_-]", text), "no API key literal (sk-…) in the example"
    assert not re.search(r"^\s*upstream_api_key\s*:", text, re.MULTILINE), "keys are referenced by env var only"
    data = yaml.safe_load(text)
    for model in data["models"].values():
        for route in model["routes"]:
            assert "upstream_api_key" not in route
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", route["upstream_api_key_env"])
