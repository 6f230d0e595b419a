"""The console's flows in a real browser (headless Debian Chromium) against a real `tokens-forge
serve --workers 2`: a run started only after its preflight (a not-OK verdict explained and
confirmed), a live run page (tokens, per-minute intensity, projection, partial failures, pause,
cancel), records of a request paid from two buckets (key column, breakdowns, a phone's width),
the overview's chart, the model marketplace, the admin's route health, runs with Stop, key spend
and audit diff, and a session that ends at sign-out. Waits are for selectors, never sleeps."""

from __future__ import annotations

import asyncio
import json

import httpx
from playwright.async_api import expect

from tests.conftest import ADMIN, ok
from tests.console.conftest import VIEWPORT, screenshot, sign_in

PHONE = {"width": 375, "height": 812}
FLAT = 100

# Every money amount in the page's main part is on screen (not hidden, not off to either side).
MONEY_OFF_SCREEN = """() => { const w = document.documentElement.clientWidth;
  return [...document.querySelectorAll("main .money")].filter(el => {
      const r = el.getBoundingClientRect();
      return el.closest("details:not([open])") === null && (r.width === 0 || r.right > w + 1 || r.left < -1); })
    .map(el => el.outerHTML.slice(0, 100)); }"""
SCROLLS_SIDEWAYS = """() => [document.documentElement, ...document.querySelectorAll(".table-wrap")]
  .filter(el => el.scrollWidth > el.clientWidth + 1).map(el => el.className || el.tagName)"""
LABELS_OVERLAP = """() => { const boxes = [...document.querySelectorAll(".chart-label")]
    .filter(e => getComputedStyle(e).visibility !== "hidden").map(e => e.getBoundingClientRect());
  const bad = [];
  for (let i = 1; i < boxes.length; i++) if (boxes[i].left < boxes[i - 1].right + 2) bad.push(i);
  return {shown: boxes.length, overlapping: bad}; }"""


def two_bucket_tenant(live, **kw):
    """Its official route fails (charged a flat 100 micros on credit), the routed one answers:
    with fallback_policy any_bucket every request is paid from both buckets."""
    return live.tenant(official="fail500", official_charge={"mode": "flat", "flat_micros": FLAT},
                       key={"fallback_policy": "any_bucket", "name": "nightly-agent"}, **kw)


async def api(live, method: str, path: str, secret: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.base, timeout=60) as c:
        return await c.request(method, path, headers={"Authorization": f"Bearer {secret}", **kw.pop("headers", {})},
                               **kw)


async def chat(live, t, run_id: str | None = None, **over) -> httpx.Response:
    headers = {"X-TF-Run-Id": run_id} if run_id else {}
    return await api(live, "POST", "/v1/chat/completions", t.secret, json=t.chat(**over), headers=headers)


async def accept_dialogs(page) -> None:
    async def accept(dialog):
        await dialog.accept()

    page.on("dialog", accept)


async def test_run_starts_only_after_its_preflight_and_not_ok_needs_confirmation(live_gateway, context):
    live = live_gateway
    t = live.tenant()
    page = await context.new_page()
    await sign_in(page, live.base, t.secret)
    await page.goto(live.base + "/console/runs")
    form_panel = page.get_by_test_id("run-preflight")
    start = page.get_by_role("button", name="Start run")
    await page.get_by_label("Model", exact=True).select_option(t.model)
    await page.get_by_label("Mode", exact=True).select_option("quick")
    await form_panel.locator('[data-testid="preflight"][data-ok="true"] [data-field="route"]').filter(
        has_text=t.routes["official"]["id"]).wait_for()
    await expect(start).to_be_enabled()

    # a budget below the quick run's low estimate: not OK, explained, and Start needs the box ticked
    await page.get_by_label("Budget (micros)").fill("100")
    await expect(start).to_be_disabled()  # the panel shown no longer describes the form
    await form_panel.locator('[data-testid="preflight"][data-ok="false"]').wait_for()
    why = form_panel.get_by_test_id("not-ok-why")
    await expect(why).to_contain_text("run")
    await expect(start).to_be_disabled()
    await page.get_by_label("Name", exact=True).fill("tight budget")  # not a preflight input: no re-check
    await page.get_by_test_id("confirm-not-ok").check()
    await expect(start).to_be_enabled()
    await page.evaluate("window.scrollTo(0, 0)")
    await screenshot(page, "run-start-not-ok", "console-run-start.png")
    await start.click()
    await page.wait_for_url("**/console/runs/run_*")
    run_id = page.url.rsplit("/", 1)[1]
    await expect(page.get_by_test_id("stored-verdict")).to_have_attribute("data-ok", "false")
    stored = ok(await api(live, "GET", f"/v1/runs/{run_id}", t.secret))
    assert stored["name"] == "tight budget" and stored["budget_micros"] == 100
    assert stored["preflight"]["ok_to_start"] is False and stored["preflight"]["limits"]["run"]["limit"] == 100

    # an OK budget starts without any confirmation
    await page.goto(live.base + "/console/runs")
    await page.get_by_label("Model", exact=True).select_option(t.model)
    await page.get_by_label("Budget (micros)").fill("2000000")
    await form_panel.locator('[data-testid="preflight"][data-ok="true"]').wait_for()
    assert await page.get_by_test_id("confirm-not-ok").count() == 0
    await start.click()
    await page.wait_for_url("**/console/runs/run_*")
    await expect(page.get_by_test_id("stored-verdict")).to_have_attribute("data-ok", "true")
    live.verify()


async def test_live_run_page_intensity_projection_failures_pause_cancel(live_gateway, context):
    live = live_gateway
    t = two_bucket_tenant(live)
    run = ok(await api(live, "POST", "/v1/runs", t.secret,
                       json={"model": t.model, "mode": "quick", "budget_micros": 50_000, "name": "nightly report"}))
    page = await context.new_page()
    await accept_dialogs(page)
    await sign_in(page, live.base, t.secret)
    await page.goto(f"{live.base}/console/runs/{run['id']}")
    await expect(page.get_by_test_id("run-status")).to_have_text("ready")

    for n in (4, 6, 8):  # while the page is open: it follows each request as it settles
        ok(await chat(live, t, run["id"], max_tokens=n))
    shown = ok(await api(live, "GET", f"/v1/runs/{run['id']}", t.secret))
    total = shown["activity"]["tokens"]["total"]
    await expect(page.get_by_test_id("run-tokens")).to_have_attribute("data-value", str(total))
    await expect(page.get_by_test_id("run-status")).to_have_text("running")
    await expect(page.get_by_test_id("partial-failures")).to_contain_text("3 failed attempt(s)")
    assert int(await page.get_by_test_id("run-tokens-per-minute").inner_text()) > 0
    assert int(await page.get_by_test_id("run-spend-per-minute").get_attribute("value")) > 0
    projected = int(await page.get_by_test_id("run-projected-micros").get_attribute("value"))
    assert projected >= shown["spent_micros"] > 0
    assert t.routes["official"]["id"] in await page.get_by_test_id("run-intensity").locator("xpath=../..").inner_text()
    await screenshot(page, "run-live", "console-run.png")

    await page.get_by_role("button", name="Pause").click()
    await expect(page.get_by_test_id("run-status")).to_have_text("paused")
    r = await chat(live, t, run["id"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "run_paused"
    await page.get_by_role("button", name="Resume").click()
    await expect(page.get_by_test_id("run-status")).to_have_text("running")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.get_by_test_id("run-status")).to_have_text("cancelled")
    receipt_box = page.get_by_test_id("run-receipt")
    await receipt_box.wait_for()
    totals = ok(await api(live, "GET", f"/v1/runs/{run['id']}/receipt", t.secret))["totals"]
    for bucket in ("credit", "routed"):
        shown_micros = int(await page.get_by_test_id(f"run-receipt-{bucket}").get_attribute("value"))
        assert shown_micros == totals["by_bucket"][bucket]["charged_micros"] > 0
    assert totals["by_bucket"]["credit"]["charged_micros"] == 3 * FLAT
    await expect(receipt_box).to_contain_text("agree per bucket")
    live.verify()


async def test_records_of_a_request_paid_from_two_buckets_on_laptop_and_phone(live_gateway, context):
    live = live_gateway
    t = two_bucket_tenant(live)
    r = await chat(live, t)
    rid = r.headers["x-tf-receipt-id"]
    receipt = ok(await api(live, "GET", f"/v1/receipts/{rid}", t.secret))
    assert receipt["charged_by_bucket"]["credit"] == FLAT and receipt["charged_by_bucket"]["routed"] > 0
    page = await context.new_page()
    await sign_in(page, live.base, t.secret)
    await page.goto(live.base + "/console/records/usage")
    table = page.get_by_test_id("records-usage")
    rows = table.locator(f'tr[data-receipt="{rid}"]')
    await expect(rows).to_have_count(2)
    for bucket, micros in receipt["charged_by_bucket"].items():
        row = table.locator(f'tr[data-receipt="{rid}"][data-bucket="{bucket}"]')
        assert int(await row.locator(".money").get_attribute("value")) == micros
        await expect(row).to_contain_text("nightly-agent")  # the key's name beside its id
    by_key = page.get_by_test_id("by-key").locator(f'tr[data-group="{t.key["id"]}"]')
    assert int(await by_key.locator(".money").last.get_attribute("value")) == sum(receipt["charged_by_bucket"].values())
    await screenshot(page, "records-usage", "console-records.png")

    await page.set_viewport_size(PHONE)
    assert await page.evaluate(MONEY_OFF_SCREEN) == []
    assert await page.evaluate(SCROLLS_SIDEWAYS) == []
    await rows.first.scroll_into_view_if_needed()
    await screenshot(page, "records-usage-phone", "console-phone.png")
    for path in ("/console", f"/console/receipts/{rid}", "/console/records/failures",
                 "/console/records/ledger?include=holds", "/console/models", "/console/runs"):
        await page.goto(live.base + path)
        await page.locator("main h1").wait_for()
        assert await page.evaluate(MONEY_OFF_SCREEN) == [], path
        assert await page.evaluate(SCROLLS_SIDEWAYS) == [], path
    await page.set_viewport_size(VIEWPORT)

    await page.goto(f"{live.base}/console/receipts/{rid}")
    buckets = page.get_by_test_id("receipt-buckets")
    assert int(await buckets.get_by_test_id("receipt-charge-credit").get_attribute("value")) == FLAT
    await page.goto(live.base + "/console/records/failures")
    failure = page.get_by_test_id("records-failures").locator(f'tr[data-receipt="{rid}"]')
    await expect(failure).to_contain_text(t.routes["official"]["id"])
    assert int(await failure.locator(".money").get_attribute("value")) == FLAT
    live.verify()


async def test_overview_chart_labels_and_breakdowns(live_gateway, context):
    live = live_gateway
    t = two_bucket_tenant(live)
    ok(await chat(live, t))
    page = await context.new_page()
    await sign_in(page, live.base, t.secret)
    chart = page.get_by_test_id("spend-chart")
    await chart.wait_for()
    summary = ok(await api(live, "GET", "/v1/usage/summary", t.secret, params={"by": "day"}))["data"]
    for bucket in ("credit", "routed"):
        shown = int(await page.get_by_test_id(f"chart-total-{bucket}").get_attribute("value"))
        assert shown == sum(r["charged_micros"] for r in summary if r["bucket"] == bucket) > 0
    labels = await page.evaluate(LABELS_OVERLAP)
    assert labels["shown"] == 5 and labels["overlapping"] == [], labels
    await expect(page.get_by_test_id("by-model").locator(f'tr[data-group="{t.model}"]')).to_have_count(1)
    await page.get_by_role("heading", name="Spend per day, last 30 days (UTC)").evaluate("e => e.scrollIntoView()")
    await screenshot(page, "overview", "console-overview.png")
    await page.set_viewport_size(PHONE)
    labels = await page.evaluate(LABELS_OVERLAP)
    assert labels["shown"] >= 3 and labels["overlapping"] == [], labels
    assert await page.evaluate(MONEY_OFF_SCREEN) == []
    await page.set_viewport_size(VIEWPORT)


async def test_marketplace_shows_both_kinds_side_by_side_and_opens_the_playground(live_gateway, context):
    live = live_gateway
    t = live.tenant()
    ok(await chat(live, t))  # some latency to observe on the official route
    page = await context.new_page()
    await sign_in(page, live.base, t.secret)
    await page.get_by_role("link", name="Models").click()
    offer = page.locator(f'section.offer[data-model="{t.model}"]')
    await offer.wait_for()
    official, routed = offer.locator('[data-kind="official"]'), offer.locator('[data-kind="routed"]')
    a, b = await official.bounding_box(), await routed.bounding_box()
    assert a["x"] + a["width"] <= b["x"] and abs(a["y"] - b["y"]) < 2  # side by side
    for side, kind in ((official, "official"), (routed, "routed")):
        await expect(side).to_contain_text(t.routes[kind]["id"])
        await expect(side).to_contain_text("$1.00")  # 1,000,000 micros per million input tokens
        await expect(side).to_contain_text("$2.00")
        await expect(side).to_contain_text("credit" if kind == "official" else "routed")
    await expect(official).to_contain_text("p50")
    await offer.evaluate("e => e.scrollIntoView()")
    await screenshot(page, "models", "console-models.png")
    await offer.get_by_test_id(f"try-{t.model}-routed").click()
    await page.wait_for_url("**/console/playground?*")
    assert await page.get_by_label("Model").input_value() == t.model
    assert await page.get_by_label("Route preference").input_value() == "routed"
    panel = page.get_by_test_id("preflight")
    await expect(panel.locator('[data-field="paying_bucket"]')).to_have_text("routed")


async def test_admin_route_health_stops_a_customers_run_and_sees_key_spend_and_audit_diff(live_gateway, context):
    live = live_gateway
    t = live.tenant(official="drip:100", key={"name": "batch-key"})
    ok(await chat(live, t))  # spend on the key; the route has history
    run = ok(await api(live, "POST", "/v1/runs", t.secret,
                       json={"model": t.model, "mode": "quick", "budget_micros": 60_000, "name": "customer run"}))
    ok(live.admin.patch(f"/keys/{t.key['id']}", json={"limits": {"daily_micros": 4_000_000}}))

    body = {**t.chat(max_tokens=500), "stream": True}
    flowing, ended = asyncio.Event(), []

    async def stream():
        async with httpx.AsyncClient(base_url=live.base, timeout=60) as c, c.stream(
                "POST", "/v1/chat/completions", json=body, headers={**t.auth, "X-TF-Run-Id": run["id"]}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:") and '"content"' in line:
                    flowing.set()
                if line.startswith("data:") and '"error"' in line:
                    ended.append(json.loads(line[5:]))
        flowing.set()

    streaming = asyncio.create_task(stream())
    page = await context.new_page()
    await accept_dialogs(page)
    await sign_in(page, live.base, ADMIN)
    await page.get_by_role("link", name="Route health").click()
    await expect(page.get_by_test_id("admin-health")).to_contain_text(t.routes["official"]["id"])
    await screenshot(page, "admin-health", "console-admin-health.png")

    await asyncio.wait_for(flowing.wait(), 20)  # the customer's stream is under way
    await page.goto(f"{live.base}/console/admin/runs?account_id={t.account['id']}")
    row = page.get_by_test_id("admin-runs").locator(f'tr[data-run="{run["id"]}"]')
    await expect(row).to_contain_text("running")
    await expect(row).to_contain_text("batch-key")
    await screenshot(page, "admin-runs", "console-admin-runs.png")
    await row.get_by_role("button", name=f"Stop run {run['name']}").click()
    await expect(row).to_contain_text("cancelled")
    await asyncio.wait_for(streaming, 10)
    assert [e["error"]["code"] for e in ended] == ["run_cancelled"]

    await page.goto(f"{live.base}/console/admin/accounts/{t.account['id']}")
    spent = ok(await api(live, "GET", "/v1/wallet", t.secret))["key_spend_micros"]
    assert int(await page.get_by_test_id(f"spend-total-{t.key['id']}").get_attribute("value")) == spent["total"]
    assert int(await page.get_by_test_id(f"spend-today-{t.key['id']}").get_attribute("value")) == spent["today"]

    await page.goto(f"{live.base}/console/admin/audit?target_id={run['id']}")
    diff = page.get_by_test_id("audit").locator('tr[data-action="run.cancel"]').get_by_test_id("audit-diff")
    await expect(diff).to_contain_text("status")
    await expect(diff.locator("ins").first).to_have_text("cancelled")
    await page.goto(f"{live.base}/console/admin/audit?target_id={t.key['id']}")
    key_diff = page.get_by_test_id("audit").locator('tr[data-action="key.update"]').get_by_test_id("audit-diff")
    await expect(key_diff).to_contain_text("limits.daily_micros")
    await expect(key_diff).to_contain_text("4000000")
    await screenshot(page, "admin-audit", "console-admin-audit.png")
    live.verify()


async def test_a_copied_cookie_is_refused_after_sign_out_and_after_key_revocation(live_gateway, chromium):
    live = live_gateway
    for end in ("sign-out", "revoke"):
        t = live.tenant()
        owner, thief = await chromium.new_context(viewport=VIEWPORT), await chromium.new_context(viewport=VIEWPORT)
        page = await owner.new_page()
        await sign_in(page, live.base, t.secret)
        cookies = [c for c in await owner.cookies() if c["name"] == "tf_console"]
        assert len(cookies) == 1 and t.secret not in cookies[0]["value"] and cookies[0]["httpOnly"]
        await thief.add_cookies(cookies)
        stolen = await thief.new_page()
        await stolen.goto(live.base + "/console")
        await expect(stolen.get_by_role("heading", name="Overview")).to_be_visible()  # the copy works…
        if end == "sign-out":
            await page.get_by_role("button", name="Sign out").click()
            await page.wait_for_url("**/console/sign-in")
        else:
            ok(live.admin.post(f"/keys/{t.key['id']}/revoke"))
        await stolen.goto(live.base + "/console")
        await stolen.wait_for_url("**/console/sign-in")  # …until the session ends
        await page.goto(live.base + "/console")
        await page.wait_for_url("**/console/sign-in")
        await owner.close()
        await thief.close()
