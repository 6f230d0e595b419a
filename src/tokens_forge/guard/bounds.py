"""Pure arithmetic of the spend guard: cost, upper bounds of tokens, affordable output.

Cost of an attempt = ceil(prompt*input_per_mtok/1e6) + ceil(completion*output_per_mtok/1e6)
(SPEC §2), in integer arithmetic only."""

from __future__ import annotations

from dataclasses import dataclass

MESSAGE_OVERHEAD_TOKENS = 8
REQUEST_OVERHEAD_TOKENS = 64
IMAGE_TOKENS_BOUND = 2_000


@dataclass(frozen=True)
class Price:
    input_per_mtok: int
    output_per_mtok: int


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def cost(prompt_tokens: int, completion_tokens: int, price: Price) -> int:
    return (ceil_div(prompt_tokens * price.input_per_mtok, 1_000_000)
            + ceil_div(completion_tokens * price.output_per_mtok, 1_000_000))


def input_tokens_bound(body_bytes: int, messages: int, images: int) -> int:
    """A true upper bound of prompt tokens: a byte-level BPE token covers at least one byte,
    and every byte of every prompt string (tools and schemas included) is in the request body.
    Images are billed by size, not bytes, so each adds a fixed bound."""
    return body_bytes + MESSAGE_OVERHEAD_TOKENS * messages + IMAGE_TOKENS_BOUND * images + REQUEST_OVERHEAD_TOKENS


def affordable_output_tokens(budget_micros: int, input_bound: int, price: Price) -> int:
    """The largest completion that, with the bounded input, still fits in budget_micros."""
    left = budget_micros - ceil_div(input_bound * price.input_per_mtok, 1_000_000)
    if left < 0:
        return 0
    if price.output_per_mtok == 0:
        return 2**31 - 1
    # cost(out) = ceil(out*p/1e6) <= left  <=>  out*p <= left*1e6
    return (left * 1_000_000) // price.output_per_mtok


def estimate_tokens(text_chars: int) -> int:
    """A usage estimate when the upstream reports none (no tokenizer ships offline)."""
    return max(1, ceil_div(text_chars, 4)) if text_chars else 0
