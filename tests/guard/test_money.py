"""guard.money, table-driven: every bound and every charge rule, with the numbers worked out."""

from __future__ import annotations

import pytest

from tokens_forge.guard import money
from tokens_forge.guard.money import FailurePolicy, MediaBounds, Price, PromptShape, Terms, TextCount

P = Price(1_000_000, 2_000_000)  # 1 micro per input token, 2 per output token
TERMS = Terms(P)


@pytest.mark.parametrize(("prompt", "completion", "price", "expected"), [
    (0, 0, P, 0),
    (3, 5, P, 3 + 10),
    (1, 1, Price(150_000, 600_000), 1 + 1),          # each side rounds up on its own
    (10, 8, Price(150_000, 600_000), 2 + 5),
    (10**6, 0, Price(7, 0), 7),
])
def test_cost(prompt, completion, price, expected):
    assert money.cost(prompt, completion, price) == expected


@pytest.mark.parametrize(("text", "tokens"), [
    ("", 0),
    ("w0 w1 w2", 3),                        # short words: a word is at least one token
    ("a" * 400, 100),                       # one long word: four characters a token
    ("héllo", 2 + 1),                       # the other character splits the ASCII word, and counts one
    ("日本語のテキスト", 8),                 # each non-ASCII character about one token
])
def test_text_estimate(text, tokens):
    t = TextCount()
    t.add(text)
    assert t.tokens() == tokens
    assert t.tokens() <= len(text.encode())


def test_text_estimate_counts_a_word_split_across_pieces_once():
    whole, pieces = TextCount(), TextCount()
    whole.add("hello world")
    for p in ("hel", "lo wo", "rld"):
        pieces.add(p)
    assert pieces.words == whole.words == 2 and pieces.tokens() == whole.tokens()


def test_thousand_words_in_hundred_events_are_not_a_hundred_tokens():
    t = TextCount()
    for _ in range(100):
        t.add("lorem ipsum dolor sit amet consectetur adipiscing elit sed do ")
    assert t.tokens() >= 1000


@pytest.mark.parametrize(("shape", "media", "bound"), [
    (PromptShape(100, 1), MediaBounds(), 100 + 8 + 64),
    (PromptShape(100, 2, images_low=1), MediaBounds(), 100 + 16 + 64 + 2_833),
    (PromptShape(100, 1, images_high=2), MediaBounds(), 100 + 8 + 64 + 2 * 48_169),
    (PromptShape(100, 1, images_high=1, images_low=1), MediaBounds(85, 1_105), 100 + 8 + 64 + 85 + 1_105),
    (PromptShape(100, 1, files=2), MediaBounds(file_tokens=50_000), 100 + 8 + 64 + 100_000),
])
def test_input_bound(shape, media, bound):
    assert money.input_tokens_bound(shape, media) == bound


def test_file_parts_need_a_route_bound():
    assert money.refused_media(PromptShape(10, 1, files=1), MediaBounds()) is not None
    assert money.refused_media(PromptShape(10, 1, files=1), MediaBounds(file_tokens=1)) is None
    assert money.refused_media(PromptShape(10, 1, images_high=1), MediaBounds()) is None


@pytest.mark.parametrize(("client_cap", "n", "remaining", "default", "send_cap", "output_bound"), [
    (100, 1, None, 4096, None, 100),           # the client's cap, forwarded as sent
    (100, 3, None, 4096, None, 300),           # times n
    (None, 1, 10**9, 4096, 4096, 4096),        # the gateway sets the default
    (None, 1, 172 + 2 * 50, 4096, 50, 50),     # ... or what is left affords
    (None, 2, 172 + 2 * 50, 4096, 25, 50),
    (None, 1, 0, 4096, 1, 1),                  # at least one (the reservation then refuses)
])
def test_sizing_output(client_cap, n, remaining, default, send_cap, output_bound):
    s = money.size_attempt(PromptShape(100, 1), TERMS, client_cap=client_cap, n=n, remaining=remaining,
                           default_cap=default)
    assert (s.send_cap, s.output_bound, s.input_bound) == (send_cap, output_bound, 172)
    assert s.amount == money.cost(172, output_bound, P)


def test_sizing_reserves_at_least_a_flat_failure_charge():
    terms = Terms(P, failure=FailurePolicy("flat", 5_000))
    assert money.size_attempt(PromptShape(10, 1), terms, client_cap=1).amount == 5_000


@pytest.mark.parametrize(("amount", "policy", "reserved"), [
    (100, FailurePolicy("none"), 100),
    (100, FailurePolicy("input_tokens"), 100),
    (100, FailurePolicy("flat", 5_000), 5_000),
    (9_000, FailurePolicy("flat", 5_000), 9_000),
    (100, FailurePolicy("flat", 0), 100),
    (0, FailurePolicy("none", 5_000), 0),  # a flat amount left on a route whose mode is not flat
])
def test_reservation_floor(amount, policy, reserved):
    # the guard (size_attempt) and the preflight's per-call bounds reserve at least a flat failure charge
    assert money.reservation_floor(amount, policy) == reserved


@pytest.mark.parametrize(("charge", "held", "paid", "overage"), [
    (0, 100, 0, 0),
    (60, 100, 60, 0),
    (100, 100, 100, 0),
    (150, 100, 100, 50),
    (10, 0, 0, 10),
])
def test_split_at_hold(charge, held, paid, overage):
    assert money.split_at_hold(charge, held) == (paid, overage)


def test_embeddings_reserve_input_only():
    s = money.size_attempt(PromptShape(100, 1), TERMS, client_cap=None, output=False)
    assert (s.output_bound, s.amount) == (0, 172)


SIZING = money.size_attempt(PromptShape(100, 1, text=TextCount(ascii=40, words=8)), TERMS, client_cap=120)


@pytest.mark.parametrize(("usage", "delivered", "amount", "rule", "overage", "estimated"), [
    ((20, 30), "", 20 + 60, "usage", 0, False),
    ((172, 120), "", SIZING.amount, "usage", 0, False),                       # exactly the bound
    ((5_000, 120), "", SIZING.amount, "usage_capped", 5_000 + 240 - SIZING.amount, False),
    ((2**70, 2**70), "", SIZING.amount, "usage_capped", 2**62, False),        # absurd: capped, flagged
    (None, "w0 w1 w2 w3", 10 + 8, "usage", 0, True),                          # estimated from the text
    (None, "w " * 500, 10 + 240, "usage", 0, True),                           # never above the cap
])
def test_usage_charge(usage, delivered, amount, rule, overage, estimated):
    t = TextCount()
    t.add(delivered)
    c = money.usage_charge(SIZING, TERMS, usage, t)
    assert (c.amount, c.rule, c.overage, c.estimated) == (amount, rule, overage, estimated)
    assert c.amount <= SIZING.amount


def test_delivered_charge_is_input_plus_delivered_output_within_the_cap():
    t = TextCount()
    t.add("w " * 121)  # one more word than max_tokens allows: the cap bounds it
    c = money.delivered_charge(SIZING, TERMS, t, why="stream cut")
    assert (c.rule, c.prompt_tokens, c.completion_tokens) == ("delivered", 10, 120)
    assert c.amount == money.cost(10, 120, P)


@pytest.mark.parametrize(("policy", "amount", "rule"), [
    (FailurePolicy("none"), 0, "none"),
    (FailurePolicy("input_tokens"), 10, "failed_request_charge"),
    (FailurePolicy("flat", 7), 7, "failed_request_charge"),
    (FailurePolicy("flat", 10**9), SIZING.amount, "failed_request_charge"),   # never above the hold
])
def test_failure_charge(policy, amount, rule):
    c = money.failure_charge(SIZING, Terms(P, failure=policy))
    assert (c.amount, c.rule) == (amount, rule)
