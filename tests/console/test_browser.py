"""The console in a real browser (headless Debian Chromium) against a real `tokens-forge serve
--workers 2` on real PostgreSQL with the mock upstream: sign in, the playground's preflight panel,
a streamed answer and a receipt whose charge is the wallet's change, Stop, a run cancelled from
its page, an admin creating a key (secret shown once), and exports that download and parse."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path

import httpx
from playwright.async_api import expect

from tests.conftest import ADMIN, ok
from tests.console.conftest import VIEWPORT, screenshot, sign_in

PANEL_FIELDS = ["api_key", "model", "mode", "route", "paying_bucket", "estimated_tokens", "estimated_cost_micros",
                "estimated_runtime_s", "minimum_recommended_balance_micros", "balance", "limits",
                "current_key_spend_micros", "retry_policy", "fallback_policy", "failed_request_charge_policy",
                "cancel", "receipt_location", "ledger_location", "warnings", "ok_to_start"]


WIDER_THAN_SCREEN = """() => [...document.querySelectorAll("body *")]
  .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                && !el.closest(".table-wrap"))
  .map(el => el.tagName + "." + el.className + " " + Math.round(el.getBoundingClientRect().right))"""


async def api_get(live, path: str, secret: str) -> dict:
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as c:
        return ok(await c.get(path, headers={"Authorization": f"Bearer {secret}"}))


async def wallet(live, t) -> dict:
    return await api_get(live, "/v1/wallet", t.secret)


async def micros(scope, testid: str) -> int:
    return int(await scope.get_by_test_id(testid).get_attribute("value"))


async def wait_receipt(page, status: str) -> None:
    try:
        await page.locator(f'#pg-receipt [data-testid="receipt"][data-status="{status}"]').wait_for()
    except AssertionError:
        raise
    except Exception as exc:
        shown = await page.inner_text("#pg-status"), await page.inner_text("#pg-receipt-section")
        raise AssertionError(f"no {status} receipt: {shown}") from exc


async def download(page, testid: str) -> tuple[str, str]:
    async with page.expect_download() as info:
        await page.get_by_test_id(testid).click()
    dl = await info.value
    return dl.suggested_filename, await asyncio.to_thread(Path(await dl.path()).read_text)


async def test_playground_panel_stream_receipt_and_records(live_gateway, context):
    live = live_gateway
    t = live.tenant(credit=5_000_000, key={"limits": {"daily_micros": 2_000_000}, "min_balance_micros": 4_999_900})
    page = await context.new_page()
    await sign_in(page, live.base, t.secret)
    assert await page.get_by_role("heading", name="Overview").is_visible()
    await page.get_by_label("For a request on model").select_option(t.model)
    await page.get_by_role("button", name="Check").click()
    await page.wait_for_url(f"**/console?model={t.model}")
    assert await micros(page, "available-credit") == (await wallet(live, t))["buckets"]["credit"]["available_micros"]
    assert t.secret not in await page.content()
    await screenshot(page, "overview")

    await page.get_by_role("link", name="Playground").click()
    await page.get_by_label("Model").select_option(t.model)  # routes are global: every tenant's models are listed
    panel = page.get_by_test_id("preflight")
    await panel.wait_for()
    for field in PANEL_FIELDS:
        assert await panel.locator(f'[data-field="{field}"]').count() == 1, field
    assert await panel.locator('[data-field="paying_bucket"]').inner_text() == "credit"
    # the key's minimum balance is close to the balance: the panel highlights the warning
    assert await panel.locator(".warning").filter(has_text="balance_below_key_minimum").count() == 1

    before = (await wallet(live, t))["buckets"]["credit"]["available_micros"]
    await page.get_by_label("Max output tokens").fill("8")
    await page.get_by_label("Prompt").fill("Say hello to the ledger, please.")
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_test_id("answer")).to_contain_text("w7")
    assert (await page.get_by_test_id("answer").inner_text()).strip() == " ".join(f"w{i}" for i in range(8))
    await wait_receipt(page, "succeeded")
    charge = await micros(page, "receipt-charge")
    after = (await wallet(live, t))["buckets"]["credit"]["available_micros"]
    assert charge > 0 and before - after == charge
    receipt_id = await page.locator("#pg-receipt [data-receipt-id]").get_attribute("data-receipt-id")
    receipt = await api_get(live, f"/v1/receipts/{receipt_id}", t.secret)
    assert receipt["total_charged_micros"] == charge
    assert receipt["attempts"][0]["price_snapshot_id"] in await page.inner_text("#pg-receipt")
    await expect(panel.locator(".warning")).to_have_count(1)  # the panel refreshed after the request
    await page.mouse.wheel(0, 300)  # the answer, the receipt and the (sticky) panel in one picture
    await screenshot(page, "playground", "console-playground.png")
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    wide = await page.evaluate(WIDER_THAN_SCREEN)
    assert wide == [], " | ".join(wide)
    await screenshot(page, "playground-phone")
    await page.set_viewport_size(VIEWPORT)

    await page.get_by_test_id("receipt-ledger-link").click()
    await page.wait_for_url(f"**/console/records/ledger?receipt_id={receipt_id}&include=holds")
    ledger = page.get_by_test_id("records-ledger")
    assert await ledger.locator("tbody tr").count() >= 2 and "settle" in await ledger.inner_text()
    await screenshot(page, "records-ledger")

    await page.goto(live.base + "/console/records/usage")
    assert receipt_id in await page.get_by_test_id("records-usage").inner_text()
    name, text = await download(page, "export-csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert name == "usage.csv"
    [row] = [r for r in rows if r["receipt_id"] == receipt_id]
    assert int(row["charged_micros"]) == charge
    name, text = await download(page, "export-jsonl")
    assert name == "usage.jsonl"
    assert [json.loads(line)["receipt_id"] for line in text.splitlines()] == [r["receipt_id"] for r in rows]
    await screenshot(page, "records-usage")

    await page.get_by_role("link", name="Failures").click()
    await page.get_by_test_id("records-failures").wait_for()
    await screenshot(page, "records-failures")
    await page.get_by_role("link", name="Route health").click()
    assert t.routes["official"]["id"] in await page.inner_text("main")
    await screenshot(page, "route-health")
    live.verify()


async def test_stop_button_aborts_the_stream_and_the_receipt_says_cancelled(live_gateway, context):
    live = live_gateway
    t = live.tenant(official="drip:100")
    page = await context.new_page()
    await sign_in(page, live.base, t.secret)
    await page.goto(f"{live.base}/console/playground?model={t.model}")
    await page.get_by_test_id("preflight").wait_for()
    before = (await wallet(live, t))["buckets"]["credit"]["available_micros"]
    await page.get_by_label("Max output tokens").fill("500")
    # by keyboard alone: from the prompt, Tab past "Check preflight" to Send; Stop takes the focus
    await page.get_by_label("Prompt").focus()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.id") == "pg-send"
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("answer")).to_contain_text("w3")
    assert await page.evaluate("() => document.activeElement.id") == "pg-stop", await page.inner_text("#pg-status")
    await page.keyboard.press("Enter")
    await wait_receipt(page, "cancelled")
    delivered = len((await page.get_by_test_id("answer").inner_text()).split())
    charge = await micros(page, "receipt-charge")
    assert 4 <= delivered < 200
    assert before - (await wallet(live, t))["buckets"]["credit"]["available_micros"] == charge
    live.verify()


async def test_run_started_from_the_page_is_cancelled_with_its_button(live_gateway, context):
    live = live_gateway
    t = live.tenant(official="drip:100")
    page = await context.new_page()

    async def accept(dialog):
        await dialog.accept()

    page.on("dialog", accept)
    await sign_in(page, live.base, t.secret)
    await page.get_by_role("link", name="Runs").click()
    await page.get_by_label("Name", exact=True).fill("nightly report")
    await page.get_by_label("Model", exact=True).select_option(t.model)
    await page.get_by_label("Mode", exact=True).select_option("quick")
    await page.get_by_label("Budget (micros)").fill("5000")
    await page.get_by_role("button", name="Start run").click()
    await page.wait_for_url("**/console/runs/run_*")
    run_id = page.url.rsplit("/", 1)[1]
    assert await page.get_by_test_id("run-status").inner_text() == "ready"
    assert t.model in await page.inner_text("main")

    # a request of the run, streaming slowly in the playground (another tab)
    tab = await context.new_page()
    await tab.goto(f"{live.base}/console/playground?run_id={run_id}&model={t.model}")
    await tab.get_by_test_id("preflight").wait_for()
    assert (await tab.locator('[data-field="cancel"]').inner_text()).startswith("yes")
    await tab.get_by_label("Max output tokens").fill("500")
    await tab.get_by_role("button", name="Send").click()
    await expect(tab.get_by_test_id("answer")).to_contain_text("w2")

    await page.bring_to_front()
    await expect(page.get_by_test_id("run-status")).to_have_text("running")
    await expect(page.get_by_test_id("requests-pending")).to_have_text("1")
    await screenshot(page, "run-running")
    cancel = page.get_by_role("button", name="Cancel")
    assert await cancel.is_enabled()
    started = time.monotonic()
    await cancel.click()
    await expect(page.get_by_test_id("run-status")).to_have_text("cancelled", timeout=3_000)
    assert time.monotonic() - started < 3.0
    assert await page.get_by_role("button", name="Cancel").is_disabled()

    # the stream was cut with run_cancelled; the run receipt shows once the request settled
    await expect(tab.locator("#pg-status")).to_contain_text("run_cancelled")
    await page.get_by_test_id("run-receipt").wait_for()
    run = await api_get(live, f"/v1/runs/{run_id}", t.secret)
    assert run["status"] == "cancelled" and run["requests"]["cancelled"] == 1
    assert await micros(page, "run-receipt-charged") == run["spent_micros"] > 0
    await screenshot(page, "run-cancelled")
    await page.get_by_role("link", name="Runs").click()
    assert "nightly report" in await page.inner_text("main")
    await screenshot(page, "runs")
    live.verify()


async def test_admin_creates_a_key_and_sees_its_secret_once(live_gateway, context):
    live = live_gateway
    t = live.tenant()
    page = await context.new_page()
    await sign_in(page, live.base, ADMIN)
    assert page.url.endswith("/console/admin")
    await page.get_by_label("Find by id or name").fill(t.account["id"])
    await page.get_by_role("button", name="Find").click()
    await screenshot(page, "admin-accounts")
    await page.get_by_role("link", name=t.account["name"]).click()
    await page.wait_for_url(f"**/console/admin/accounts/{t.account['id']}")

    form = page.locator("#new-key")
    await form.get_by_label("Name").fill("console-made")
    await form.get_by_label("Daily limit (micros)").fill("700000")
    await form.get_by_label("Requests per minute").fill("30")
    await form.get_by_role("button", name="Create key").click()
    secret = await page.get_by_test_id("new-secret").inner_text()
    assert secret.startswith("tf-")
    await screenshot(page, "admin-key-created")
    made = await api_get(live, "/v1/wallet", secret)
    assert made["limits"]["key"]["daily_micros"] == 700_000
    assert made["rate_limits"] == {"requests_per_minute": 30, "tokens_per_minute": None}
    await page.reload()
    assert secret not in await page.content()
    keys = await page.get_by_test_id("keys").inner_text()
    assert "console-made" in keys and "30 requests per minute" in keys

    # a top-up through the form moves the balance the page shows (read back from the API)
    await page.get_by_label("Amount (micros)", exact=True).fill("1234567")
    await page.get_by_label("Reference").fill(f"console-{t.account['id']}")
    await page.get_by_role("button", name="Top up").click()
    await page.locator("#flash").filter(has_text="Top-up").wait_for()
    assert await micros(page, "balance-credit") == 10_000_000 + 1_234_567
    await screenshot(page, "admin-account")

    # a price change shows the new snapshot
    route_id = t.routes["official"]["id"]
    await page.goto(f"{live.base}/console/admin/routes/{route_id}")
    old = await page.get_by_test_id("current-snapshot").inner_text()
    await page.get_by_label("Input price (micros per Mtok)").fill("3000000")
    await page.get_by_role("button", name="Save route").click()
    await page.locator("#flash").filter(has_text="Price snapshot now").wait_for()
    new = await page.get_by_test_id("current-snapshot").inner_text()
    assert new != old and new in await page.inner_text("#flash")
    assert await page.get_by_test_id("snapshots").locator("tbody tr").count() == 2
    await screenshot(page, "admin-route")
    await page.get_by_role("link", name="Routes & prices").click()
    await screenshot(page, "admin-routes")
    await page.get_by_role("link", name="Audit log").click()
    assert "key.create" in await page.get_by_test_id("audit").inner_text()
    assert secret not in await page.content()
    await screenshot(page, "admin-audit")
    live.verify()
