"""The reservation is a true upper bound of what the upstream can bill (issue 13, item 3): both
output caps, images by their detail and the route's bound, file parts only with a route bound."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import PRICE, ok
from tokens_forge.guard.money import (
    IMAGE_TOKENS_HIGH,
    IMAGE_TOKENS_LOW,
    MESSAGE_OVERHEAD_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    Price,
    cost,
)

P = Price(PRICE["input_per_mtok"], PRICE["output_per_mtok"])


def reserved(r) -> int:
    return int(r.headers["x-tf-reserved-micros"])


def input_bound(r, messages: int = 1, media: int = 0) -> int:
    return len(r.request.content) + MESSAGE_OVERHEAD_TOKENS * messages + REQUEST_OVERHEAD_TOKENS + media


async def test_with_both_caps_the_reservation_covers_the_larger(client, tenant):
    t = await tenant()
    r = await client.post("/v1/chat/completions", headers=t.auth,
                          json=t.chat(max_tokens=1, max_completion_tokens=2000))
    ok(r)
    assert reserved(r) == cost(input_bound(r), 2000, P)  # was the smaller: 1 token


@pytest.mark.parametrize(("detail", "tokens"), [("low", IMAGE_TOKENS_LOW), ("high", IMAGE_TOKENS_HIGH),
                                                 (None, IMAGE_TOKENS_HIGH)])
async def test_an_image_is_bounded_by_its_detail(client, tenant, detail, tokens):
    t = await tenant()
    image = {"url": "https://example.com/cat.png", **({"detail": detail} if detail else {})}
    msgs = [{"role": "user", "content": [{"type": "text", "text": "what is it"},
                                         {"type": "image_url", "image_url": image}]}]
    r = await client.post("/v1/chat/completions", headers=t.auth, json=t.chat(messages=msgs, max_tokens=5))
    ok(r)
    assert reserved(r) == cost(input_bound(r, media=tokens), 5, P)


async def test_a_route_states_its_own_media_bounds(client, admin, tenant):
    t = await tenant(routed=None)
    ok(await admin.patch(f"/routes/{t.routes['official']['id']}",
                         json={"media_bounds": {"image_low_tokens": 85, "image_high_tokens": 1_105,
                                                "file_tokens": 30_000}}))
    route = ok(await admin.get("/routes", params={"model": t.model}))["data"][0]
    assert route["media_bounds"] == {"image_low_tokens": 85, "image_high_tokens": 1_105, "file_tokens": 30_000}
    msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                                         {"type": "file", "file": {"file_id": "file-abc"}}]}]
    for _ in range(30):  # the route cache lives a second
        r = await client.post("/v1/chat/completions", headers=t.auth, json=t.chat(messages=msgs, max_tokens=5))
        if r.status_code == 200:
            break
        await asyncio.sleep(0.1)
    ok(r)
    assert reserved(r) == cost(input_bound(r, media=1_105 + 30_000), 5, P)


async def test_a_file_part_without_a_route_bound_is_refused_naming_the_part(client, tenant):
    t = await tenant()
    msgs = [{"role": "user", "content": "summarize"},
            {"role": "user", "content": [{"type": "text", "text": "this:"},
                                         {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA"}}]}]
    r = await client.post("/v1/chat/completions", headers=t.auth, json=t.chat(messages=msgs))
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and err["param"] == "messages.1.content.1"
    w = ok(await client.get("/v1/wallet", headers=t.auth))
    assert w["buckets"]["credit"]["held_micros"] == 0 and w["buckets"]["credit"]["posted_micros"] == 10_000_000
