"""Upstream faults against a real `tokens-forge serve --workers 2`: for every way an upstream can
break (reset, stall, drip, truncation, invalid UTF-8, enormous or wrong answers) the client gets a
clean answer, the receipt tells what happened, the charge follows the policy to the micro, no
hold survives, and the ledger verifies.

Charges at PRICE (1 micro per input token, 2 per output token) for the prompt "hello world"
(3 prompt tokens): a failure charges the route's failed_request_charge (flat 7, input_tokens 3,
none 0); a stream broken after its first byte charges input + delivered output (3 + 2 per word)."""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx
import pytest

from tests.conftest import ok
from tests.faults.conftest import LONG, PT, chat, check_money, settled_receipt, wallet

FLAT = {"mode": "flat", "flat_micros": 7}
INPUT = {"mode": "input_tokens"}
NONE = {"mode": "none"}
CHARGE_OF = {"flat": 7, "input_tokens": PT, "none": 0}


def failure_charge(policy: dict) -> int:
    return CHARGE_OF[policy["mode"]]


# -- failures before any byte reached the client: a clean 502/504, charged by the policy ------------

BEFORE_FIRST_BYTE = [
    # (upstream model, stream, route timeout_s, status, error code, attempt outcome, charge policy)
    ("reset_before", False, 5, 502, "upstream_error", "upstream_error", FLAT),
    ("reset_before", True, 5, 502, "upstream_error", "upstream_error", INPUT),
    ("reset_mid", False, 5, 502, "upstream_error", "upstream_error", NONE),
    ("stall_before", False, 2, 504, "upstream_timeout", "timeout", INPUT),
    ("stall_before", True, 2, 504, "upstream_timeout", "timeout", FLAT),
    ("stall_headers", True, 2, 504, "upstream_timeout", "timeout", NONE),
    ("drip:100", False, 2, 504, "upstream_timeout", "timeout", FLAT),
    ("badutf8", False, 5, 502, "upstream_error", "upstream_error", INPUT),
    ("html", False, 5, 502, "upstream_error", "upstream_error", FLAT),
    ("html", True, 5, 502, "upstream_error", "upstream_error", INPUT),
    ("nochoices", False, 5, 502, "upstream_error", "upstream_error", NONE),
]


@pytest.mark.parametrize(("model", "stream", "timeout_s", "status", "code", "outcome", "policy"), BEFORE_FIRST_BYTE,
                         ids=[f"{c[0]}-{'stream' if c[1] else 'json'}" for c in BEFORE_FIRST_BYTE])
def test_fault_before_first_byte_is_a_clean_error(live_gateway, fault_tenant, model, stream, timeout_s, status,
                                                  code, outcome, policy):
    live = live_gateway
    t = fault_tenant(model, timeout_s=timeout_s, official_charge=policy)
    ans = chat(live, t, stream=stream)
    assert ans.status == status, (ans.status, ans.body[:500])
    assert ans.elapsed < timeout_s + 20, f"the answer took {ans.elapsed:.1f}s with a {timeout_s}s route timeout"
    err = ans.json()["error"]
    assert err["code"] == code and err["receipt_id"] == ans.receipt_id, err
    assert ans.headers["x-tf-charged-micros"] == str(failure_charge(policy))
    rc = settled_receipt(live, t, ans.receipt_id)
    assert rc["status"] == "failed", rc
    assert [a["outcome"] for a in rc["attempts"]] == [outcome], rc["attempts"]
    check_money(live, t, rc, charged=failure_charge(policy))


# -- streams broken after the first byte: an SSE error event, input + delivered output charged ---------

AFTER_FIRST_BYTE = [
    # (upstream model, route timeout_s, error code in the event, attempt outcome, words delivered)
    ("reset_mid:3", 5, "upstream_error", "upstream_error", 3),
    ("stall_mid:3", 2, "upstream_timeout", "timeout", 3),
    ("nodone:3", 5, "upstream_error", "upstream_error", 3),
    ("half:2", 5, "upstream_error", "upstream_error", 2),
]


@pytest.mark.parametrize(("model", "timeout_s", "code", "outcome", "words"), AFTER_FIRST_BYTE,
                         ids=[c[0] for c in AFTER_FIRST_BYTE])
def test_stream_broken_after_first_byte_ends_with_error_event(live_gateway, fault_tenant, model, timeout_s, code,
                                                              outcome, words):
    live = live_gateway
    # The failure policy must not matter once the client has output: it pays input + delivered.
    t = fault_tenant(model, timeout_s=timeout_s, official_charge=FLAT)
    ans = chat(live, t, stream=True, max_tokens=10)
    assert ans.status == 200 and ans.ended_by_server
    assert ans.elapsed < timeout_s + 20
    errors = ans.error_events
    assert len(errors) == 1 and errors[0]["code"] == code, ans.events
    assert ans.events[-1].startswith(b"{") and b'"error"' in ans.events[-1], "the error event comes last"
    assert not ans.done
    delivered = [d for d in ans.events if b'"content":"' in d and b'"content":""' not in d]
    assert len(delivered) == words, ans.events
    assert not any(b'{"choi' == d[:7] and not d.endswith(b"}") for d in ans.events), "half an event was relayed"
    rc = settled_receipt(live, t, ans.receipt_id)
    assert rc["status"] == "failed" and [a["outcome"] for a in rc["attempts"]] == [outcome], rc
    assert rc["completion_tokens"] == words, rc
    check_money(live, t, rc, charged=PT + 2 * words)


def test_stream_with_invalid_utf8_in_data_completes_and_charges_usage(live_gateway, fault_tenant):
    live = live_gateway
    t = fault_tenant("badutf8")
    ans = chat(live, t, stream=True, max_tokens=4, stream_options={"include_usage": True})
    assert ans.status == 200 and ans.done and not ans.error_events, ans.body[:600]
    rc = settled_receipt(live, t, ans.receipt_id)
    assert rc["status"] == "succeeded" and rc["usage_estimated"] is False, rc
    check_money(live, t, rc, charged=PT + 2 * 4)


def test_stream_dripping_slower_than_timeout_in_total_but_never_stalling_succeeds(live_gateway, fault_tenant):
    """The route timeout bounds silence between bytes of a stream, not the stream's length: the
    last event takes 2.8 s to drip in, a byte every 200 ms, on a route with a 2 s timeout."""
    live = live_gateway
    t = fault_tenant("drip_tail:200", timeout_s=2)
    ans = chat(live, t, stream=True, max_tokens=3)
    assert ans.status == 200 and ans.done and not ans.error_events, ans.events
    rc = settled_receipt(live, t, ans.receipt_id)
    assert rc["status"] == "succeeded", rc
    check_money(live, t, rc, charged=PT + 2 * 3)


def test_enormous_json_answer_is_relayed_or_refused_cleanly(live_gateway, fault_tenant):
    live = live_gateway
    t = fault_tenant("huge:50", timeout_s=60, official_charge=INPUT)
    ans = chat(live, t, max_tokens=5, timeout=120)
    assert ans.status in (200, 502), ans.body[:300]
    rc = settled_receipt(live, t, ans.receipt_id)
    if ans.status == 200:
        assert len(ans.body) > 50 * 1024 * 1024 and ans.json()["usage"]["completion_tokens"] == 5
        check_money(live, t, rc, charged=PT + 2 * 5)
    else:
        assert rc["status"] == "failed"
        check_money(live, t, rc, charged=PT)


def test_upstream_overreporting_usage_is_capped_at_the_reservation(live_gateway, fault_tenant):
    live = live_gateway
    t = fault_tenant("overusage")
    ans = chat(live, t, max_tokens=5)
    assert ans.status == 200
    reserved = int(ans.headers["x-tf-reserved-micros"])
    assert ans.headers["x-tf-charged-micros"] == str(reserved)
    rc = settled_receipt(live, t, ans.receipt_id)
    check_money(live, t, rc, charged=reserved)


def test_endless_stream_is_cut_and_never_charged_past_the_reservation(live_gateway, fault_tenant):
    """An upstream that never stops sending: whatever the gateway relays, the customer pays at most
    the reservation (input bound + max_tokens), no hold is left, and the gateway itself ends the
    stream once the upstream has sent more output than max_tokens allows (it must not relay, and
    keep a worker and an upstream connection busy, forever)."""
    live = live_gateway
    t = fault_tenant("endless", timeout_s=5)
    mb = 64 if LONG else 16
    ans = chat(live, t, stream=True, max_tokens=5, max_bytes=mb << 20, max_seconds=60 if LONG else 25)
    assert ans.status == 200
    reserved = int(ans.headers["x-tf-reserved-micros"])
    rc = settled_receipt(live, t, ans.receipt_id, seconds=30)
    assert rc["status"] in ("failed", "cancelled"), rc
    check_money(live, t, rc)
    assert rc["total_charged_micros"] <= reserved
    assert ans.ended_by_server, (
        f"the gateway relayed {len(ans.body) >> 20} MB of a max_tokens=5 answer in {ans.elapsed:.0f}s and "
        "was still going: it never cut an upstream that sends more than max_tokens allows")
    assert ans.error_events, "a stream the gateway cuts ends with an SSE error event"


def test_stream_of_chunks_without_choices_is_clean(live_gateway, fault_tenant):
    live = live_gateway
    t = fault_tenant("nochoices")
    ans = chat(live, t, stream=True)
    assert ans.status in (200, 502)
    rc = settled_receipt(live, t, ans.receipt_id)
    assert rc["status"] in ("succeeded", "failed")
    check_money(live, t, rc)
    assert rc["total_charged_micros"] <= rc["total_reserved_micros"]


# -- retries and fallback across faults -------------------------------------------------------------

def test_reset_falls_back_to_the_next_route(live_gateway, fault_tenant):
    live = live_gateway
    t = fault_tenant("reset_before", "ok", official_charge=FLAT, key={"fallback_policy": "any_bucket"})
    ans = chat(live, t, max_tokens=4)
    assert ans.status == 200, ans.body[:300]
    rc = settled_receipt(live, t, ans.receipt_id)
    assert [(a["route_kind"], a["outcome"], a["charged_micros"]) for a in rc["attempts"]] == [
        ("official", "upstream_error", 7), ("routed", "success", PT + 8)]
    check_money(live, t, rc, charged=7 + PT + 8)


def test_stalls_are_retried_then_fall_back(live_gateway, fault_tenant):
    live = live_gateway
    t = fault_tenant("stall_before", "ok", timeout_s=2, official_charge=INPUT,
                     key={"fallback_policy": "any_bucket",
                          "retry_policy": {"max_attempts": 2, "retry_on": ["timeout"], "backoff_ms": 0}})
    ans = chat(live, t, stream=True, max_tokens=2)
    assert ans.status == 200 and ans.done, ans.body[:300]
    assert ans.elapsed < 2 * 2 + 20
    rc = settled_receipt(live, t, ans.receipt_id)
    assert [(a["route_kind"], a["outcome"]) for a in rc["attempts"]] == [
        ("official", "timeout"), ("official", "timeout"), ("routed", "success")], rc["attempts"]
    check_money(live, t, rc, charged=PT + PT + PT + 4)


def test_route_patched_onto_a_broken_upstream_and_back(live_gateway, fault_upstream):
    """PATCH /routes/{id} base_url: within the route caches' second every worker follows."""
    live = live_gateway
    t = live.tenant(official_charge=FLAT)
    rid = t.routes["official"]["id"]
    body = {"model": t.model, "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 2}
    ok(httpx.post(live.base + "/v1/chat/completions", json=body, headers=t.auth, timeout=30))
    ok(live.admin.patch(f"/routes/{rid}", json={"base_url": fault_upstream, "upstream_model": "reset_before"}))
    time.sleep(1.5)
    codes = [httpx.post(live.base + "/v1/chat/completions", json=body, headers=t.auth, timeout=30).status_code
             for _ in range(4)]  # new connections: both workers
    assert codes == [502] * 4, codes
    ok(live.admin.patch(f"/routes/{rid}", json={"base_url": live.mock_base, "upstream_model": "ok"}))
    time.sleep(1.5)
    # the failures may have marked the route down for a moment: it must come back by itself
    deadline = time.monotonic() + 30
    while True:
        r = httpx.post(live.base + "/v1/chat/completions", json=body, headers=t.auth, timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        assert r.status_code in (502, 503), r.text
        time.sleep(1)
    assert r.status_code == 200, r.text
    time.sleep(0.3)
    w = wallet(live, t)
    assert w["buckets"]["credit"]["held_micros"] == 0
    usage = ok(httpx.get(live.base + "/v1/usage", params={"limit": 500}, headers=t.auth))["data"]
    assert 10_000_000 - w["buckets"]["credit"]["posted_micros"] == sum(u["charged_micros"] for u in usage)
    live.verify()


# -- long: more faults at once, the slow drip of a whole stream -------------------------------------

@pytest.mark.skipif(not LONG, reason="TF_LONG_TESTS=1")
def test_long_whole_stream_dripping_a_byte_every_100ms(live_gateway, fault_tenant):
    live = live_gateway
    t = fault_tenant("drip:100", timeout_s=30)
    ans = chat(live, t, stream=True, max_tokens=1, timeout=300, max_seconds=300)
    assert ans.status in (200, 504), ans.body[:300]
    rc = settled_receipt(live, t, ans.receipt_id)
    if ans.status == 200:
        assert ans.done and rc["status"] == "succeeded"
        check_money(live, t, rc, charged=PT + 2)
    else:
        check_money(live, t, rc, charged=0)


MIX = ["ok", "reset_before", "reset_mid:2", "stall_mid:2", "nodone:2", "half:1", "badutf8", "html", "nochoices",
       "overusage", "stall_before", "slow:300"]


@pytest.mark.skipif(not LONG, reason="TF_LONG_TESTS=1")
def test_long_many_faults_at_once_across_both_workers(live_gateway, fault_upstream):
    """Every fault at once, streamed and not, from many client threads: each receipt closed, each
    charge within its reservation, the wallets lose exactly what the receipts say."""
    from tests.faults.conftest import make_fault_tenant

    live = live_gateway
    tenants = [make_fault_tenant(live, fault_upstream, m, "ok", timeout_s=2, official_charge=p,
                                 key={"fallback_policy": "any_bucket",
                                      "retry_policy": {"max_attempts": 2, "retry_on": ["timeout", "http_5xx"],
                                                       "backoff_ms": 10}})
               for m, p in zip(MIX, [FLAT, INPUT, NONE] * 4, strict=True)]
    jobs = [(t, s) for t in tenants for s in (False, True) for _ in range(4)]

    def run(job):
        t, s = job
        return t, chat(live, t, stream=s, max_tokens=3, timeout=60)

    with cf.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(run, jobs))
    for t, ans in answers:
        assert ans.status in (200, 502, 503, 504), (t.routes["official"]["upstream_model"], ans.status, ans.body[:200])
        assert ans.elapsed < 60
    for t in tenants:
        usage = ok(httpx.get(live.base + "/v1/usage", params={"limit": 500}, headers=t.auth))["data"]
        receipt_ids = {u["receipt_id"] for u in usage}  # a fallback across buckets is a row per bucket
        assert len(receipt_ids) == 8
        charged = 0
        for rid in receipt_ids:
            rc = settled_receipt(live, t, rid)
            assert rc["status"] != "pending", rc
            assert rc["total_charged_micros"] <= rc["total_reserved_micros"]
            charged += rc["total_charged_micros"]
        w = wallet(live, t)
        spent = sum(10_000_000 - b["posted_micros"] for b in w["buckets"].values())
        assert spent == charged
        assert all(b["held_micros"] == 0 for b in w["buckets"].values()), w
    live.verify()
