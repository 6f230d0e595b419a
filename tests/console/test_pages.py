"""Console pages and fragments over ASGI (no browser): what they show is what the API answered,
the chart's daily sums are the usage records', and API refusals render as pages."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest

from tests.conftest import ok
from tests.console.test_session import page_csrf, sign_in
from tokens_forge.console import directory
from tokens_forge.console.charts import spend_chart
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
        assert 'data-testid="run-receipt"' in live.text and "receipts and ledger agree" in live.text
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
        assert ledger.text.count("<tr>") >= 3 and "settle" in ledger.text
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
