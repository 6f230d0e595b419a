"""Targeted hostile input, in-process: oversized and deeply nested bodies, absurd numbers, every
kind of unicode (emoji, RTL overrides, NUL, lone surrogates as JSON escapes and as raw bytes) in
every string field of chat and admin bodies, in query strings and in path ids, and forged cursors.

Every answer is a clean 4xx in OpenAI's error shape (or a success where the input is merely
unusual): never a 500, never a 503 "database unavailable" for a database that is up. A bad input
leaves the wallet exactly as it was, and the ledger verifies after every test (conftest)."""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ok
from tests.hostile.conftest import ADMIN_AUTH, LONG, money_of, verify_ledger

BIG = 9 * 1024 * 1024  # over the default 8 MiB body limit
JSON = {"content-type": "application/json"}

WEIRD = {
    "emoji": "🦄🔥👩‍👩‍👧‍👦",
    "rtl": "مرحبا \u202eevil\u202c שלום",
    "nul": "a\u0000b",
    "zero_width": "\u200b\u200d\ufeff",
    "combining": "e" + "\u0301" * 500,
    "long": "😀" * 5000,
    "controls": "\u0001\u0007\u001b[31m\r\n\t",
}
# JSON texts that are not (valid) UTF-8 strings: a lone surrogate escape, raw bytes of one, raw junk
RAW_STRINGS = {
    "lone_surrogate_escape": b'"\\ud800"',
    "lone_low_surrogate_escape": b'"x\\udfffy"',
    "raw_surrogate_bytes": b'"\xed\xa0\x80"',
    "raw_invalid_utf8": b'"\xff\xfe\xc3\x28"',
}


def assert_clean(r, *allowed: int) -> dict | None:
    """A 4xx in OpenAI's error shape (or one of `allowed`); never a 5xx."""
    assert r.status_code < 500, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:400]}"
    if allowed:
        assert r.status_code in allowed, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:400]}"
    if r.status_code >= 400:
        err = r.json()["error"]
        assert {"message", "type", "code", "param"} <= set(err), err
        assert "Traceback" not in r.text and "File \"" not in r.text
        return err
    return None


def raw_body(template: dict, path: tuple, raw_value: bytes) -> bytes:
    """template as JSON with the value at `path` replaced by raw JSON bytes."""
    marker = "__RAW_" + uuid.uuid4().hex + "__"
    doc = orjson.loads(orjson.dumps(template))
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = marker
    return orjson.dumps(doc).replace(f'"{marker}"'.encode(), raw_value)


# -- size ---------------------------------------------------------------------------------------

async def test_oversized_chat_body_is_413(hclient, tenant):
    t = await tenant()
    before = await money_of(hclient, t)
    body = orjson.dumps(t.chat(messages=[{"role": "user", "content": "x" * BIG}]))
    r = await hclient.post("/v1/chat/completions", content=body, headers={**t.auth, **JSON})
    assert assert_clean(r, 413)["code"] == "request_too_large"

    async def chunks():  # no Content-Length: the limit must hold while streaming the body in
        for i in range(0, len(body), 1 << 20):
            yield body[i : i + (1 << 20)]

    r = await hclient.post("/v1/chat/completions", content=chunks(), headers={**t.auth, **JSON})
    assert assert_clean(r, 413)["code"] == "request_too_large"
    r = await hclient.post("/v1/chat/completions", content=b"{}", headers={**t.auth, **JSON, "content-length": "99999999999"})
    assert r.status_code in (400, 413)
    assert await money_of(hclient, t) == before


def _big_bodies(t, victim):
    pad = "x" * BIG
    return [
        ("POST", "/v1/preflight", "tenant", {"model": t.model, "messages": [{"role": "user", "content": pad}]}),
        ("POST", "/v1/runs", "tenant", {"model": t.model, "budget_micros": 1, "name": pad}),
        ("POST", "/admin/v1/accounts", "admin", {"name": pad}),
        ("POST", "/admin/v1/projects", "admin", {"account_id": victim.account["id"], "name": pad}),
        ("POST", "/admin/v1/keys", "admin", {"project_id": victim.project["id"], "name": pad}),
        ("POST", f"/admin/v1/accounts/{victim.account['id']}/topups", "admin",
         {"bucket": "credit", "amount_micros": 1, "reference": pad}),
        ("PATCH", f"/admin/v1/routes/{victim.routes['official']['id']}", "admin", {"upstream_model": pad}),
    ]


async def test_oversized_bodies_are_413_on_every_endpoint(hclient, hadmin, tenant):
    """The body limit is the gateway's, not only chat's: a 9 MiB body to any endpoint is refused
    before it is parsed (or at least refused: never parsed into a 5xx, never stored)."""
    t, victim = await tenant(), await tenant()
    before = await money_of(hclient, t), await money_of(hclient, victim)
    answers = []
    for method, path, who, body in _big_bodies(t, victim):
        headers = {**JSON, **(t.auth if who == "tenant" else {"Authorization": ADMIN_AUTH["Authorization"]})}
        r = await hclient.request(method, path, content=orjson.dumps(body), headers=headers)
        assert_clean(r)
        answers.append((method, path.split("/")[-1], r.status_code))
    assert (await money_of(hclient, t), await money_of(hclient, victim)) == before
    not_413 = [a for a in answers if a[2] != 413]
    assert not not_413, f"bodies over {BIG} bytes were not refused with 413: {not_413}"


# -- nesting ----------------------------------------------------------------------------------

def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [100_000, 5_000, 1_000])
async def test_deeply_nested_json_is_400_not_a_crash(hclient, hadmin, tenant, depth):
    t = await tenant()
    before = await money_of(hclient, t)
    chat = raw_body(t.chat(), ("messages", 0, "content"), nested(depth))
    r = await hclient.post("/v1/chat/completions", content=chat, headers={**t.auth, **JSON})
    assert assert_clean(r, 400)["code"] == "invalid_request"
    # nested inside a field the gateway passes through untouched
    chat = raw_body(t.chat(metadata={"a": 1}), ("metadata", "a"), nested(depth))
    r = await hclient.post("/v1/chat/completions", content=chat, headers={**t.auth, **JSON})
    assert_clean(r, 200, 400)
    if r.status_code == 200:  # a legal body: served and charged exactly once
        rc = ok(await hclient.get(f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))
        before["buckets"]["credit"]["posted_micros"] -= rc["total_charged_micros"]
        before["buckets"]["credit"]["available_micros"] -= rc["total_charged_micros"]
        before["key_spend"] = (await money_of(hclient, t))["key_spend"]
    pre = raw_body({"model": t.model, "messages": [{"role": "user", "content": "x"}]},
                   ("messages", 0, "content"), nested(depth))
    assert_clean(await hclient.post("/v1/preflight", content=pre, headers={**t.auth, **JSON}), 200, 400)
    adm = raw_body({"name": "x"}, ("name",), nested(depth))
    assert_clean(await hclient.post("/admin/v1/accounts", content=adm,
                                   headers={**JSON, "Authorization": ADMIN_AUTH["Authorization"]}), 400)
    assert await money_of(hclient, t) == before


# -- numbers ----------------------------------------------------------------------------------

ABSURD = [0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, 1.5, 1e308, -0.0, "5", True, [], {}]


async def test_absurd_n_and_max_tokens_never_reach_the_ledger(hclient, tenant):
    t = await tenant()
    before = await money_of(hclient, t)
    for field, value in itertools.product(("n", "max_tokens", "max_completion_tokens"), ABSURD):
        body = raw_body(t.chat(), (field,), json.dumps(value).encode())  # stdlib: integers past 64 bits too
        r = await hclient.post("/v1/chat/completions", content=body, headers={**t.auth, **JSON})
        assert_clean(r, 400, 402)
    # the biggest legal request cannot be paid for: refused by the guard, nothing held
    r = await hclient.post("/v1/chat/completions", json=t.chat(n=128, max_tokens=1_000_000), headers=t.auth)
    assert assert_clean(r, 402)["code"] in ("insufficient_balance", "spend_limit_exceeded")
    r = await hclient.post("/v1/chat/completions", json=t.chat(stream=True, n=128, max_tokens=1_000_000), headers=t.auth)
    assert_clean(r, 402)
    assert await money_of(hclient, t) == before


async def test_absurd_admin_numbers_are_400(hclient, hadmin, tenant):
    t = await tenant()
    before = await money_of(hclient, t)
    acct = t.account["id"]
    route = t.routes["official"]["id"]
    probes = []
    for v in (2**63, 2**64, 10**30, -(2**63) - 1, 10**15 + 1, 1e308, "NaN"):
        probes += [
            ("POST", f"/accounts/{acct}/topups", {"bucket": "credit", "amount_micros": v, "reference": str(uuid.uuid4())}),
            ("POST", f"/accounts/{acct}/adjustments", {"bucket": "credit", "amount_micros": v, "reason": "x"}),
            ("PATCH", f"/routes/{route}", {"price": {"input_per_mtok": v, "output_per_mtok": 1}}),
            ("PATCH", f"/routes/{route}", {"timeout_s": v}),
            ("PATCH", f"/routes/{route}", {"priority": v}),
            ("PATCH", f"/keys/{t.key['id']}", {"limits": {"total_micros": v}}),
            ("PATCH", f"/keys/{t.key['id']}", {"retry_policy": {"max_attempts": v, "retry_on": [], "backoff_ms": 0}}),
            ("PATCH", f"/keys/{t.key['id']}", {"retry_policy": {"max_attempts": 1, "retry_on": [], "backoff_ms": v}}),
            ("PATCH", f"/projects/{t.project['id']}", {"limits": {"daily_micros": v}}),
        ]
    failures = []
    for method, path, body in probes:
        r = await hadmin.request(method, path, content=json.dumps(body).encode(), headers=JSON)
        if r.status_code != 400:
            failures.append((method, path.split("/")[1], body, r.status_code, r.text[:160]))
    assert await money_of(hclient, t) == before
    # the key still works as before: none of the refused patches was half-applied
    ok(await hclient.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    assert not failures, f"{len(failures)} absurd admin number(s) not refused with 400: {failures[:8]}"


# -- unicode in every string field ---------------------------------------------------------------

CHAT_STRING_FIELDS = [("model",), ("messages", 0, "role"), ("messages", 0, "content"), ("messages", 0, "name"),
                      ("user",), ("stop",), ("messages", 0, "content", 0, "text")]


def chat_template(t, path):
    body = t.chat(user="u", stop="s")
    body["messages"][0]["name"] = "n"
    if path[-1] == "text":
        body["messages"][0]["content"] = [{"type": "text", "text": "t"}]
    return body


def set_at(doc, path, value):
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


@pytest.mark.parametrize("path", CHAT_STRING_FIELDS, ids=lambda p: ".".join(map(str, p)))
async def test_unicode_in_every_chat_string_field(hclient, tenant, path):
    t = await tenant()
    charged = 0
    before = await money_of(hclient, t)
    for name, value in WEIRD.items():
        body = chat_template(t, path)
        set_at(body, path, value)
        for stream in (False, True):
            body["stream"] = stream
            r = await hclient.post("/v1/chat/completions", json=body, headers=t.auth)
            assert_clean(r, 200, 400, 403, 404)
            if path == ("model",):
                assert r.status_code in (400, 404), (name, r.status_code, r.text[:300])
            if r.status_code == 200:
                rc = ok(await hclient.get(f"/v1/receipts/{r.headers['x-tf-receipt-id']}", headers=t.auth))
                assert rc["status"] == "succeeded", (name, rc)
                charged += rc["total_charged_micros"]
    for name, raw in RAW_STRINGS.items():
        body = chat_template(t, path)
        r = await hclient.post("/v1/chat/completions", content=raw_body(body, path, raw), headers={**t.auth, **JSON})
        assert assert_clean(r, 400)["code"] == "invalid_request", name
    after = await money_of(hclient, t)
    assert after["buckets"]["credit"]["held_micros"] == 0
    assert before["buckets"]["credit"]["posted_micros"] - after["buckets"]["credit"]["posted_micros"] == charged


def admin_string_cases(t):
    acct, proj, key, route = t.account["id"], t.project["id"], t.key["id"], t.routes["official"]["id"]
    return [
        ("POST", "/accounts", {"name": "V"}, ("name",)),
        ("POST", "/projects", {"account_id": acct, "name": "V"}, ("name",)),
        ("POST", "/projects", {"account_id": "V", "name": "p"}, ("account_id",)),
        ("PATCH", f"/projects/{proj}", {"name": "V"}, ("name",)),
        ("POST", "/keys", {"project_id": proj, "name": "V"}, ("name",)),
        ("POST", "/keys", {"project_id": "V", "name": "k"}, ("project_id",)),
        ("PATCH", f"/keys/{key}", {"name": "V"}, ("name",)),
        ("PATCH", f"/keys/{key}", {"allowed_models": ["V"]}, ("allowed_models", 0)),
        ("POST", f"/accounts/{acct}/topups", {"bucket": "credit", "amount_micros": 1, "reference": "V"}, ("reference",)),
        ("POST", f"/accounts/{acct}/topups", {"bucket": "V", "amount_micros": 1, "reference": "r"}, ("bucket",)),
        ("POST", f"/accounts/{acct}/adjustments", {"bucket": "credit", "amount_micros": 0, "reason": "V"}, ("reason",)),
        ("POST", "/routes", {"model": "V", "kind": "official", "base_url": "http://127.0.0.1:9/v1",
                             "upstream_model": "ok", "price": {"input_per_mtok": 1, "output_per_mtok": 1}}, ("model",)),
        ("PATCH", f"/routes/{route}", {"upstream_model": "V"}, ("upstream_model",)),
        ("PATCH", f"/routes/{route}", {"base_url": "http://V"}, ("base_url",)),
        ("PATCH", f"/routes/{route}", {"upstream_api_key": "V"}, ("upstream_api_key",)),
    ]


async def test_unicode_in_every_admin_string_field(app, hclient, hadmin, tenant):
    """Admin strings: emoji and RTL are fine; NUL and lone surrogates (which PostgreSQL's text
    cannot hold) are a 400, not a 500 or a 503 "database unavailable". The admin bodies target a
    victim account; a bystander's wallet must not move."""
    victim, bystander = await tenant(), await tenant()
    before = await money_of(hclient, bystander)
    topped_up = 0
    failures = []
    for method, path, body, field in admin_string_cases(victim):
        for name, value in {**WEIRD, "nul_only": "\u0000"}.items():
            if name in ("long", "combining") and field != ("name",):
                continue
            doc = orjson.loads(orjson.dumps(body))
            node = doc
            for p in field[:-1]:
                node = node[p]
            node[field[-1]] = node[field[-1]].replace("V", value)
            if field == ("reference",):
                node["reference"] += uuid.uuid4().hex
            r = await hadmin.request(method, path, content=orjson.dumps(doc), headers=JSON)
            if r.status_code >= 500 or ("\u0000" in value and r.status_code < 400):
                failures.append((method, path.split("/")[1], field[0], name, r.status_code, r.text[:160]))
            if path.endswith("/topups") and r.status_code == 201:
                topped_up += 1
        for name, raw in RAW_STRINGS.items():
            r = await hadmin.request(method, path, content=raw_body(body, field, raw), headers=JSON)
            if r.status_code != 400:
                failures.append((method, path.split("/")[1], field[0], name, r.status_code, r.text[:160]))
            if path.endswith("/topups") and r.status_code == 201:
                topped_up += 1
    assert await money_of(hclient, bystander) == before
    w = await money_of(hclient, victim)
    assert w["buckets"]["credit"]["posted_micros"] == 10_000_000 + topped_up
    await verify_ledger(app)
    summary = sorted({(f[0], f[1], f[2], f[3], f[4]) for f in failures})
    assert not failures, f"{len(failures)} admin string input(s) not answered cleanly: {summary}; e.g. {failures[:2]}"


# -- query strings, path ids, cursors ------------------------------------------------------------

LISTS_V1 = ["/v1/usage", "/v1/failures", "/v1/wallet/ledger", "/v1/runs"]
LISTS_ADMIN = ["/admin/v1/usage", "/admin/v1/audit", "/admin/v1/price-snapshots", "/admin/v1/routes"]
QUERY_PARAMS = ["model", "route_kind", "bucket", "run_id", "status", "receipt_id", "account_id", "target_id",
                "action", "route_id", "format", "since", "until", "limit"]


async def test_hostile_query_strings_and_path_ids(hclient, hadmin, tenant):
    t = await tenant()
    before = await money_of(hclient, t)
    values = [*WEIRD.values(), "\u0000", "%00", "' OR 1=1 --", "../../etc/passwd", "9" * 400, "-1", "1e999"]
    failures = []
    for path in LISTS_V1 + LISTS_ADMIN:
        headers = t.auth if path.startswith("/v1") else {"Authorization": ADMIN_AUTH["Authorization"]}
        for param, value in itertools.product(QUERY_PARAMS, values):
            r = await hclient.get(path, params={param: value}, headers=headers)
            if r.status_code >= 500:
                failures.append((path, param, repr(value)[:20], r.status_code, r.text[:120]))
    for tmpl in ("/v1/receipts/{}", "/v1/runs/{}", "/v1/runs/{}/receipt", "/admin/v1/receipts/{}",
                 "/admin/v1/accounts/{}", "/admin/v1/keys/{}", "/admin/v1/routes/{}", "/admin/v1/projects/{}"):
        headers = t.auth if tmpl.startswith("/v1") else {"Authorization": ADMIN_AUTH["Authorization"]}
        for value in values:
            r = await hclient.get(tmpl.format(quote(value, safe="")), headers=headers)
            if r.status_code >= 500 or r.status_code == 200:
                failures.append((tmpl, repr(value)[:20], r.status_code, r.text[:120]))
    for value in values:
        r = await hclient.post(f"/v1/runs/{quote(value, safe='')}/cancel", headers=t.auth)
        if r.status_code >= 500 or r.status_code == 200:
            failures.append(("cancel", repr(value)[:20], r.status_code, r.text[:120]))
    assert await money_of(hclient, t) == before
    summary = sorted({(f[0], f[1] if len(f) == 5 else "path", f[-3], f[-2]) for f in failures})
    assert not failures, f"{len(failures)} hostile query/path value(s) not answered cleanly: {summary}; e.g. {failures[:2]}"


def forged_cursors():
    values = [None, "x", "", "\u0000", 1, -1, 2**62, 1e308, True, [], {}, "2026-01-01T00:00:00+00:00",
              "9999-12-31T23:59:59", "not-a-date"]
    out = ["", "!!!", "====", "a" * 500, base64.urlsafe_b64encode(b"\xff\xfe").decode(),
           base64.urlsafe_b64encode(b"{}").decode(), base64.urlsafe_b64encode(nested(5000)).decode()[:499]]
    for arity in (1, 2, 3):
        for combo in itertools.islice(itertools.product(values, repeat=arity), 0, None, 7 if arity > 1 else 1):
            out.append(base64.urlsafe_b64encode(orjson.dumps(list(combo))).decode().rstrip("="))
    return [c for c in out if len(c) <= 500]


async def test_forged_cursors_are_400_or_an_empty_page(hclient, hadmin, tenant):
    t = await tenant()
    ok(await hclient.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    failures = []
    for path in LISTS_V1 + LISTS_ADMIN[:3]:
        headers = t.auth if path.startswith("/v1") else {"Authorization": ADMIN_AUTH["Authorization"]}
        for cursor in forged_cursors():
            r = await hclient.get(path, params={"cursor": cursor, "limit": 2}, headers=headers)
            if r.status_code not in (200, 400):
                failures.append((path, cursor[:40], r.status_code, r.text[:160]))
    summary = sorted({(f[0], f[2]) for f in failures})
    assert not failures, f"{len(failures)} forged cursor(s) not answered 400/200: {summary}; e.g. {failures[:3]}"


# -- property: any JSON value in any chat field -------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
CHAT_FIELDS = ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n",
               "temperature", "tools", "user", "stop", "response_format", "logit_bias"]


@settings(max_examples=300 if LONG else 60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(CHAT_FIELDS), value=json_values, message_value=json_values)
async def test_any_json_value_in_any_chat_field(hclient, tenant, field, value, message_value):
    # one tenant per test function, made on first use
    global _PROP_TENANT
    if _PROP_TENANT is None:
        _PROP_TENANT = await tenant()
    t = _PROP_TENANT
    body = t.chat()
    body[field] = value
    body2 = t.chat(messages=[{"role": "user", "content": message_value}])
    for b in (body, body2):
        before = await money_of(hclient, t)
        r = await hclient.post("/v1/chat/completions", content=orjson.dumps(b), headers={**t.auth, **JSON})
        assert_clean(r)
        after = await money_of(hclient, t)
        assert after["buckets"]["credit"]["held_micros"] == 0
        if r.status_code != 200:
            assert after == before, (b, r.status_code, r.text[:200])


_PROP_TENANT = None


@pytest.mark.parametrize("field,value", [("tools", 1), ("tools", [1]), ("tools", "x"), ("stop", [1]),
                                         ("stop", 5), ("temperature", "hot"), ("temperature", True),
                                         ("user", 7), ("response_format", []), ("logit_bias", [1]),
                                         ("tool_choice", 3), ("seed", 1.5)])
async def test_a_parameter_of_the_wrong_type_is_a_400_before_any_upstream_call(hclient, tenant, field, value):
    """Found by the property above: `tools: 1` went upstream and came back a 502."""
    t = await tenant()
    before = await money_of(hclient, t)
    r = await hclient.post("/v1/chat/completions", json={**t.chat(), field: value}, headers=t.auth)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert await money_of(hclient, t) == before


@pytest.mark.parametrize("role", ["hacker", "USER", "", "system "])
async def test_an_unknown_message_role_is_a_400_before_any_upstream_call(hclient, tenant, role):
    """Found by an attack probe: an unknown role went upstream with a hold taken."""
    t = await tenant()
    before = await money_of(hclient, t)
    body = t.chat(messages=[{"role": "user", "content": "hi"}, {"role": role, "content": "x"}])
    for stream in (False, True):
        r = await hclient.post("/v1/chat/completions", json={**body, "stream": stream}, headers=t.auth)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "messages.1.role"
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert await money_of(hclient, t) == before
