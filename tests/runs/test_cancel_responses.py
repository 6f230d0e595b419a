"""A cancelled run's Responses stream, through a real `tokens-forge serve --workers 2` with the
official SDK: it ends with an `error` event (code run_cancelled) within 2 s of the cancel, over a
chat-only route and a native one, and is charged its input and the output delivered."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import ok


@pytest.mark.parametrize("native", [False, True])
def test_cancel_ends_the_stream_with_an_error_event(live_gateway, native):
    live = live_gateway
    t = live.tenant(official="drip:50", routed=None)  # 200 words, one every 50 ms
    if native:
        ok(live.admin.patch(f"/routes/{t.routes['official']['id']}", json={"apis": ["chat_completions", "responses"]}))
        time.sleep(1.1)  # the route cache of each worker
    with httpx.Client(base_url=live.base, headers=t.auth, timeout=30) as c:
        run = ok(c.post("/v1/runs", json={"model": t.model, "mode": "quick", "budget_micros": 1_000_000}))
        client = openai.OpenAI(base_url=live.base + "/v1", api_key=t.secret, max_retries=0,
                               default_headers={"X-TF-Run-Id": run["id"]})
        raw = client.responses.with_streaming_response.create(model=t.model, input="a long essay", stream=True,
                                                              max_output_tokens=500)
        deltas, events, cancelled_at = 0, [], 0.0
        with raw as response:
            receipt_id = response.headers["x-tf-receipt-id"]
            for event in response.parse():
                events.append(event)
                deltas += event.type == "response.output_text.delta"
                if deltas == 3 and not cancelled_at:
                    cancelled_at = time.monotonic()
                    assert ok(c.post(f"/v1/runs/{run['id']}/cancel"))["status"] == "cancelled"
        ended = time.monotonic()
        assert cancelled_at and ended - cancelled_at < 2.0
        last = events[-1]
        assert (last.type, last.code) == ("error", "run_cancelled")
        assert [e.sequence_number for e in events] == list(range(len(events)))
        deadline = time.monotonic() + 10
        while (rc := ok(c.get(f"/v1/receipts/{receipt_id}")))["status"] == "pending":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (rc["status"], rc["endpoint"], rc["error_code"]) == ("cancelled", "responses", "run_cancelled")
        [attempt] = rc["attempts"]
        assert "delivered" in attempt["charge_reason"] and 3 <= attempt["completion_tokens"] < 200
        assert rc["total_charged_micros"] == attempt["charged_micros"] > 0
    live.verify()
