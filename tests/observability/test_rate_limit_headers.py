"""The x-ratelimit-* headers and the 429 of a refusal, built from what the database answered."""

from __future__ import annotations

import pytest

from tokens_forge.guard.money import Sizing
from tokens_forge.keys.rate_limits import RateState, duration, headers, refusal, state_of, token_cost


@pytest.mark.parametrize(("us", "text"), [
    (0, "0s"), (1, "1ms"), (20_000, "20ms"), (999_000, "999ms"), (999_001, "1s"), (1_000_000, "1s"),
    (8_571_429, "8.572s"), (30_000_000, "30s"), (59_999_000, "59.999s"), (60_000_000, "1m0s"),
    (66_500_000, "1m6.5s"), (360_000_000, "6m0s"),
])
def test_reset_times_are_written_as_openai_writes_them(us, text):
    assert duration(us) == text


def test_no_limits_no_headers():
    assert headers(None) == {}
    assert state_of({"rl_requests_limit": None, "rl_tokens_limit": None}) is None


def test_a_requests_limit_gives_the_requests_trio_only():
    h = headers(RateState(requests_limit=10, requests_remaining=9, requests_reset_us=6_000_000))
    assert h == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
                 "x-ratelimit-reset-requests": "6s"}


def test_a_tokens_limit_adds_the_tokens_trio():
    row = {"rl_requests_limit": 10, "rl_requests_remaining": 0, "rl_requests_reset_us": 60_000_000,
           "rl_tokens_limit": 40_000, "rl_tokens_remaining": 39_000, "rl_tokens_reset_us": 1_500_000,
           "rl_retry_after_us": None}
    h = headers(state_of(row))
    assert h["x-ratelimit-remaining-requests"] == "0" and h["x-ratelimit-reset-requests"] == "1m0s"
    assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"], h["x-ratelimit-reset-tokens"]) == (
        "40000", "39000", "1.5s")


def test_a_tokens_limit_alone_gives_the_tokens_trio_only():
    h = headers(RateState(tokens_limit=100, tokens_remaining=0, tokens_reset_us=250))
    assert set(h) == {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}
    assert h["x-ratelimit-reset-tokens"] == "1ms"  # rounded up: never "0s" while something is used


def test_a_refusal_says_when_to_come_back():
    state = RateState(requests_limit=2, requests_remaining=0, requests_reset_us=59_000_000,
                      retry_after_us=29_000_001)
    err = refusal("requests_per_minute", state, tokens=10, receipt_id="rcpt_x",
                  answer_headers={"X-TF-Receipt-Id": "rcpt_x", **headers(state)})
    assert (err.status_code, err.code, err.type) == (429, "rate_limit_exceeded", "rate_limit_error")
    assert err.headers["Retry-After"] == "30" and err.headers["retry-after-ms"] == "29001"
    assert err.headers["x-should-retry"] == "true" and err.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.body()["error"]["receipt_id"] == "rcpt_x" and "2 requests per minute" in err.message


def test_a_request_larger_than_the_tokens_limit_is_not_worth_retrying():
    state = RateState(tokens_limit=100, tokens_remaining=100, tokens_reset_us=0, retry_after_us=None)
    err = refusal("tokens_per_minute", state, tokens=150, receipt_id="rcpt_y", answer_headers={})
    assert err.status_code == 429 and "Retry-After" not in err.headers
    assert err.headers["x-should-retry"] == "false" and "150 tokens" in err.message and "max_tokens" in err.message


def test_the_token_cost_is_the_first_reservations_bounds():
    assert token_cost(Sizing(amount=1, send_cap=None, input_bound=120, output_bound=30, prompt_estimate=5)) == 150
