"""Deeply nested JSON on every endpoint that takes a JSON body (the client API, chat included,
and the admin API): a body too deep to parse is the client's bad JSON, `400 invalid_request` of
type `invalid_request_error`, never a `server_error`; a deep value that does parse is a clean
answer too (served, or a 400), never a 5xx."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import ADMIN_AUTH
from tests.hostile.test_inputs import JSON, nested, raw_body
from tokens_forge.main import create_app


def json_endpoints() -> list[tuple[str, str]]:
    """(method, path) of every operation with a JSON request body, from the app's own OpenAPI
    schema (so an endpoint added later is covered without touching this test), and chat."""
    spec = create_app().openapi()
    out = {("POST", "/v1/chat/completions")}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                out.add((method.upper(), path))
    return sorted(out)


ENDPOINTS = json_endpoints()


def test_the_endpoint_list_is_not_empty():
    paths = {p for _, p in ENDPOINTS}
    assert {"/v1/chat/completions", "/v1/preflight", "/v1/runs", "/admin/v1/routes", "/admin/v1/keys"} <= paths


def _url(path: str, t) -> str:
    ids = {"account_id": t.account["id"], "project_id": t.project["id"], "key_id": t.key["id"],
           "route_id": t.routes["official"]["id"], "run_id": "run_none", "receipt_id": "rcpt_none"}
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path


@pytest.mark.parametrize("shape", ["whole", "field"])
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_json_too_deep_to_parse_is_invalid_request(hclient, tenant, method, path, shape):
    t = await tenant()
    deep = nested(5_000)
    body = deep if shape == "whole" else b'{"model": "x", "name": ' + deep + b"}"
    headers = {**JSON, **(t.auth if path.startswith("/v1") else ADMIN_AUTH)}
    r = await hclient.request(method, _url(path, t), content=body, headers=headers)
    assert r.status_code == 400, f"{method} {path} -> {r.status_code}: {r.text[:300]}"
    err = r.json()["error"]
    assert (err["type"], err["code"]) == ("invalid_request_error", "invalid_request"), (method, path, err)


@pytest.mark.parametrize("depth", [5_000, 1_000, 300, 100])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/preflight"])
async def test_deep_message_content_is_a_clean_answer(hclient, tenant, path, depth):
    """Inside `messages` (the one place a body takes free-form JSON): parsed or not, a clean answer."""
    t = await tenant()
    body = raw_body({"model": t.model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 3},
                    ("messages", 0, "content"), nested(depth))
    r = await hclient.post(path, content=body, headers={**JSON, **t.auth})
    assert r.status_code in (200, 400), f"{path} depth {depth} -> {r.status_code}: {r.text[:300]}"
    if r.status_code == 400:
        err = r.json()["error"]
        assert (err["type"], err["code"]) == ("invalid_request_error", "invalid_request"), err
