"""GET /metrics in-process: the SPEC §11 series, exact request counts, the database's gauges
read at scrape time, and the optional bearer token."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import ok
from tests.observability.conftest import parse_metrics, sample

SPEC_SERIES = ("tf_requests_total", "tf_request_duration_seconds", "tf_upstream_attempts_total",
               "tf_charged_micros_total", "tf_held_micros", "tf_holds_open", "tf_ledger_write_retries_total",
               "tf_sweeper_released_total")


async def scrape(client) -> dict:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(r.text)


async def test_every_spec_series_is_exposed(client):
    text = (await client.get("/metrics")).text
    for name in SPEC_SERIES:
        assert f"# TYPE {name} " in text, f"{name} is missing"
    assert "# TYPE tf_request_duration_seconds histogram" in text
    assert "# TYPE tf_held_micros gauge" in text and "# TYPE tf_holds_open gauge" in text


async def test_requests_are_counted_by_endpoint_and_status(client, tenant):
    t = await tenant()
    before = await scrape(client)
    for _ in range(3):
        ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    r = await client.post("/v1/chat/completions", json=t.chat(), headers={"Authorization": "Bearer tf-nope"})
    assert r.status_code == 401
    after = await scrape(client)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("tf_requests_total", endpoint="chat_completions", status="200") == 3
    assert delta("tf_requests_total", endpoint="chat_completions", status="401") == 1
    assert delta("tf_errors_total", endpoint="chat_completions", code="invalid_api_key") == 1
    assert delta("tf_request_duration_seconds_count", endpoint="chat_completions") == 4
    assert delta("tf_request_duration_seconds_bucket", endpoint="chat_completions", le="+Inf") == 4
    assert sample(after, "tf_requests_in_flight", endpoint="chat_completions") == 0
    # the scrape before this one was counted too, under its own endpoint
    assert delta("tf_requests_total", endpoint="metrics", status="200") == 1


async def test_money_held_is_read_from_the_database_while_a_request_runs(app, client, tenant):
    t = await tenant(official="slow:1500")
    before = await scrape(client)
    call = asyncio.create_task(client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    during = before
    for _ in range(100):
        await asyncio.sleep(0.05)
        during = await scrape(client)
        if sample(during, "tf_holds_open") > sample(before, "tf_holds_open"):
            break
    r = await call
    ok(r)
    reserved = int(r.headers["x-tf-reserved-micros"])
    assert sample(during, "tf_holds_open") - sample(before, "tf_holds_open") == 1
    assert sample(during, "tf_held_micros", bucket="credit") - sample(before, "tf_held_micros", bucket="credit") \
        == reserved
    assert sample(during, "tf_held_micros", bucket="routed") == sample(before, "tf_held_micros", bucket="routed")
    assert sample(during, "tf_requests_in_flight", endpoint="chat_completions") == 1
    assert sample(during, "tf_database_up") == 1
    after = await scrape(client)
    assert sample(after, "tf_holds_open") == sample(before, "tf_holds_open")
    # the database's own count, for the same moment: nothing else is running
    async with app.state.pg.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM holds WHERE status = 'open'") == sample(after, "tf_holds_open")


async def test_route_states_come_from_the_breaker(app, client, tenant):
    t = await tenant()
    await app.state.health.refresh()
    m = await scrape(client)
    route = t.routes["official"]["id"]
    states = {s: sample(m, "tf_route_state", route_id=route, state=s) for s in ("healthy", "degraded", "down")}
    assert states == {"healthy": 1, "degraded": 0, "down": 0}


async def test_metrics_token_is_required_when_set(app, client):
    settings = app.state.settings
    app.state.settings = settings.model_copy(update={"metrics_token": "mt-secret-1"})
    try:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer mt-secret-2"})
        right = await client.get("/metrics", headers={"Authorization": "Bearer mt-secret-1"})
    finally:
        app.state.settings = settings
    for r in (missing, wrong):
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert "tf_requests_total" not in r.text
    assert right.status_code == 200 and "tf_requests_total" in right.text


async def test_the_grafana_dashboard_uses_only_series_that_exist(client):
    import json
    import re

    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    text = (await client.get("/metrics")).text
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    for name in {n for e in exprs for n in re.findall(r"\btf_[a-z0-9_]+", e)}:
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        assert family in families, f"the dashboard queries {name}, which /metrics does not have"


def test_serve_prepares_a_fresh_metrics_directory(tmp_path):
    from tokens_forge.observability.metrics import MULTIPROC_ENV, prepare_multiproc_dir

    env: dict[str, str] = {}
    made = prepare_multiproc_dir(env)
    assert env[MULTIPROC_ENV] == made and list(Path(made).iterdir()) == []
    Path(made).rmdir()
    # a directory the operator names is emptied of the last run's metric files, and only of those
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"x")
    (given / "notes.txt").write_text("keep")
    env = {MULTIPROC_ENV: str(given)}
    assert prepare_multiproc_dir(env) == str(given)
    assert sorted(p.name for p in given.iterdir()) == ["notes.txt"]


async def test_the_pipeline_reports_attempts_money_tokens_and_ledger_writes(client, tenant):
    t = await tenant(official="fail500", key={"retry_policy": {"max_attempts": 2, "retry_on": ["http_5xx"]},
                                              "fallback_policy": "any_bucket"})
    official, routed = t.routes["official"]["id"], t.routes["routed"]["id"]
    before = await scrape(client)
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    ok(r)
    after = await scrape(client)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    rc = ok(await client.get(f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))
    assert delta("tf_upstream_attempts_total", route_id=official, outcome="upstream_error") == 2
    assert delta("tf_upstream_attempts_total", route_id=routed, outcome="success") == 1
    assert delta("tf_upstream_attempt_duration_seconds_count", route_id=official) == 2
    assert delta("tf_reserved_micros_total", bucket="credit") + delta("tf_reserved_micros_total", bucket="routed") \
        == int(r.headers["x-tf-reserved-micros"])
    assert delta("tf_charged_micros_total", bucket="routed") == rc["total_charged_micros"] > 0
    assert delta("tf_charged_micros_total", bucket="credit") == 0
    assert delta("tf_tokens_total", model=t.model, type="input") == rc["prompt_tokens"]
    assert delta("tf_tokens_total", model=t.model, type="output") == rc["completion_tokens"] == 5
    assert delta("tf_ledger_write_duration_seconds_count", phase="reserve") == 3
    assert delta("tf_ledger_write_duration_seconds_count", phase="settle") == 3


async def test_a_ledger_write_retried_after_a_lost_connection_is_counted(app, client, tenant):
    from tests.ledger.test_writer import head_of, route_of
    from tokens_forge.ledger import attempts as store
    from tokens_forge.ledger.writer import LedgerWriter

    t = await tenant()
    route = await route_of(app, t)
    writer = LedgerWriter(durable_settle=True, on_retry=app.state.obs.metrics.ledger_write_retried)
    try:
        first = await store.open_attempt(app.state.pg, head_of(t, route), route, 1, 100, 600, create=True,
                                         reject=True, writer=writer)
        assert first.ok and writer.retries == 0
        # the writer's own connection is cut: its next write fails once, then goes through
        await app.state.pg.execute("SELECT pg_terminate_backend($1)", writer._conn.get_server_pid())
        before = await scrape(client)
        second = await store.open_attempt(app.state.pg, head_of(t, route), route, 1, 100, 600, create=True,
                                          reject=True, writer=writer)
        after = await scrape(client)
    finally:
        await writer.close()
    assert second.ok and writer.retries == 1
    assert sample(after, "tf_ledger_write_retries_total") - sample(before, "tf_ledger_write_retries_total") == 1
    for res in (first, second):  # give the money back
        await app.state.pg.execute("SELECT * FROM tf_write_batch($1::jsonb, '[]'::jsonb, true)",
                                   f'[{{"hold_id": {res.hold_id}, "charge": 0, "kind": "settle", "outcome": "cancelled",'
                                   f' "final_status": "cancelled"}}]')


async def test_holds_the_sweeper_releases_are_counted(app, client, tenant):
    from tests.pipeline.test_recovery import _expired_hold

    t = await tenant()
    before = await scrape(client)
    released = 0
    for _ in range(20):  # other apps of the suite sweep the same database: until this one releases one
        await _expired_hold(app, t)
        released += await app.state.background._sweep()
        counted = sample(await scrape(client), "tf_sweeper_released_total") - sample(before, "tf_sweeper_released_total")
        if counted:
            break
    # what this app's sweeps released (the explicit ones, and its own background task's)
    assert counted >= max(released, 1)
