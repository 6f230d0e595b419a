"""Schemathesis against the gateway's own OpenAPI document, every operation, in-process (schemathesis
runs the ASGI app's lifespan on its own event-loop thread), with valid auth for both surfaces: a
tenant's key for /v1, the admin token for /admin/v1. Path ids are either generated or, half of the
time, real ids (the fuzzing tenant's receipts and runs; a sacrificial account's project, key and
route for the admin surface), so that the handlers behind the 404s are fuzzed too.

No generated request may give a 5xx (a 503 "database unavailable" for a bad input counts: the
database is up), and answers must match the schema where it declares one. 20 examples per
operation by default, 80 with TF_LONG_TESTS=1."""

from __future__ import annotations

import hashlib

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import make_settings, ok
from tests.hostile.conftest import LONG, make_tenant, money_of, verify_ledger
from tokens_forge.main import create_app

EXAMPLES = 80 if LONG else 20

# The app is built at import (its OpenAPI document needs no database); its lifespan starts on the
# first call, after `st_ready` has pointed its settings at the session's test database.
ST_SETTINGS = make_settings()
ST_APP = create_app(ST_SETTINGS)
schema = schemathesis.openapi.from_dict(ST_APP.openapi())
schema.app = ST_APP

REAL_IDS: dict[str, list[str]] = {}


@schema.hook("map_path_parameters")
def _real_ids_half_the_time(ctx, path_parameters):
    """Swap a generated id for a real one of the same kind for about half of the examples
    (decided by a hash of the generated value, so that a failing example replays the same)."""
    if not path_parameters:
        return path_parameters
    out = dict(path_parameters)
    for name, value in path_parameters.items():
        real = REAL_IDS.get(name)
        if real and hashlib.sha256(repr(value).encode()).digest()[0] % 2 == 0:
            out[name] = real[hashlib.sha256(repr(value).encode()).digest()[1] % len(real)]
    return out


@pytest.fixture(scope="session")
async def st_world(admin, client, st_tenant):
    """Real ids for the path parameters: the fuzzing tenant's runs and receipts (/v1), a
    sacrificial account's project, key and route (/admin/v1: a fuzzed PATCH or revoke may
    break them, so not the fuzzing tenant's)."""
    victim = await make_tenant(admin, name="sacrificial")
    t = st_tenant
    run = ok(await client.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 100_000,
                                                  "name": "fuzz"}, headers=t.auth))
    # one refused request gives the tenant a receipt without spending anything
    r = await client.post("/v1/chat/completions", headers=t.auth,
                          json={"model": t.model, "messages": [{"role": "user", "content": "x"}],
                                "max_tokens": 1_000_000, "n": 128})
    assert r.status_code == 402, r.text
    REAL_IDS.update({
        "receipt_id": [r.headers["x-tf-receipt-id"]],
        "run_id": [run["id"]],
        "account_id": [victim.account["id"]],
        "project_id": [victim.project["id"]],
        "key_id": [victim.key["id"]],
        "route_id": [victim.routes["official"]["id"], victim.routes["routed"]["id"]],
    })
    before = await money_of(client, t)
    return before


@pytest.fixture(scope="session")
def st_ready(database_url, st_headers, st_world):
    ST_SETTINGS.database_url = database_url
    yield st_headers
    from schemathesis.python import asgi

    try:
        asgi.shutdown_lifespans()
    except Exception:
        pass


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
def test_every_operation_survives_fuzzing(case, st_ready):
    headers = st_ready["admin"] if case.path.startswith("/admin/") else st_ready["tenant"]
    response = case.call(headers=headers)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


async def test_fuzzing_spent_nothing_and_the_ledger_verifies(app, client, st_tenant, st_world):
    """Nothing the fuzzer sent with the tenant's key could move money (chat bodies are not in
    the schema, preflight and runs charge nothing): the wallet is as it was."""
    assert await money_of(client, st_tenant) == st_world
    await verify_ledger(app)
