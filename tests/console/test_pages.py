"""Console pages and fragments over ASGI (no browser): what they show is what the API answered,
the chart's daily sums are the usage records', and API refusals render as pages."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest

from tests.conftest import ADMIN, ok
from tests.console.test_session import page_csrf, sign_in
from tokens_forge.console import directory
from tokens_forge.console.charts import breakdown, spend_chart
from tokens_forge.console.diff import audit_diff
from tokens_forge.console.render import percent, usd


@pytest.mark.parametrize(("micros", "shown"), [
    (0, "$0.000000"), (13, "$0.000013"), (1_000_000, "$1.000000"), (1_234_567_890, "$1,234.567890"),
    (-5, "-$0.000005"), (None, "—"), (10**15, "$1,000,000,000.000000"),
])
def test_usd_is_exact(micros, shown):
    assert usd(micros) == shown


def test_percent_and_chart_geometry():
    assert (percent(5, 10), percent(20, 10), percent(1, None), percent(-1, 10)) == (50, 100, 0, 0)
    days = [{"day": f"2025-01-{d:02d}", "credit": 0, "routed": 0} for d in range(1, 31)]
    days[3]["credit"], days[4]["routed"], days[5]["credit"] = 1_000, 250, 1
    chart = spend_chart(days)
    tall = [b for b in chart["bars"] if b["h"]]
    assert chart["peak"] == 1_000 and chart["total"] == {"credit": 1_001, "routed": 250}
    assert [(b["day"], b["bucket"]) for b in tall] == [("2025-01-04", "credit"), ("2025-01-05", "routed"),
                                                         ("2025-01-06", "credit")]
    assert tall[0]["h"] == chart["baseline"] - 12 and tall[2]["h"] == 1  # a tiny day still shows
    assert spend_chart([{"day": "2025-01-01", "credit": 0, "routed": 0}])["peak"] == 0
    # date labels: the last day, then every 7th back; never two within a week of each other
    cols = [label["col"] for label in chart["labels"]]
    assert cols == [2, 9, 16, 23, 30] and chart["labels"][-1]["text"] == "01-30"
    assert [label["minor"] for label in chart["labels"]] == [False, True, False, True, False]


def test_breakdown_and_audit_diff():
    rows = [{"group": "k1", "bucket": "credit", "requests": 1, "prompt_tokens": 3, "completion_tokens": 4,
             "charged_micros": 100},
            {"group": "k1", "bucket": "routed", "requests": 1, "prompt_tokens": 1, "completion_tokens": 2,
             "charged_micros": 13},
            {"group": "k2", "bucket": "routed", "requests": 2, "prompt_tokens": 0, "completion_tokens": 0,
             "charged_micros": 500}]
    assert breakdown(rows) == [
        {"group": "k2", "credit": 0, "routed": 500, "total": 500, "prompt_tokens": 0, "completion_tokens": 0},
        {"group": "k1", "credit": 100, "routed": 13, "total": 113, "prompt_tokens": 4, "completion_tokens": 6}]
    before = {"name": "a", "limits": {"daily_micros": 5, "total_micros": None}, "allowed_models": None}
    after = {"name": "a", "limits": {"daily_micros": 7, "total_micros": None}, "allowed_models": ["m"], "x": 1}
    assert audit_diff(before, after) == [
        {"field": "limits.daily_micros", "change": "changed", "before": "5", "after": "7"},
        {"field": "allowed_models", "change": "changed", "before": "null", "after": '["m"]'},
        {"field": "x", "change": "added", "before": None, "after": "1"}]


async def test_daily_spend_sums_the_usage_records(app, client, tenant):
    t = await tenant()
    charged = 0
    for n in (3, 5):
        r = await client.post("/v1/chat/completions", json=t.chat(max_tokens=n), headers=t.auth)
        charged += int(ok(r) and r.headers["x-tf-charged-micros"])
    async with app.state.engine.connect() as conn:
        days = await directory.daily_spend(conn, t.account["id"])
        earlier = await directory.daily_spend(conn, t.account["id"], days=7, today=date(2020, 1, 1))
    today = datetime.now(UTC).date().isoformat()
    assert len(days) == 30 and days[-1]["day"] == today and days[0]["day"] < today
    assert days[-1] == {"day": today, "credit": charged, "routed": 0}
    assert sum(d["credit"] + d["routed"] for d in days[:-1]) == 0
    assert all(d["credit"] == d["routed"] == 0 for d in earlier)


async def test_preflight_fragment_and_run_live_fragment(app, tenant):
    t = await tenant()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
        await sign_in(c, t.secret)
        csrf = page_csrf((await c.get("/console/playground")).text)
        body = {"model": t.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
        r = await c.post("/console/playground/preflight", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and "<html" not in r.text
        panel = ok(await c.post("/v1/preflight", json=body, headers=t.auth))
        for field in panel:
            assert f'data-field="{field}"' in r.text, field
        assert f'value="{panel["estimated_cost_micros"]["high"]}"' in r.text
        r = await c.post("/console/playground/preflight", json={**body, "model": "nope"},
                         headers={"X-CSRF-Token": csrf, "X-Console-Fragment": "1"})
        assert r.status_code == 404 and 'role="alert"' in r.text
        assert (await c.post("/console/playground/preflight", json=body)).status_code == 403

        run = ok(await c.post("/console/api/v1/runs", json={"model": t.model, "mode": "quick",
                                                             "budget_micros": 50_000},
                              headers={"X-CSRF-Token": csrf}))
        live = await c.get(f"/console/runs/{run['id']}/live")
        assert 'data-status="ready"' in live.text and 'data-actions="pause cancel finish"' in live.text
        ok(await c.post(f"/console/api/v1/runs/{run['id']}/pause", headers={"X-CSRF-Token": csrf}))
        live = await c.get(f"/console/runs/{run['id']}/live")
        assert 'data-status="paused"' in live.text and 'data-actions="resume cancel finish"' in live.text
        ok(await c.post(f"/console/api/v1/runs/{run['id']}/cancel", headers={"X-CSRF-Token": csrf}))
        live = await c.get(f"/console/runs/{run['id']}/live")
        assert 'data-done="true"' in live.text and 'data-actions=""' in live.text
        assert 'data-testid="run-receipt"' in live.text and "receipts, attempts and ledger agree per bucket" in live.text
        page = await c.get("/console/runs")
        assert run["id"] in page.text


async def test_records_pass_the_api_filters_and_render_its_refusals(app, client, tenant):
    t = await tenant()
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    receipt_id = r.headers["x-tf-receipt-id"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
        await sign_in(c, t.secret)
        page = await c.get("/console/records/usage", params={"bucket": "credit", "status": "succeeded"})
        assert page.status_code == 200 and receipt_id in page.text
        assert "/console/api/v1/usage?bucket=credit&amp;status=succeeded&amp;format=csv" in page.text
        assert receipt_id not in (await c.get("/console/records/usage", params={"bucket": "routed"})).text
        bad = await c.get("/console/records/usage", params={"route_kind": "bogus"})
        assert bad.status_code == 400 and "route_kind must be official or routed" in bad.text
        ledger = await c.get("/console/records/ledger", params={"receipt_id": receipt_id})
        assert ledger.text.count("data-transfer=") == 2 and "settle" not in ledger.text  # reserve, release
        ledger = await c.get("/console/records/ledger", params={"receipt_id": receipt_id, "include": "holds"})
        assert ledger.text.count("data-transfer=") == 3 and "settle" in ledger.text
        export = await c.get("/console/api/v1/usage", params={"format": "csv"})
        assert export.status_code == 200 and receipt_id in export.text
        assert export.headers["content-disposition"] == 'attachment; filename="usage.csv"'
        receipt = await c.get(f"/console/receipts/{receipt_id}")
        assert receipt.status_code == 200 and f'value="{r.headers["x-tf-charged-micros"]}"' in receipt.text


async def test_bad_query_parameters_render_as_a_page(app, tenant):
    t = await tenant()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
        await sign_in(c, t.secret)
        r = await c.get("/console/records/usage", params={"limit": "many"})
        assert r.status_code == 400 and "<html" in r.text and "limit" in r.text


async def test_marketplace_runs_form_and_names_beside_ids(app, client, tenant):
    t = await tenant(routed_charge={"mode": "flat", "flat_micros": 5})
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
        await sign_in(c, t.secret)
        page = (await c.get("/console/models")).text
        offer = page[page.index(f'data-model="{t.model}"'):]
        assert offer.index('data-kind="official"') < offer.index('data-kind="routed"')
        for kind in ("official", "routed"):
            assert t.routes[kind]["id"] in offer
            assert f"/console/playground?model={t.model}&amp;route_preference={kind}" in offer
        assert '<data class="money" value="1000000"' in offer and "$1.00" in offer  # 1 micro per input token
        assert "p50" in offer  # the official route's observed latency
        play = (await c.get("/console/playground", params={"model": t.model, "route_preference": "routed"})).text
        assert '<option value="routed" selected>' in play

        csrf = page_csrf((await c.get("/console/runs")).text)
        body = {"model": t.model, "mode": "quick", "budget_micros": 5, "route_preference": "auto"}
        r = await c.post("/console/runs/preflight", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and 'data-ok="false"' in r.text
        assert 'data-testid="not-ok-why"' in r.text and 'data-testid="confirm-not-ok"' in r.text
        assert "<strong>run</strong>" in r.text  # the run budget is what does not fit
        r = await c.post("/console/runs/preflight", json={**body, "budget_micros": 1_000_000},
                         headers={"X-CSRF-Token": csrf})
        assert 'data-ok="true"' in r.text and "confirm-not-ok" not in r.text

        usage = (await c.get("/console/records/usage")).text
        assert "Per key" in usage and f'data-group="{t.key["id"]}"' in usage
        assert f'k <code class="id">{t.key["id"]}</code>' in usage  # the key's name beside its id
        overview = (await c.get("/console")).text
        assert 'data-testid="by-key"' in overview and 'data-testid="by-model"' in overview
        assert f'data-group="{t.model}"' in overview


async def test_admin_pages_runs_health_key_spend_and_audit_diff(app, client, admin, tenant):
    t = await tenant()
    ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    run = ok(await client.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 9_000},
                               headers=t.auth))
    ok(await admin.patch(f"/keys/{t.key['id']}", json={"limits": {"daily_micros": 777},
                                                        "rate_limits": {"requests_per_minute": 1200,
                                                                        "tokens_per_minute": 90_000}}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
        await sign_in(c, ADMIN)
        runs = (await c.get("/console/admin/runs", params={"account_id": t.account["id"]})).text
        assert f'data-run="{run["id"]}"' in runs and f'data-action="admin/v1/runs/{run["id"]}/cancel"' in runs
        assert (await c.get(f"/console/admin/runs/{run['id']}")).status_code == 200
        health = (await c.get("/console/admin/health")).text
        assert t.routes["official"]["id"] in health
        account = (await c.get(f"/console/admin/accounts/{t.account['id']}")).text
        assert 'data-testid="spend-total-' + t.key["id"] + '"' in account
        assert f'value="13" title="13 micros" data-testid="spend-today-{t.key["id"]}"' in account
        key_page = (await c.get(f"/console/admin/keys/{t.key['id']}")).text
        assert 'data-testid="audit-diff"' in key_page and "limits.daily_micros" in key_page
        assert "<ins>777</ins>" in key_page and "<del>null</del>" in key_page
        assert "Rate limits: 1,200 requests, 90,000 tokens per minute." in key_page
        assert 'name="rate_limits.requests_per_minute" data-type="int?"' in key_page and 'value="1200"' in key_page
        assert 'name="rate_limits.tokens_per_minute"' in key_page and 'value="90000"' in key_page
        audit = (await c.get("/console/admin/audit", params={"target_id": t.key["id"]})).text
        assert "<ins>777</ins>" in audit


async def test_a_refused_request_of_a_run_shows_as_rejected_on_its_page_and_in_failures(app, client, tenant):
    t = await tenant(key={"limits": {"per_request_micros": 1}, "name": "capped"})
    run = ok(await client.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 9_000},
                               headers=t.auth))
    r = await client.post("/v1/chat/completions", json=t.chat(), headers={**t.auth, "X-TF-Run-Id": run["id"]})
    assert r.status_code == 402
    rid = r.headers["x-tf-receipt-id"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
        await sign_in(c, t.secret)
        live = (await c.get(f"/console/runs/{run['id']}/live")).text
        assert 'data-testid="requests-rejected">1<' in live
        failures = (await c.get("/console/records/failures", params={"run_id": run["id"]})).text
        row = failures[failures.index(f'data-receipt="{rid}"'):]
        assert 'data-outcome="rejected"' in failures and "capped" in row[:2000]
        usage = (await c.get("/console/records/usage", params={"status": "rejected"})).text
        assert f'data-receipt="{rid}"' in usage
