"""Browser fixtures: Debian's Chromium (/usr/bin/chromium), headless, driven by Playwright's
Python client, against the `live_gateway` (a real `tokens-forge serve --workers 2`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
DOCS = ROOT / "docs"
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="session")
async def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI the browser tests run, never skip
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        # launch() gives every browser a fresh, temporary user-data-dir
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def context(chromium):
    ctx = await chromium.new_context(viewport=VIEWPORT, accept_downloads=True)
    ctx.set_default_timeout(15_000)
    yield ctx
    await ctx.close()


# Every form control of a page has a label (a <label for>, a wrapping label, or aria-label[ledby]).
UNLABELLED = """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button, meter")]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                && !el.getAttribute("aria-labelledby") && !(el.tagName === "BUTTON" && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 120))"""


async def screenshot(page, name: str, docs_name: str | None = None) -> Path:
    """Checks that every control is labelled, then saves test-artifacts/console/<name>.png; with
    TF_UPDATE_DOCS_SCREENSHOTS=1 also docs/<docs_name> (the README's pictures, regenerated on
    purpose rather than by every test run)."""
    assert await page.evaluate(UNLABELLED) == [], name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    if docs_name and os.environ.get("TF_UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / docs_name)
    return path


async def sign_in(page, base: str, secret: str) -> None:
    await page.goto(base + "/console/sign-in")
    await page.get_by_label("API key or admin token").fill(secret)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/sign-in" not in url)
