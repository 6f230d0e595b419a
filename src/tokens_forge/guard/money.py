"""Every decision about a request's money, in one pure module (SPEC §2, §4). Chat completions,
streams, the Responses API, embeddings and the preflight all call these functions; no surface
re-derives a bound or a charge. The database (ledger/sql/) only checks the caps and posts what
is decided here.

1. **Price**: the cost of an attempt is `ceil(prompt*input_per_mtok/1e6) +
   ceil(completion*output_per_mtok/1e6)`, in integers only.
2. **Sizing** (`size_attempt`): the reservation is a true upper bound of the attempt's cost.
   Input: every byte-level BPE token covers at least one byte, so the UTF-8 bytes of the body
   plus an overhead per message bound every prompt string (tools and schemas included); media
   are billed by their size, not their bytes, so each image adds the route's bound for its
   `detail`, and each file or audio part the route's file bound (a route without one refuses
   them). Output: the larger of the caps the client sent, times `n`; without one the gateway
   sets the largest cap that what is left of the budget can pay for (at most a default).
3. **Charges** (`usage_charge`, `delivered_charge`, `failure_charge`): what an attempt is
   charged, and by which rule (`charge_rule`): `usage` (the upstream's usage × price),
   `usage_capped` (the upstream billed more than was reserved: the reservation is charged, the
   rest is `overage`, the platform's), `delivered` (cancelled or cut after content: input plus
   the output actually delivered, counted from the delivered text), `failed_request_charge` (the
   route's policy for a failure that delivered nothing), `none`.
4. **Cap scopes** (`SCOPES`): the caps a reservation must fit, with their names for messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MESSAGE_OVERHEAD_TOKENS = 8
REQUEST_OVERHEAD_TOKENS = 64
# Per image, by `detail`, on routes that state no bound of their own. The worst case of OpenAI's
# documented pricing: gpt-4o-mini bills 2,833 tokens for a low-detail image, and 2,833 + 5,667 per
# 512 px tile (8 tiles at most: 768 × 2048) = 48,169 for a high-detail one.
IMAGE_TOKENS_LOW = 2_833
IMAGE_TOKENS_HIGH = 48_169
MAX_TOKEN_COUNT = 2**62  # token counts and amounts above this are absurd: capped, never an error
ROUTE_FAILURE_MODES = ("none", "input_tokens", "flat")

SCOPES: dict[str, str] = {
    "key_per_request": "the key's per-request limit",
    "key_daily": "the key's daily limit",
    "key_total": "the key's total limit",
    "project_daily": "the project's daily limit",
    "project_total": "the project's total limit",
    "run": "the run's budget",
    "bucket": "the balance",
}


@dataclass(frozen=True)
class Price:
    input_per_mtok: int
    output_per_mtok: int


@dataclass(frozen=True)
class MediaBounds:
    """A route's bounds of the tokens one media part can bill (SPEC: images and files per route)."""
    image_low_tokens: int = IMAGE_TOKENS_LOW
    image_high_tokens: int = IMAGE_TOKENS_HIGH
    file_tokens: int | None = None  # None: the route refuses file and audio parts


@dataclass(frozen=True)
class FailurePolicy:
    """A route's `failed_request_charge`."""
    mode: str = "none"
    flat_micros: int = 0


@dataclass(frozen=True)
class Terms:
    """What a route's money decisions depend on."""
    price: Price
    media: MediaBounds = MediaBounds()
    failure: FailurePolicy = FailurePolicy()


_WORD = re.compile(r"[A-Za-z0-9_]+")


@dataclass
class TextCount:
    """Text, counted by what it costs: an ASCII word is at least one token and a token covers about
    four ASCII characters; any other character is two to four bytes and about one token. Text may
    arrive in pieces (stream deltas): a word split across two pieces counts once."""
    ascii: int = 0
    other: int = 0
    words: int = 0
    _in_word: bool = field(default=False, repr=False, compare=False)

    def add(self, text: str) -> None:
        if not text:
            return
        words = len(_WORD.findall(text))
        if self._in_word and _WORD.match(text[0]):
            words -= 1  # the word goes on from the previous piece
        self._in_word = _WORD.match(text[-1]) is not None
        self.words += words
        if text.isascii():
            self.ascii += len(text)
            return
        other = sum(1 for c in text if ord(c) > 127)
        self.ascii += len(text) - other
        self.other += other

    @property
    def chars(self) -> int:
        return self.ascii + self.other

    def tokens(self) -> int:
        """An estimate of the tokens of this text, never above its UTF-8 bytes (a word has at
        least one character, an ASCII character is one byte, any other at least two)."""
        return max(ceil_div(self.ascii, 4), self.words) + self.other


@dataclass(frozen=True)
class PromptShape:
    """What the sizing needs to know of a request's input."""
    size_bytes: int          # the whole request body
    messages: int            # messages, input items, or embedding inputs
    images_low: int = 0      # image parts with detail "low"
    images_high: int = 0     # image parts with detail "high", "auto" or none
    files: int = 0           # file and audio parts
    text: TextCount | None = None  # the prompt's text, for estimates


@dataclass(frozen=True)
class Sizing:
    amount: int                # the reservation: a true upper bound of the attempt's cost
    send_cap: int | None       # the output cap the gateway sets (None: the client sent one)
    input_bound: int
    output_bound: int
    prompt_estimate: int       # the likely prompt tokens (for estimates and failure charges)


@dataclass(frozen=True)
class Charge:
    amount: int                # what the attempt is charged, never above its reservation
    rule: str                  # usage | usage_capped | delivered | failed_request_charge | none
    reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    overage: int = 0           # what the upstream billed beyond the reservation (the platform's)
    estimated: bool = False    # the token counts are the gateway's estimate, not the upstream's


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def cost(prompt_tokens: int, completion_tokens: int, price: Price) -> int:
    return (ceil_div(prompt_tokens * price.input_per_mtok, 1_000_000)
            + ceil_div(completion_tokens * price.output_per_mtok, 1_000_000))


# -- sizing ------------------------------------------------------------------------------------

def refused_media(shape: PromptShape, media: MediaBounds) -> str | None:
    """Why the route cannot bound this input (None: it can)."""
    if shape.files and media.file_tokens is None:
        return "this route states no bound for file or audio parts, so their cost cannot be reserved"
    return None


def input_tokens_bound(shape: PromptShape, media: MediaBounds = MediaBounds()) -> int:
    """A true upper bound of the prompt tokens (see the module docstring)."""
    return (shape.size_bytes + MESSAGE_OVERHEAD_TOKENS * shape.messages + REQUEST_OVERHEAD_TOKENS
            + media.image_low_tokens * shape.images_low + media.image_high_tokens * shape.images_high
            + (media.file_tokens or 0) * shape.files)


def prompt_estimate(shape: PromptShape, media: MediaBounds = MediaBounds()) -> int:
    """The likely prompt tokens: the text's estimate plus the media's bounds, within the bound."""
    text = shape.text.tokens() if shape.text is not None else ceil_div(shape.size_bytes, 4)
    media_tokens = (media.image_low_tokens * shape.images_low + media.image_high_tokens * shape.images_high
                    + (media.file_tokens or 0) * shape.files)
    return min(text + media_tokens, input_tokens_bound(shape, media))


def affordable_output_tokens(budget_micros: int, input_bound: int, price: Price) -> int:
    """The largest completion that, with the bounded input, still fits in budget_micros."""
    left = budget_micros - ceil_div(input_bound * price.input_per_mtok, 1_000_000)
    if left < 0:
        return 0
    if price.output_per_mtok == 0:
        return MAX_TOKEN_COUNT
    # cost(out) = ceil(out*p/1e6) <= left  <=>  out*p <= left*1e6
    return (left * 1_000_000) // price.output_per_mtok


def size_attempt(shape: PromptShape, terms: Terms, *, client_cap: int | None, n: int = 1,
                 remaining: int | None = None, default_cap: int = 4096, output: bool = True) -> Sizing:
    """The reservation of one attempt. `client_cap`: the larger of the output caps the client sent
    (None: the gateway sets one, and `remaining`, the least any cap or the bucket still allows, must
    be given). `output=False` for embeddings (input only)."""
    input_bound = input_tokens_bound(shape, terms.media)
    send_cap = None
    if not output:
        per_choice = 0
    elif client_cap is not None:
        per_choice = client_cap
    else:
        assert remaining is not None, "the gateway sets the output cap from what is left"
        affordable = affordable_output_tokens(remaining, input_bound, terms.price) // n
        per_choice = send_cap = max(1, min(default_cap, affordable))
    output_bound = per_choice * n
    amount = reservation_floor(cost(input_bound, output_bound, terms.price), terms.failure)
    return Sizing(amount, send_cap, input_bound, output_bound, prompt_estimate(shape, terms.media))


def reservation_floor(amount: int, failure: FailurePolicy) -> int:
    """What is reserved for an attempt whose cost bound is `amount`: at least the route's flat
    failure charge, since a failure may be charged it (the guard and the preflight alike)."""
    return max(amount, failure.flat_micros) if failure.mode == "flat" else amount


def needs_remaining(client_cap: int | None, *, output: bool = True) -> bool:
    """Whether sizing needs what is left of the budget (the gateway sets the output cap)."""
    return output and client_cap is None


def minimal_request_cost(price: Price) -> int:
    """What the smallest possible request costs: a run that cannot pay it is exhausted."""
    return cost(REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + 64, 1, price)


# -- charges -----------------------------------------------------------------------------------

def _tokens(n: int) -> int:
    return min(max(int(n), 0), MAX_TOKEN_COUNT)


def usage_charge(sizing: Sizing, terms: Terms, usage: tuple[int, int] | None, delivered: TextCount) -> Charge:
    """A successful attempt: the upstream's usage × price, capped at the reservation (the rest is
    overage); without usage, the estimate of the prompt and of the delivered text, within bounds."""
    if usage is None:
        pt = sizing.prompt_estimate
        ct = min(delivered.tokens(), sizing.output_bound)
        return Charge(cost(pt, ct, terms.price), "usage", "usage estimated (the upstream sent none) × price",
                      pt, ct, estimated=True)
    pt, ct = _tokens(usage[0]), _tokens(usage[1])
    full = cost(pt, ct, terms.price)
    if full <= sizing.amount:
        return Charge(full, "usage", "usage × price", pt, ct)
    return Charge(sizing.amount, "usage_capped",
                  f"the upstream billed {full} micros, above the {sizing.amount} reserved: the reservation is "
                  f"charged and the rest is the platform's", pt, ct, overage=min(full - sizing.amount, MAX_TOKEN_COUNT))


def delivered_charge(sizing: Sizing, terms: Terms, delivered: TextCount, *, why: str,
                     prompt_tokens: int | None = None) -> Charge:
    """Cancelled, or cut after content reached the client: input plus the output delivered."""
    pt = min(_tokens(prompt_tokens), sizing.input_bound) if prompt_tokens is not None else sizing.prompt_estimate
    ct = min(delivered.tokens(), sizing.output_bound)
    return Charge(min(cost(pt, ct, terms.price), sizing.amount), "delivered",
                  f"{why}: input and the {ct} output tokens delivered", pt, ct, estimated=True)


def failure_charge(sizing: Sizing, terms: Terms) -> Charge:
    """A failed attempt that delivered nothing: the route's failed_request_charge."""
    policy = terms.failure
    if policy.mode == "flat" and policy.flat_micros > 0:
        return Charge(min(policy.flat_micros, sizing.amount), "failed_request_charge",
                      "failed request: the route's flat charge")
    if policy.mode == "input_tokens":
        pt = sizing.prompt_estimate
        return Charge(min(cost(pt, 0, terms.price), sizing.amount), "failed_request_charge",
                      "failed request: the route charges input tokens", pt, 0, estimated=True)
    return Charge(0, "none", "failed request: the route charges nothing for failures")


def split_at_hold(charge: int, held: int) -> tuple[int, int]:
    """A charge decided against a hold of `held`: (what the hold pays, the overage beyond it, the
    platform's). For a charge not sized by this module (ledger tools and tests: guard.service.resolve)."""
    return min(charge, held), max(charge - held, 0)


def gateway_error_charge() -> Charge:
    """The gateway itself failed mid-attempt: the hold is released, nothing charged."""
    return Charge(0, "none", "gateway error: the hold was released")


def refusal_scope_name(scope: str) -> str:
    return SCOPES.get(scope, scope)
