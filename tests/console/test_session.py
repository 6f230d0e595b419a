"""The console's session and CSRF rules over ASGI (no browser): the cookie (httpOnly,
SameSite=Strict, scoped to /console) holds a random session id, never the secret, and the database
only its hash; a session ends at sign-out, at its key's revocation and at its expiry, and a
replayed copy of its cookie is refused; every state-changing request needs the page's CSRF token."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import ADMIN

PAGES = ["/console", "/console/playground", "/console/runs", "/console/records/usage", "/console/records/failures",
         "/console/records/ledger", "/console/health"]
ADMIN_PAGES = ["/console/admin", "/console/admin/routes", "/console/admin/audit"]


@pytest.fixture
async def browser(app):
    """A fresh cookie jar per test, like a new browser."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test", timeout=30) as c:
        yield c


def form_token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def page_csrf(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]*)"', html).group(1)


def session_cookies(r: httpx.Response) -> list[str]:
    return [v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("tf_console=")]


async def sign_in(c: httpx.AsyncClient, secret: str) -> httpx.Response:
    page = await c.get("/console/sign-in")
    assert page.status_code == 200
    return await c.post("/console/sign-in", data={"secret": secret, "csrf": form_token(page.text)},
                        headers={"Origin": "http://gw.test"})


async def test_signed_out_pages_redirect_to_sign_in(browser):
    for path in [*PAGES, *ADMIN_PAGES]:
        r = await browser.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/console/sign-in", path
    r = await browser.post("/console/api/v1/runs", json={})
    assert r.status_code == 401 and r.json()["error"]["code"] == "console_sign_in_required"


async def test_sign_in_sets_strict_httponly_cookie_and_no_page_shows_the_secret(browser, tenant):
    t = await tenant()
    r = await sign_in(browser, t.secret)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    [cookie] = session_cookies(r)
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= attrs, cookie
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    for path in PAGES:
        page = await browser.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert t.secret not in page.text, path
        assert "Content-Security-Policy" in page.headers and page.headers["cache-control"] == "no-store"
        assert page_csrf(page.text) and page_csrf(page.text) not in t.secret
    assert {c.path for c in browser.cookies.jar} == {"/console"}  # never sent to /v1 or /admin/v1


async def test_wrong_secret_and_forged_sign_in_are_refused(browser, tenant):
    r = await sign_in(browser, "tf-not-a-key")
    assert r.status_code == 401 and not session_cookies(r)
    t = await tenant()
    fresh = httpx.AsyncClient(transport=browser._transport, base_url="http://gw.test")
    async with fresh:
        # no double-submit cookie: a form posted from elsewhere
        r = await fresh.post("/console/sign-in", data={"secret": t.secret, "csrf": "guess"})
        assert r.status_code == 403 and not session_cookies(r)
    page = await browser.get("/console/sign-in")
    r = await browser.post("/console/sign-in", data={"secret": t.secret, "csrf": form_token(page.text)},
                           headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


async def test_post_without_csrf_token_is_refused(browser, tenant):
    t = await tenant()
    await sign_in(browser, t.secret)
    csrf = page_csrf((await browser.get("/console/runs")).text)
    body = {"model": t.model, "mode": "quick", "budget_micros": 1000}
    r = await browser.post("/console/api/v1/runs", json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    r = await browser.post("/console/api/v1/runs", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    r = await browser.post("/console/api/v1/runs", json=body,
                           headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert r.status_code == 403
    r = await browser.post("/console/api/v1/runs", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.json()["status"] == "ready"
    r = await browser.post("/console/sign-out", data={"csrf": "wrong"})
    assert r.status_code == 403


async def test_proxy_keeps_keys_to_v1_and_the_admin_to_admin_v1(browser, tenant):
    t = await tenant()
    await sign_in(browser, t.secret)
    assert (await browser.get("/console/api/v1/wallet")).json()["account_id"] == t.account["id"]
    r = await browser.get(f"/console/api/admin/v1/accounts/{t.account['id']}")
    assert r.status_code == 403
    assert (await browser.get("/console/admin")).status_code == 403
    async with httpx.AsyncClient(transport=browser._transport, base_url="http://gw.test") as admin:
        r = await sign_in(admin, ADMIN)
        assert r.status_code == 303 and r.headers["location"] == "/console/admin"
        for path in ADMIN_PAGES:
            page = await admin.get(path)
            assert page.status_code == 200 and ADMIN not in page.text, path
        assert (await admin.get("/console/api/v1/wallet")).status_code == 403
        acct = (await admin.get(f"/console/api/admin/v1/accounts/{t.account['id']}")).json()
        assert acct["balances"]["credit"]["available_micros"] == 10_000_000
        assert (await admin.get(f"/console/admin/accounts/{t.account['id']}")).status_code == 200
        assert (await admin.get(f"/console/admin/keys/{t.key['id']}")).status_code == 200
        assert (await admin.get(f"/console/admin/routes/{t.routes['official']['id']}")).status_code == 200


def cookie_value(r: httpx.Response) -> str:
    [cookie] = session_cookies(r)
    return cookie.split(";")[0].split("=", 1)[1]


async def replay(app, value: str, path: str = "/console") -> httpx.Response:
    """Another browser that copied the cookie."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test",
                                 cookies={"tf_console": value}) as thief:
        return await thief.get(path)


async def stored(app, value: str):
    async with app.state.engine.connect() as conn:
        return (await conn.execute(text("SELECT * FROM console_sessions WHERE token_hash = :h"),
                                   {"h": hashlib.sha256(value.encode()).hexdigest()})).mappings().one_or_none()


async def test_the_cookie_is_a_session_id_stored_only_as_its_hash(app, browser, tenant):
    t = await tenant()
    value = cookie_value(await sign_in(browser, t.secret))
    assert t.secret not in value and len(value) >= 40
    row = await stored(app, value)
    assert row["kind"] == "key" and row["key_id"] == t.key["id"] and row["account_id"] == t.account["id"]
    assert row["revoked_at"] is None and row["expires_at"] > row["created_at"]
    async with app.state.engine.connect() as conn:
        dump = (await conn.execute(text("SELECT string_agg(s::text, ' ') FROM console_sessions s"))).scalar()
    assert value not in dump and t.secret not in dump
    assert (await replay(app, value)).status_code == 200  # the cookie alone signs in, until it ends


async def test_sign_out_revokes_the_session_and_a_replayed_cookie_is_refused(app, browser, tenant):
    t = await tenant()
    value = cookie_value(await sign_in(browser, t.secret))
    csrf = page_csrf((await browser.get("/console")).text)
    r = await browser.post("/console/sign-out", data={"csrf": csrf}, headers={"Origin": "http://gw.test"})
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"
    [cookie] = session_cookies(r)
    assert "max-age=0" in cookie.lower()
    assert (await browser.get("/console")).status_code == 303
    for path in ("/console", "/console/records/usage"):
        r = await replay(app, value, path)
        assert r.status_code == 303 and r.headers["location"] == "/console/sign-in", path
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test",
                                 cookies={"tf_console": value}) as thief:
        r = await thief.get("/console/api/v1/wallet")
        assert r.status_code == 401 and r.json()["error"]["code"] == "console_sign_in_required"
    row = await stored(app, value)
    assert row["revoked_reason"] == "sign_out" and row["revoked_at"] is not None


async def test_revoked_key_ends_its_sessions_and_a_replayed_cookie_is_refused(app, browser, tenant, admin):
    t = await tenant()
    value = cookie_value(await sign_in(browser, t.secret))
    other = cookie_value(await sign_in(httpx.AsyncClient(transport=browser._transport, base_url="http://gw.test"),
                                       t.secret))
    assert (await browser.get("/console")).status_code == 200
    assert (await admin.post(f"/keys/{t.key['id']}/revoke")).status_code == 200
    # no wait for any cache: the session is checked against the key's status on each request
    assert (await browser.get("/console")).status_code == 303
    for v in (value, other):
        assert (await replay(app, v)).status_code == 303
        assert (await stored(app, v))["revoked_reason"] == "key_revoked"


async def test_expired_session_and_unknown_cookie_are_refused(app, browser, tenant):
    t = await tenant()
    value = cookie_value(await sign_in(browser, t.secret))
    async with app.state.engine.begin() as conn:
        await conn.execute(text("""UPDATE console_sessions SET created_at = now() - interval '9 hours',
                                          expires_at = now() - interval '1 hour' WHERE token_hash = :h"""),
                           {"h": hashlib.sha256(value.encode()).hexdigest()})
    assert (await replay(app, value)).status_code == 303
    assert (await replay(app, "made-up-" + "x" * 40)).status_code == 303
    assert (await replay(app, t.secret)).status_code == 303  # the key's secret is no session id


async def test_admin_sessions_end_when_the_admin_token_changes(app, tenant):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
        value = cookie_value(await sign_in(c, ADMIN))
        assert ADMIN not in value and (await c.get("/console/admin")).status_code == 200
        assert (await stored(app, value))["admin_check"] not in (None, ADMIN)
        settings = app.state.settings
        settings.admin_token = ADMIN + "-rotated"
        try:
            assert (await c.get("/console/admin")).status_code == 303
        finally:
            settings.admin_token = ADMIN
        assert (await c.get("/console/admin")).status_code == 200


async def test_unknown_run_and_receipt_render_the_api_error(browser, tenant):
    t = await tenant()
    await sign_in(browser, t.secret)
    r = await browser.get("/console/runs/run_missing")
    assert r.status_code == 404 and "not_found" in r.text and "<html" in r.text
    r = await browser.get("/console/receipts/rcpt_missing?fragment=true", headers={"X-Console-Fragment": "1"})
    assert r.status_code == 404 and "<html" not in r.text and "role=\"alert\"" in r.text
