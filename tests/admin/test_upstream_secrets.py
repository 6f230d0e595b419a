"""The upstream API key is write-only: never in an admin response, an audit entry or a log line."""

import logging

import pytest

from tests.admin.conftest import route_body, uid
from tests.conftest import ok


@pytest.fixture
def debug_logs(caplog):
    """Every logger at DEBUG, captured."""
    for name in ["", *list(logging.root.manager.loggerDict)]:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_hidden(secrets: list[str], *texts: str) -> None:
    for text in texts:
        for s in secrets:
            at = text.find(s)
            assert at < 0, f"upstream key {s[:12]}… leaked: …{text[max(at - 250, 0):at + 20]}"


async def test_upstream_key_never_leaves(admin, client, tenant, debug_logs):
    t = await tenant()
    route_id = t.routes["official"]["id"]
    secrets = [f"sk-upstream-secret-{kind}-{t.model}" for kind in ("official", "routed")]
    new_secret = "sk-rotated-" + uid()
    secrets.append(new_secret)
    other = route_body(upstream_api_key="sk-other-" + uid())
    secrets.append(other["upstream_api_key"])

    answers = [
        await admin.post("/routes", json=other),
        await admin.patch(f"/routes/{route_id}", json={"upstream_api_key": new_secret}),
        await admin.patch(f"/routes/{route_id}", json={"upstream_api_key": new_secret, "priority": "x"}),
        await admin.post("/routes", json={**route_body(kind="bad"), "upstream_api_key": secrets[0]}),
        await admin.get(f"/routes/{route_id}"),
        await admin.get("/routes"),
        await admin.get("/routes", params={"model": t.model}),
        await admin.get("/price-snapshots", params={"route_id": route_id}),
        await admin.get("/audit", params={"limit": 500}),
        await admin.get("/audit", params={"target_id": route_id}),
    ]
    assert [r.status_code for r in answers[:4]] == [201, 200, 400, 400]
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    ok(r)
    rid = r.headers["x-tf-receipt-id"]
    answers.append(await admin.get(f"/receipts/{rid}"))
    answers.append(await client.get(f"/v1/receipts/{rid}", headers=t.auth))
    answers.append(await client.get("/v1/models", headers=t.auth))

    assert_hidden(secrets, *(a.text for a in answers), str(dict(r.headers)), r.text)
    patched = answers[1].json()
    assert patched["upstream_api_key_set"] is True and "upstream_api_key" not in patched
    records = debug_logs.records
    assert records, "nothing was logged at DEBUG: the capture is not working"
    assert_hidden(secrets, debug_logs.text, *(rec.getMessage() for rec in records))


@pytest.mark.parametrize("variable", ["TF_ADMIN_TOKEN", "TF_DATABASE_URL", "tf_database_direct_url"])
async def test_a_route_cannot_take_its_key_from_a_gateway_setting(admin, tenant, variable):
    """A route whose key lives in TF_ADMIN_TOKEN would send the admin token to its upstream."""
    t = await tenant()
    route_id = t.routes["official"]["id"]
    created = await admin.post("/routes", json=route_body(upstream_api_key_env=variable))
    patched = await admin.patch(f"/routes/{route_id}", json={"upstream_api_key_env": variable})
    for r in (created, patched):
        assert r.status_code == 400, r.text
        assert "upstream_api_key_env" in (r.json()["error"]["param"] or ""), r.text
    assert ok(await admin.get(f"/routes/{route_id}"))["upstream_api_key_env"] is None


def test_a_gateway_setting_is_never_an_upstream_secret(monkeypatch):
    from tokens_forge.config import upstream_secret

    monkeypatch.setenv("TF_ADMIN_TOKEN", "adm-secret")
    assert upstream_secret("TF_ADMIN_TOKEN") is None
    monkeypatch.setenv("SOME_UPSTREAM_KEY", "sk-1")
    assert upstream_secret("SOME_UPSTREAM_KEY") == "sk-1"
